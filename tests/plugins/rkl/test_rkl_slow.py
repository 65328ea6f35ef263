"""Scientific checks of reverse-KL coarse-graining (Schöberl et al.) on the double well.

benchmarks/reproductions/rkl/double_well.py runs the same training for seeds 0, 1, 2 and prints the table. The
last test checks why the tightened bound keeps the minor mode of the paper's N(0, 1) prior: its optimum sits at
the exact weight, the paper's bound's below.
"""
import pytest
import torch

from cvplug import systems
from cvplug.plugins.rkl import CoarseGrainedModel, ToyTarget, reverse_kl

pytestmark = pytest.mark.slow


def test_double_well_seed_0_meets_every_criterion_with_the_defaults(rkl_double_well, one_thread):
    """Seed 0 with the double-well defaults (two-component prior) on one torch thread meets the issue's whole
    acceptance (``double_well.failures``): at β = 1 the means and standard deviations of x1 and x2 within 0.1 of
    exact and the x1 > 0 weight within a factor of 2 (exact 0.0083), at β = 0.5 that weight within 0.03 (exact
    0.091), |Spearman ρ(μφ(x), x1)| ≥ 0.95 on exact samples; and KL(q ‖ p) at β = 1 below 0.01 nats (seeds 0-2
    gave 0.0018-0.0030; with the paper's N(0, 1) prior 0.004-0.023)."""
    spec = systems.load("double-well")
    fitted = rkl_double_well.fit(spec, seed=0, progress=False)
    numbers = rkl_double_well.report(fitted.model, fitted.result.snapshots, spec.toy.u)
    print(numbers)
    assert numbers["exact"]["weight_x1_pos"] == pytest.approx(0.0083, abs=1e-4)
    assert numbers["exact_half_beta_weight"] == pytest.approx(0.0908, abs=1e-4)
    assert rkl_double_well.failures(numbers) == []
    assert numbers["kl"] < 0.01


class _JumpDecoder(torch.nn.Module):
    """μθ(z) = (well a for z < c, well b for z > c, 0): the minor mode's weight is 1 − Φ(c), set by hand."""

    def __init__(self, c, a=-2.43, b=2.26):
        super().__init__()
        self.c, self.a, self.b = c, a, b

    def forward(self, z):
        x1 = self.a + (self.b - self.a) * torch.sigmoid((z[:, 0] - self.c) / 0.005)
        return torch.stack([x1, torch.zeros_like(x1)], 1)


def _bound_at_minor_weight(weight, beta, extra_latents):
    """The bound F (β u − log q bound, per sample) of a model whose decoder puts ``weight`` on the minor well,
    the encoder trained to the bound and the widths those of the wells at ``beta``."""
    torch.manual_seed(0)
    target = ToyTarget(systems.load("double-well"))
    model = CoarseGrainedModel(2, 1, hidden=(32, 32), init_std=1.0).double()
    model.decoder = _JumpDecoder(-torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(weight)).item())
    with torch.no_grad():
        model.log_std.copy_(torch.log(torch.tensor([0.41, beta ** -0.5])))
    model.log_std.requires_grad_(False)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=3e-3)
    for step in range(1500):
        optimizer.param_groups[0]["lr"] = 3e-3 * 0.03 ** (step / 1500)
        loss = reverse_kl(model, target, beta, 256, None, extra_latents).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return -reverse_kl(model, target, beta, 200_000, None, extra_latents).log_weights.mean().item()


def test_tightened_bound_has_its_optimum_at_the_exact_minor_mode_weight(one_thread):
    """At β = 0.5 (exact x1 > 0 weight p = 0.0908), with the decoder's jump placed by hand: the paper's bound
    (K = 0) is lowest when the minor mode has half its weight or less, so training drains it; with K = 16 extra
    encoder draws the bound is lowest at p itself (benchmarks/reproductions/rkl/README.md)."""
    p = 0.0908
    paper = [_bound_at_minor_weight(w, 0.5, 0) for w in (p / 2, p, 2 * p)]
    tight = [_bound_at_minor_weight(w, 0.5, 16) for w in (p / 2, p, 2 * p)]
    assert paper[0] < paper[1] - 0.01 < paper[2] - 0.05
    assert tight[1] < min(tight[0], tight[2]) - 0.003
    assert tight[1] < paper[1] - 0.03                  # and it is tighter
