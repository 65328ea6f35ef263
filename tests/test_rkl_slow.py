"""Scientific check of reverse-KL coarse-graining (Schöberl et al.) on the double well: the acceptance but |corr|.

examples/rkl_double_well.py runs the same training for three seeds and prints the table. The last test checks why
the tightened bound keeps the minor mode: its optimum sits at the exact weight, the paper's sits below.
"""
import pytest
import torch

from cvplug import systems
from cvplug.plugins.rkl import CoarseGrainedModel, ToyTarget, reverse_kl
from cvplug.plugins.rkl.double_well import failures, fit, report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def double_well_numbers():
    """Seed 0 trained with the double-well defaults, judged by :func:`report` (≈ 4 minutes)."""
    torch.set_num_threads(1)
    spec = systems.load("double-well")
    fitted = fit(spec, seed=0, show_progress=False)
    numbers = report(fitted.model, fitted.result.snapshots, spec.toy.u)
    assert numbers["exact"]["weight_x1_pos"] == pytest.approx(0.0083, abs=1e-4)
    assert numbers["exact_half_beta_weight"] == pytest.approx(0.0908, abs=1e-4)
    return numbers


def test_double_well_moments_and_mode_weights_match_quadrature(double_well_numbers):
    """β = 1: means and stds of x1, x2 within 0.1 of exact, x1 > 0 weight within ×2 of 0.0083; β = 0.5: x1 > 0
    weight within 0.03 of 0.091 (seeds 0–5 all meet these; README).

    The issue's last criterion, |corr(μφ(x), x1)| ≥ 0.95, is not asserted: seeds 0–5 give 0.33–0.98 (one meets
    it), and the objective's optimum has 0.73 (tests/test_rkl.py -k optimum). A machine whose floating-point order
    redraws the training could meet it by chance, so a strict xfail would fail there for no fault."""
    assert failures(double_well_numbers, judge_correlation=False) == []


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


def test_tightened_bound_has_its_optimum_at_the_exact_minor_mode_weight():
    """At β = 0.5 (exact x1 > 0 weight p = 0.0908), with the decoder's jump placed by hand: the paper's bound
    (K = 0) is lowest when the minor mode has half its weight or less, so training drains it; with K = 16 extra
    encoder draws the bound is lowest at p itself (README, rkl section)."""
    torch.set_num_threads(1)
    p = 0.0908
    paper = [_bound_at_minor_weight(w, 0.5, 0) for w in (p / 2, p, 2 * p)]
    tight = [_bound_at_minor_weight(w, 0.5, 16) for w in (p / 2, p, 2 * p)]
    assert paper[0] < paper[1] - 0.01 < paper[2] - 0.05
    assert tight[1] < min(tight[0], tight[2]) - 0.003
    assert tight[1] < paper[1] - 0.03                  # and it is tighter
