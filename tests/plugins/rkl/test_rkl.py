"""Reverse-KL coarse-graining: loss gradients, KL estimate, tempering steps, gradient normalisation, frame, targets."""
import math

import numpy as np
import pytest
import torch

from cvplug import systems
from cvplug.plugins.rkl import (AdaptiveTempering, CoarseGrainedModel, MixtureDecoderModel, MoleculeTarget,
                                ReverseKL, RigidFrame, ToyTarget, cap_gradient_norms, forward_kl, kl_estimate,
                                log_marginal_bound, mixed, normalize_sample_gradients, reverse_kl,
                                springs_for_constraints)
from cvplug.plugins.rkl.objective import capped


def _double_model(hidden=(8,), seed=0, mixture_decoder=False):
    torch.manual_seed(seed)
    if mixture_decoder:
        return MixtureDecoderModel(2, 1, hidden=hidden, init_std=0.7, init_gain=1.0, mixture=2).double()
    return CoarseGrainedModel(2, 1, hidden=hidden, init_std=0.7, init_gain=1.0).double()


def _loss(model, target, beta, seed=5, extra_latents=0):
    torch.manual_seed(seed)  # the same z and ε at every evaluation
    return reverse_kl(model, target, beta, 64, kappa=None, extra_latents=extra_latents).loss


@pytest.mark.parametrize("energy, extra_latents, mixture_decoder",
                         [("torch", 0, False), ("bridge", 0, False), ("torch", 4, False), ("torch", 4, True)])
def test_loss_gradient_matches_finite_differences(energy, extra_latents, mixture_decoder):
    target = ToyTarget(systems.load("double-well"), energy, platform="Reference")
    model = _double_model(mixture_decoder=mixture_decoder)
    loss = _loss(model, target, 0.7, extra_latents=extra_latents)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    checked = 0
    for (name, p), g in zip(params.items(), grads):
        for index in [0, p.numel() - 1]:
            flat = p.data.view(-1)
            original = flat[index].item()
            h = 1e-6
            flat[index] = original + h
            up = _loss(model, target, 0.7, extra_latents=extra_latents).item()
            flat[index] = original - h
            down = _loss(model, target, 0.7, extra_latents=extra_latents).item()
            flat[index] = original
            numeric = (up - down) / (2 * h)
            assert g.view(-1)[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-7), (name, index)
            checked += 1
    assert checked == 2 * len(params)
    target.close()


def test_bridge_and_torch_twin_give_the_same_loss_and_gradient():
    spec = systems.load("double-well")
    twin, bridge = ToyTarget(spec, "torch"), ToyTarget(spec, "bridge", platform="Reference")
    model = _double_model()
    values = []
    for target in (twin, bridge):
        loss = _loss(model, target, 1.0)
        values.append((loss.item(), torch.autograd.grad(loss, model.log_std)[0]))
    assert values[0][0] == pytest.approx(values[1][0], rel=1e-9)
    assert torch.allclose(values[0][1], values[1][1], rtol=1e-8)
    assert bridge.force_calls == 64 and twin.force_calls == 64
    bridge.close()


def test_forward_loss_gradient_matches_finite_differences():
    model = _double_model()
    data = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss():
        torch.manual_seed(9)
        return forward_kl(model, data)

    g = torch.autograd.grad(loss(), model.log_std)[0]
    for k in range(2):
        h = 1e-6
        model.log_std.data[k] += h
        up = loss().item()
        model.log_std.data[k] -= 2 * h
        down = loss().item()
        model.log_std.data[k] += h
        assert g[k].item() == pytest.approx((up - down) / (2 * h), rel=1e-6)
    assert mixed(torch.tensor(2.0), torch.tensor(4.0), 0.25).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="gamma"):
        mixed(torch.tensor(1.0), torch.tensor(1.0), 1.5)


def test_kl_estimate_is_zero_for_the_exact_model_and_tracks_beta():
    """q = p = N(0, 1) in x2 (the double well's second coordinate is exactly Gaussian)."""
    u = 0.5 * torch.randn(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) ** 2
    log_w = -u - (-u - 0.5 * math.log(2 * math.pi))       # log p̃ − log q for q = N(0, 1), p̃ = exp(−u)
    assert kl_estimate(log_w, u) == pytest.approx(0.0, abs=1e-9)
    for beta_new in (1.2, 2.0):
        exact = 0.5 * (beta_new - 1 - math.log(beta_new))  # KL(N(0,1) ‖ N(0, 1/β'))
        assert kl_estimate(log_w, u, beta_new - 1.0) == pytest.approx(exact, rel=0.03)


def test_kl_estimate_moves_a_clash_sample_by_its_capped_energy_only():
    """At β = 0.01, one sample in 20 000 with u = 1e9 (or a masked one, u = inf) hardly changes how KL̂ grows to
    β' = 0.02; extrapolated with its raw energy it would add ≈ 0.01 × 1e9 / 20 000 = 500 nats."""
    beta = 0.01
    u = 0.5 * torch.randn(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) ** 2 / beta
    log_w = -beta * u - (-beta * u - 0.5 * math.log(2 * math.pi / beta))       # q = p_β exactly
    growth = kl_estimate(log_w, u, 0.01, beta) - kl_estimate(log_w, u, 0.0, beta)
    for clash in (1e9, float("inf")):
        with_clash = torch.cat([u, torch.tensor([clash], dtype=torch.float64)])
        capped_log_w = torch.cat([log_w, -capped(torch.tensor([beta * clash], dtype=torch.float64))])
        grown = kl_estimate(capped_log_w, with_clash, 0.01, beta) - kl_estimate(capped_log_w, with_clash, 0.0, beta)
        assert math.isfinite(grown) and grown == pytest.approx(growth, abs=0.01)


def test_tempering_shrinks_the_step_until_the_kl_increase_is_small():
    schedule = AdaptiveTempering(start=0.01, max_step=0.5, c_max=1.0, shrink=0.6)
    calls = []

    def kl(b):
        calls.append(b)
        return 1.0 + 100 * (b - 0.2) ** 2                     # relative increase 100 Δβ² ≤ 1 ⇔ Δβ ≤ 0.1
    assert schedule.next(0.2, kl) == pytest.approx(0.2 + 0.5 * 0.6 ** 4)   # 0.5, 0.3, 0.18, 0.108 rejected
    assert len(calls) == 1 + 5
    assert schedule.next(0.9, lambda b: 1.0) == pytest.approx(1.0)         # never past the target
    summed = sum([0.1] * 9)                                                  # 0.8999999999999999
    assert AdaptiveTempering(start=0.01, max_step=0.1).next(summed, lambda b: 1.0) == 1.0   # snapped exactly
    assert schedule.done(1.0) and schedule.next(1.0, kl) == 1.0
    with_milestone = AdaptiveTempering(start=0.01, max_step=0.5, milestones=(0.5,))
    assert with_milestone.next(0.3, lambda b: 1.0) == pytest.approx(0.5)   # stops at the milestone
    tiny = AdaptiveTempering(start=0.01, max_step=0.1, min_step=0.01)
    assert tiny.next(0.2, lambda b: 1.0 + 1e6 * (b - 0.2)) == pytest.approx(0.21)  # never below min_step


@pytest.mark.parametrize("options", [dict(start=0.0), dict(start=2.0), dict(max_step=0.0), dict(shrink=1.0),
                                     dict(c_max=-1.0), dict(milestones=(1.5,))])
def test_tempering_rejects_bad_settings(options):
    with pytest.raises(ValueError):
        AdaptiveTempering(**options)


def test_gradient_normalisation_caps_outliers_at_kappa_times_the_mean():
    grad = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [300.0, 400.0]])
    capped = cap_gradient_norms(grad, kappa=3.0)
    limit = 3.0 * (1 + 1 + 1 + 500) / 4
    assert torch.equal(capped[:3], grad[:3])
    assert torch.linalg.vector_norm(capped[3]).item() == pytest.approx(limit)
    assert torch.allclose(capped[3] / capped[3].norm(), grad[3] / grad[3].norm())
    x = torch.zeros(4, 2, requires_grad=True)
    (normalize_sample_gradients(x, 3.0) * grad).sum().backward()
    assert torch.allclose(x.grad, capped)
    with pytest.raises(ValueError, match="kappa"):
        normalize_sample_gradients(x, 0.0)


def test_gradient_normalisation_leaves_the_loss_value_alone():
    target = ToyTarget(systems.load("double-well"))
    model = _double_model()
    torch.manual_seed(1)
    plain = reverse_kl(model, target, 1.0, 32, kappa=None).loss
    torch.manual_seed(1)
    normalised = reverse_kl(model, target, 1.0, 32, kappa=3.0).loss
    assert plain.item() == normalised.item()


def test_tempered_energy_cap_keeps_clashes_expensive_at_small_beta_and_masks_non_finite_samples():
    u = torch.tensor([5.0, 1e12, float("inf")], dtype=torch.float64, requires_grad=True)
    beta = 1e-3
    value = capped(beta * u, cap=1e4)
    assert value[0].item() == pytest.approx(5e-3, rel=1e-15)                   # untouched below the cap
    assert value[1].item() == pytest.approx(1e4 + math.log1p(1e9 - 1e4))       # a clash still costs > 1e4 kT
    assert value[2].item() == pytest.approx(1e4 + math.log(torch.finfo(torch.float64).max))
    (grad,) = torch.autograd.grad(value.sum(), u)
    assert grad.tolist() == pytest.approx([beta, beta / (1 + 1e9 - 1e4), 0.0], rel=1e-12)


def test_log_prob_of_a_linear_gaussian_model_is_exact():
    torch.manual_seed(0)
    model = CoarseGrainedModel(2, 1, hidden=(), init_std=0.5).double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.tensor([[1.5], [0.5]]))
        model.decoder[0].bias.copy_(torch.tensor([0.2, -0.1]))
    cov = model.decoder[0].weight @ model.decoder[0].weight.T + torch.diag(torch.exp(2 * model.log_std))
    exact = torch.distributions.MultivariateNormal(model.decoder[0].bias, cov)
    x = exact.sample((5,))
    estimate = model.log_prob(x, n_samples=20000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(estimate, exact.log_prob(x), atol=0.05)
    same_draws = model.potential(x, beta=0.5, n_samples=20000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(same_draws, -2 * estimate)
    with pytest.raises(ValueError, match="beta"):
        model.potential(x, beta=0.0)


def _linear_mixture_decoder_model():
    """Two components with linear decoders μ_k(z) = a_k z + b_k: q(x) is a mixture of two Gaussians."""
    torch.manual_seed(0)
    model = MixtureDecoderModel(2, 1, hidden=(), init_std=0.5, mixture=2).double()
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([0.4, -0.4]))
        model.prior.means.copy_(torch.tensor([[-1.0], [1.5]]))
        model.prior.log_std.copy_(torch.tensor([[-0.2], [0.1]]))
        for decoder, a, b in zip(model.decoder, ([1.5, 0.5], [-0.5, 1.0]), ([0.2, -0.1], [2.0, 1.0])):
            decoder[0].weight.copy_(torch.tensor(a)[:, None])
            decoder[0].bias.copy_(torch.tensor(b))
        model.log_std.copy_(torch.log(torch.tensor([[0.3, 0.5], [0.6, 0.2]])))
    return model


def test_mixture_decoder_samples_and_densities_are_those_of_the_gaussian_mixture(rkl_double_well):
    """Each component has its own decoder and widths: the samples' moments and log q(x) = log ∫ q(z) q(x | z) dz
    (quadrature over z) equal those of the exact mixture of Gaussians; the training draws' shortcut for
    log q(x | z) equals the full expression; ``decode`` follows the component most probable at z; the double
    well's one-decoder quadrature refuses the model."""
    model = _linear_mixture_decoder_model()
    prior = model.prior
    a = torch.stack([d[0].weight[:, 0] for d in model.decoder]).detach()             # [K, D]
    b = torch.stack([d[0].bias for d in model.decoder]).detach()
    s = torch.exp(prior.log_std[:, 0]).detach()
    pi, means = prior.weights().detach(), a * prior.means.detach() + b
    covariances = s[:, None, None] ** 2 * a[:, :, None] * a[:, None, :] \
        + torch.diag_embed(torch.exp(2 * model.log_std.detach()))
    exact = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(pi),
                                                  torch.distributions.MultivariateNormal(means, covariances))
    second_moment = (pi[:, None, None] * (covariances + means[:, :, None] * means[:, None, :])).sum(0)
    with torch.no_grad():
        drawn = model.sample(200_000, torch.Generator().manual_seed(1))
        assert torch.allclose(drawn.x.mean(0), exact.mean, atol=0.02)
        assert torch.allclose(torch.cov(drawn.x.T), second_moment - torch.outer(exact.mean, exact.mean), atol=0.03)
        x = exact.sample((6,))
        z = torch.linspace(-8, 8, 4001, dtype=torch.float64)[:, None]
        log_joint = torch.stack([model.log_likelihood(point.expand(len(z), 2), z) for point in x]) + model.log_prior(z)
        quadrature = torch.logsumexp(log_joint, 1) + math.log(z[1, 0] - z[0, 0])
        assert torch.allclose(quadrature, exact.log_prob(x), atol=1e-6)
        training, _ = model.training_sample(64)
        assert torch.allclose(model.sample_log_likelihood(training, training.x),
                              model.log_likelihood(training.x, training.z), atol=1e-10)
        centres = torch.tensor([[-1.0], [1.5]], dtype=torch.float64)
        assert torch.allclose(model.decode(centres), a * centres + b)
    with pytest.raises(ValueError, match="one decoder"):    # the double well's quadrature knows one decoder only
        rkl_double_well.exact_kl(model, systems.load("double-well").toy.u)
    with pytest.raises(ValueError, match="mixture ≥ 2"):
        MixtureDecoderModel(2, 1, mixture=1)
    with pytest.raises(ValueError, match="mixture_decoder"):
        ReverseKL(1, mixture=1, mixture_decoder=True)
    with pytest.raises(ValueError, match="mixture_decoder"):
        ReverseKL(1, mixture=2, mixture_decoder="yes")


def test_extra_latents_tighten_the_bound_on_log_q_toward_the_exact_value():
    """Linear Gaussian decoder, so log q(x) is exact; K = 0 is the paper's bound, larger K close the gap."""
    torch.manual_seed(0)
    model = CoarseGrainedModel(2, 1, hidden=(), init_std=0.3).double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.tensor([[1.5], [0.5]]))
    cov = model.decoder[0].weight @ model.decoder[0].weight.T + torch.diag(torch.exp(2 * model.log_std))
    exact = torch.distributions.MultivariateNormal(model.decoder[0].bias, cov)
    with torch.no_grad():
        z, x, _, _ = model.sample(4000, torch.Generator().manual_seed(2))
        log_likelihood = model.log_likelihood(x, z)
        gaps = [float((log_marginal_bound(model, x, z, log_likelihood, k) - exact.log_prob(x)).mean())
                for k in (0, 4, 64)]
    assert gaps[0] > gaps[1] > gaps[2] > -0.01      # an upper bound on average, tighter with K
    assert gaps[0] > 0.1 and gaps[2] < 0.2 * gaps[0]
    torch.manual_seed(3)
    with torch.no_grad():
        forward_gaps = [float(forward_kl(model, x, k) + exact.log_prob(x).mean()) for k in (1, 64)]
    assert forward_gaps[0] > 0.1 and -0.01 < forward_gaps[1] < 0.2 * forward_gaps[0]   # −ELBO, then IWAE
    with pytest.raises(ValueError, match="extra_latents"):
        log_marginal_bound(model, x, z, log_likelihood, -1)


def test_interrupted_training_resumes_with_the_same_numbers(tmp_path, monkeypatch, one_thread):
    """A run with the mixed objective and the tightened bound, stopped mid-stage by a failing energy
    call, resumes from its checkpoint (model, optimizer, RNGs) to the same record as an uninterrupted run."""
    from cvplug.plugins.rkl import fit_model

    spec = systems.load("double-well")
    options = dict(schedule=AdaptiveTempering(start=0.5, max_step=0.25), steps_per_stage=20, final_steps=20,
                   batch_size=32, data=np.random.default_rng(0).normal(size=(50, 1, 3)), gamma=0.5, extra_latents=2,
                   checkpoint_every=10, seed=0, progress=False)
    whole = fit_model(spec, 1, **options).result
    assert [h["beta"] for h in whole.history] == [0.5, 0.75, 1.0]
    energy, calls = ToyTarget._energy, []

    def failing(self, x):
        calls.append(len(x))
        if len(calls) == 35:                                       # stage 2, between its checkpoints
            raise RuntimeError("simulated crash")
        return energy(self, x)

    monkeypatch.setattr(ToyTarget, "_energy", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_model(spec, 1, work_dir=tmp_path, **options)
    monkeypatch.setattr(ToyTarget, "_energy", energy)
    resumed = fit_model(spec, 1, work_dir=tmp_path, **options).result
    for key in ("beta", "loss", "kl", "force_calls"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in whole.history], rel=1e-9), key
    for other in (dict(data=options["data"] + 0.01), dict(final_steps=30), dict(seed=1)):
        with pytest.raises(ValueError, match="was written for other settings, data or starting model"):
            fit_model(spec, 1, work_dir=tmp_path, **{**options, **other})


def test_learning_rate_decays_within_each_stage_and_milestones_train_as_long_as_the_target(monkeypatch, one_thread):
    from cvplug.plugins.rkl import fit_model

    rates, adam_step = [], torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append([group["lr"] for group in self.param_groups])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    schedule = AdaptiveTempering(start=0.5, max_step=0.25, milestones=(0.75,))
    result = fit_model(systems.load("double-well"), 1, schedule=schedule, steps_per_stage=4, final_steps=6,
                       lr=1e-2, std_lr_factor=0.5, stage_lr_floor=0.01, batch_size=16, seed=0,
                       progress=False).result
    assert [(h["beta"], h["steps"]) for h in result.history] == [(0.5, 4), (0.75, 6), (1.0, 6)]
    decay = [0.01 ** (i / 4) for i in range(4)] + 2 * [0.01 ** (i / 6) for i in range(6)]
    assert np.array(rates) == pytest.approx(np.outer(decay, [1e-2, 0.5e-2]), rel=1e-12)
    with pytest.raises(ValueError, match="stage_lr_floor"):
        fit_model(systems.load("double-well"), 1, stage_lr_floor=0.0, progress=False)


def test_rigid_frame_round_trip_and_invariance():
    spec = systems.load("ala2-vacuum")
    frame = RigidFrame(22, 8, 6, 14)
    positions = torch.tensor(spec.positions, dtype=torch.float64)[None]
    x = frame(positions)
    assert x.shape == (1, 60)
    rebuilt = frame.embed(x)
    assert torch.allclose(torch.cdist(rebuilt[0], rebuilt[0]), torch.cdist(positions[0], positions[0]), atol=1e-12)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    q = q * torch.sign(torch.det(q))
    assert torch.allclose(frame(positions @ q.T + 0.7), x, atol=1e-12)
    assert x[0, 0] > 0 and x[0, 2] > 0
    scripted = torch.jit.script(frame)
    assert torch.equal(scripted(positions), x) and torch.equal(scripted.embed(x), rebuilt)
    with pytest.raises(ValueError, match="three different atoms"):
        RigidFrame(22, 8, 8, 14)


def test_constraints_become_springs_and_the_target_agrees_with_openmm():
    spec = systems.load("ala2-vacuum", temperature=330.0)
    flexible = springs_for_constraints(spec.system, k=1000.0)
    assert spec.system.getNumConstraints() == 12 and flexible.getNumConstraints() == 0
    assert flexible.getNumForces() == spec.system.getNumForces() + 1
    target = MoleculeTarget(spec, constraint_k=1000.0)
    moved = torch.tensor(spec.positions)[None].clone()
    moved[0, 1] += torch.tensor([0.01, 0.0, 0.0], dtype=moved.dtype)    # stretches the constrained C–H bonds of atom 1
    x = target.coordinates(moved.numpy())
    springs = 0.0
    for c in range(spec.system.getNumConstraints()):
        i, j, length = spec.system.getConstraintParameters(c)
        r = np.linalg.norm(moved[0, i].numpy() - moved[0, j].numpy())
        springs += 0.5 * 1000.0 * (r - length.value_in_unit(length.unit)) ** 2
    expected = (spec.energy(moved[0].numpy()) + springs) / spec.kT
    assert target.energy(x.double()).item() == pytest.approx(expected, rel=1e-5)
    assert target.force_calls == 1
    clash = moved.clone()
    clash[0, 20] = clash[0, 1] + 0.02              # two non-bonded atoms 0.02 nm apart
    assert target.energy(target.coordinates(clash.numpy()).double()).item() > 1e8   # raw; training caps β u
    target.close()
    with pytest.raises(ValueError, match="spring constant"):
        springs_for_constraints(spec.system, k=0.0)
    with pytest.raises(ValueError, match="toy"):
        MoleculeTarget(systems.load("double-well"))


def test_short_double_well_run_moves_the_model_toward_the_boltzmann_statistics(rkl_double_well, one_thread):
    """300 steps at β = 1 from σθ = 0.1: the std of x2 (exactly 1) and of x1 (0.52) move most of the way."""
    from cvplug.plugins.rkl import fit_model
    spec = systems.load("double-well")
    fitted = fit_model(spec, 1, schedule=AdaptiveTempering(start=1.0), init_std=0.1, lr=1e-2,
                       final_steps=300, batch_size=128, seed=0, progress=False)
    stats = rkl_double_well.model_statistics(fitted.model, 20_000)
    assert abs(stats["std_x2"] - 1.0) < 0.15
    assert 0.2 < stats["std_x1"] < 0.4              # the main well alone: ≈ 0.29
    assert abs(stats["mean_x1"] + 2.44) < 0.15
    assert fitted.result.force_calls == 300 * 128 + 4 * 128


def test_double_well_exact_statistics_samples_and_acceptance(rkl_double_well):
    exact_samples, exact_statistics = rkl_double_well.exact_samples, rkl_double_well.exact_statistics
    failures = rkl_double_well.failures

    u = systems.load("double-well").toy.u
    exact = exact_statistics(u)
    assert exact["mean_x1"] == pytest.approx(-2.441, abs=1e-3) and exact["std_x1"] == pytest.approx(0.522, abs=1e-3)
    assert exact["std_x2"] == pytest.approx(1.0, abs=1e-6)
    assert exact["weight_x1_pos"] == pytest.approx(0.00835, abs=1e-4)
    assert exact_statistics(u, 0.5)["weight_x1_pos"] == pytest.approx(0.0908, abs=1e-4)
    samples = exact_samples(u, 50_000)
    assert samples[:, 0].mean() == pytest.approx(-2.441, abs=0.02)
    assert samples[:, 1].std() == pytest.approx(1.0, abs=0.02)
    perfect = {"model": exact, "exact": exact, "model_half_beta_weight": 0.0908, "exact_half_beta_weight": 0.0908,
               "rank_correlation": 0.99}
    assert failures(perfect) == []
    collapsed = {**perfect, "model": {**exact, "std_x1": 0.29, "weight_x1_pos": 0.0}, "rank_correlation": 0.5}
    assert [f.split(":")[0] for f in failures(collapsed)] == ["std_x1", "x1 > 0 weight", "|Spearman ρ(z, x1)|"]


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_exact_kl_of_a_gaussian_model_matches_the_closed_form(beta, rkl_double_well):
    """A linear decoder makes q(x) = N((m1, m2), diag(a² + s1², s2²)); KL(q ‖ p_β) = −H(q) + β⟨u⟩_q + log Z_β with
    ⟨x1⁴⟩, ⟨x1²⟩ in closed form and log Z_β by 1-d quadrature, independent of the 2-d binned quadrature."""
    m1, a, s1, m2, s2 = -2.4, 0.2, 0.2, 0.3, 0.9
    model = CoarseGrainedModel(2, 1, hidden=()).double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(torch.tensor([[a], [0.0]]))
        model.decoder[0].bias.copy_(torch.tensor([m1, m2]))
        model.log_std.copy_(torch.log(torch.tensor([s1, s2])))
    v1, v2 = a * a + s1 * s1, s2 * s2
    x = np.linspace(-10, 10, 400_001)
    log_z = math.log(np.exp(-beta * (x ** 4 / 4 - 3 * x ** 2 + x)).sum() * (x[1] - x[0])) \
        + 0.5 * math.log(2 * math.pi / beta)
    mean_u = (m1 ** 4 + 6 * m1 ** 2 * v1 + 3 * v1 ** 2) / 4 - 3 * (m1 ** 2 + v1) + m1 + (m2 ** 2 + v2) / 2
    closed_form = -0.5 * math.log(2 * math.pi * math.e * v1) - 0.5 * math.log(2 * math.pi * math.e * v2) \
        + beta * mean_u + log_z
    exact = rkl_double_well.exact_kl(model, systems.load("double-well").toy.u, beta)
    assert exact == pytest.approx(closed_form, rel=5e-4)


class _Decoder(torch.nn.Module):
    """μθ(z) = (f(z), 0) for a numpy function f of z [N]."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, z):
        x1 = torch.as_tensor(self.f(z[:, 0].double().numpy()), dtype=z.dtype)
        return torch.stack([x1, torch.zeros_like(x1)], 1)


def _fixed_model(f, std_x1):
    model = CoarseGrainedModel(2, 1).double()
    model.decoder = _Decoder(f)
    with torch.no_grad():
        model.log_std.copy_(torch.log(torch.tensor([std_x1, 1.0])))
    return model


def test_pearson_r_misses_the_objectives_optimum_that_spearman_rho_accepts(rkl_double_well):
    """Why the criterion is Spearman's ρ. The optimum of KL(q ‖ p) for a 1-d z is the monotone transport
    x1 = F⁻¹(Φ(z)) with σθ → 0 (F: the exact x1 marginal); its exact posterior mean E[z | x] is Gaussianised x1:
    Pearson's r with x1 only ≈ 0.74, Spearman's ρ ≈ 1. A model that labels the wells (Gaussian wells, exact
    weight, z moving x1 by 0.05 per unit within the main well) meets r ≥ 0.95 with a KL 0.011 nats higher."""
    from scipy.stats import norm, spearmanr

    exact_kl, exact_samples = rkl_double_well.exact_kl, rkl_double_well.exact_samples
    posterior_mean = rkl_double_well.posterior_mean
    u = systems.load("double-well").toy.u
    grid = np.linspace(-6, 6, 24_001)
    with torch.no_grad():
        density = np.exp(-u(torch.as_tensor(np.stack([grid, 0 * grid], 1))).numpy())
    cdf = np.cumsum(density) / density.sum()
    transport = _fixed_model(lambda z: np.interp(norm.cdf(z), cdf, grid), 0.02)
    main = grid < 0
    mean_main = (grid * density)[main].sum() / density[main].sum()
    std_main = np.sqrt(((grid - mean_main) ** 2 * density)[main].sum() / density[main].sum())
    mean_minor = (grid * density)[~main].sum() / density[~main].sum()
    jump = norm.isf(density[~main].sum() / density.sum())
    labeller = _fixed_model(lambda z: np.where(z < jump, mean_main + 0.05 * z, mean_minor),
                            math.sqrt(std_main ** 2 - 0.05 ** 2))
    samples = exact_samples(u, 5_000)

    def correlation(z):
        return abs(np.corrcoef(z, samples[:, 0])[0, 1])

    z_transport, transport_kl = posterior_mean(transport, samples), exact_kl(transport, u)
    assert transport_kl < 0.001 and correlation(z_transport) < 0.8
    assert abs(spearmanr(z_transport, samples[:, 0]).statistic) > 0.99
    assert exact_kl(labeller, u) > transport_kl + 0.01 and correlation(posterior_mean(labeller, samples)) > 0.95


class _CubeEncoder(torch.nn.Module):
    """r(z | x) with mean x1³ and log std 0."""

    def forward(self, x):
        return torch.stack([x[:, 0] ** 3, torch.zeros_like(x[:, 0])], 1)


def test_report_judges_spearman_rho_of_the_encoder_mean_and_gives_pearson_r_beside_it(rkl_double_well):
    """μφ(x) = x1³ orders exact samples exactly like x1 (ρ = 1, accepted) but is not linear in it (r < 1)."""
    exact_samples, report = rkl_double_well.exact_samples, rkl_double_well.report
    u = systems.load("double-well").toy.u
    model = _fixed_model(lambda z: -2.44 + 0.5 * z, 0.1)
    model.encoder = _CubeEncoder()
    numbers = report(model, {0.5: model.state_dict()}, u, n=20_000)
    x1 = exact_samples(u)[:, 0]
    assert numbers["rank_correlation"] == pytest.approx(1.0, abs=1e-12)
    assert numbers["correlation"] == pytest.approx(abs(np.corrcoef(x1 ** 3, x1)[0, 1]), abs=1e-6)
    assert numbers["correlation"] < 0.9


def test_mixture_prior_density_and_stratified_estimate_are_exact_and_differentiable_in_the_weights():
    """q(z) equals torch's mixture density; mean(weights · f(z)) over stratified draws estimates E_q f without
    bias, and its gradient in the logits is the exact one (f(z) = |z|²: E f = Σ π_k (|m_k|² + Σ s_k²))."""
    from cvplug.plugins.rkl import MixturePrior

    torch.manual_seed(0)
    prior = MixturePrior(2, 3).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.3, -0.5, 0.1]))
        prior.log_std.copy_(torch.tensor([[0.1, -0.2], [0.0, 0.3], [-0.4, 0.2]]))
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.logits.detach()),
        torch.distributions.Independent(torch.distributions.Normal(prior.means.detach(),
                                                                   torch.exp(prior.log_std.detach())), 1))
    z = reference.sample((100,))
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-12)

    def exact(logits):
        return (torch.softmax(logits, 0) * ((prior.means ** 2).sum(1) + torch.exp(2 * prior.log_std).sum(1))).sum()

    z, weights, component = prior.stratified(300_000)
    assert z.shape == (300_000, 2) and weights.shape == (300_000,)
    assert torch.equal(component, torch.arange(3).repeat_interleave(100_000))
    estimate = (weights * (z ** 2).sum(1)).mean()
    assert estimate.item() == pytest.approx(exact(prior.logits).item(), rel=0.01)
    (grad,) = torch.autograd.grad(estimate, prior.logits)
    (exact_grad,) = torch.autograd.grad(exact(prior.logits), prior.logits)
    assert torch.allclose(grad, exact_grad, atol=0.02)
    draws = prior.sample(200_000, torch.Generator().manual_seed(1))
    assert (draws ** 2).sum(1).mean().item() == pytest.approx(exact(prior.logits).item(), rel=0.01)
    with pytest.raises(ValueError, match="n_mixture"):
        MixturePrior(2, 0)


def test_mixture_model_trains_its_weights_and_pretraining_starts_it_at_the_data(one_thread):
    """With a mixture prior the reverse-KL loss reaches the weights π (recorded per stage); ``pretrain_steps``
    fit the model to data frames (forward bound, no force calls) before the first stage, and need data."""
    from cvplug.plugins.rkl import fit_model

    spec = systems.load("double-well")
    data = np.zeros((20, 1, 3))
    data[:, 0, 0] = np.where(np.arange(20) < 15, -2.4, 2.3)          # both wells, x2 = 0
    options = dict(schedule=AdaptiveTempering(start=1.0), final_steps=5, batch_size=30, data=data, gamma=0.5,
                   mixture=2, seed=0, progress=False)
    untrained = fit_model(spec, 1, pretrain_steps=0, **options)
    pretrained = fit_model(spec, 1, pretrain_steps=300, lr=1e-2, **options)
    assert pretrained.result.force_calls == untrained.result.force_calls == 5 * 30 + 4 * 30
    assert untrained.model.prior.logits.grad is not None                        # π is trained
    assert untrained.result.history[-1]["weights"] == untrained.model.prior.weights().tolist()  # and recorded
    with torch.no_grad():
        x1 = pretrained.model.sample(4000, torch.Generator().manual_seed(0)).x[:, 0]
    assert ((x1 + 2.4).abs() < 1).float().mean() > 0.5 and ((x1 - 2.3).abs() < 1).float().mean() > 0.1
    with pytest.raises(ValueError, match="pretrain_steps needs data"):
        fit_model(spec, 1, schedule=AdaptiveTempering(start=1.0), pretrain_steps=5, progress=False)


def test_weights_from_data_keep_the_bound_off_the_mixture_weights():
    """``weights_held`` makes π a constant of the reverse bound (every other parameter keeps its gradient); with
    ``weights_from_data`` training moves π by the data term alone, so a step on the bound leaves it where it was."""
    model = MixtureDecoderModel(2, 1, hidden=(8,), init_std=0.7, init_gain=1.0, mixture=2,
                                mixture_spread=3.0).double()
    assert model.prior.means[:, 0].tolist() == [-3.0, 3.0]
    spec = systems.load("double-well")
    target = ToyTarget(spec)
    with model.prior.weights_held():
        torch.manual_seed(0)
        reverse_kl(model, target, 1.0, 64, kappa=None).loss.backward()
    assert model.prior.logits.grad is None and model.prior.means.grad.abs().sum() > 0
    torch.manual_seed(0)
    reverse_kl(model, target, 1.0, 64, kappa=None).loss.backward()
    assert model.prior.logits.grad.abs().sum() > 0                             # the bound alone would move π

    from cvplug.plugins.rkl import fit_model
    data = np.zeros((20, 1, 3))
    data[:, 0, 0] = np.where(np.arange(20) < 15, -2.4, 2.3)
    options = dict(schedule=AdaptiveTempering(start=1.0), final_steps=20, batch_size=32, mixture=2, seed=0,
                   progress=False, lr=1e-2)
    for weights_from_data in (False, True):
        fitted = fit_model(spec, 1, data=data, gamma=1.0, weights_from_data=weights_from_data, **options)
        moved = abs(fitted.model.prior.logits[0] - fitted.model.prior.logits[1]).item()
        assert (moved == 0.0) if weights_from_data else (moved > 0.01)            # γ = 1: the data term weighs 0
    with pytest.raises(ValueError, match="weights_from_data needs data and a mixture prior"):
        fit_model(spec, 1, weights_from_data=True, **options)


def test_warm_start_copies_the_base_model_and_puts_one_component_on_each_cluster_of_the_data():
    """A mixture decoder warm-started from a single-decoder model generates what that model does at every z (all
    decoders and σθ copied), keeps its encoder, and has one prior component per cluster of the encoded data: at the
    cluster's mean z, with its share as weight."""
    from cvplug.plugins.rkl import fit_model, warm_start

    base = _double_model(hidden=(8,), seed=1)
    data = torch.zeros(20, 2, dtype=torch.float64)
    data[:, 0] = torch.where(torch.arange(20) < 15, -2.4, 2.3)
    data[:, 1] = 0.01 * torch.randn(20, dtype=torch.float64)
    model = _double_model(hidden=(8,), mixture_decoder=True)
    warm_start(model, base, data, seed=0)
    with torch.no_grad():
        z = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
        for k in range(2):
            assert torch.equal(model.decode_all(z)[:, k], base.decode(z))
        assert torch.equal(model.encode(data)[0], base.encode(data)[0])
        assert torch.equal(model.log_std, base.log_std.expand(2, -1))
        encoded = base.encode(data)[0][:, 0]
        centres = sorted(model.prior.means[:, 0].tolist())
        expected = sorted([encoded[:15].mean().item(), encoded[15:].mean().item()])
        assert centres == pytest.approx(expected, abs=1e-9)
        big = 0 if model.prior.means[0, 0] == pytest.approx(encoded[:15].mean().item()) else 1
        assert model.prior.weights()[big].item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="warm_start needs a mixture-decoder model"):
        warm_start(_double_model(), base, data)
    with pytest.raises(ValueError, match="hold takes weights, shape, encoder"):
        warm_start(model, base, data, hold=("decoder",))
    spec = systems.load("double-well")
    with pytest.raises(ValueError, match="base needs data"):
        fit_model(spec, 1, mixture=2, mixture_decoder=True, base=base, progress=False)

    positions = np.zeros((20, 1, 3))
    positions[:, 0, :2] = data.numpy()
    options = dict(mixture=2, mixture_decoder=True, base=base, data=positions, gamma=0.5, hidden=(8,), lr=1e-2,
                   schedule=AdaptiveTempering(start=1.0), final_steps=20, batch_size=32, seed=0, progress=False)
    for hold in [(), ("weights", "encoder"), ("shape",)]:
        fitted = fit_model(spec, 1, hold=hold, **options).model
        weights_kept = torch.allclose(fitted.prior.weights().double(), model.prior.weights(), atol=1e-6)
        encoder_kept = all(torch.allclose(a.double(), b, atol=1e-6) for a, b in zip(fitted.encoder.parameters(),
                                                                                    base.encoder.parameters()))
        shape_kept = torch.allclose(fitted.prior.means.double(), model.prior.means, atol=1e-6)
        assert (weights_kept, encoder_kept, shape_kept) == ("weights" in hold, "encoder" in hold, "shape" in hold)
