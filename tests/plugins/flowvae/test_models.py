"""flowvae: decoders are normalised densities, the flow prior obeys change of variables, training is seeded and
resumable, the exported CV is the encoder mean, bad input is refused."""
import math

import numpy as np
import pytest
import torch

import cvplug
from cvplug import systems
from cvplug.data import TrainingData
from cvplug.features import Cartesians
from cvplug.plugins.flowvae import (BetaSchedule, DECODERS, FlowPrior, FlowPriorVAE, FlowVAE, build_vae, fit_vae,
                                    make_cv, make_decoder)
from cvplug.plugins.flowvae.toys import PolarCoordinates


def _decoder(name, periodic, n_components=1, seed=0):
    torch.manual_seed(seed)
    D = len(periodic)
    mean, std = torch.linspace(-0.5, 0.5, D), torch.linspace(0.5, 1.5, D)
    return make_decoder(name, n_components, mean, std, torch.tensor(periodic), hidden=(16, 16))


def _grid(periodic, mean, std, n):
    axes = [torch.linspace(-math.pi, math.pi, n + 1)[:-1] + math.pi / n if p else
            torch.linspace(float(m) - 12 * float(s), float(m) + 12 * float(s), n) for p, m, s in zip(periodic, mean, std)]
    widths = [float(a[1] - a[0]) for a in axes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes)), math.prod(widths)


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("periodic", [[False], [False, False], [False, True]])
def test_every_decoder_density_integrates_to_one(name, periodic):
    decoder = _decoder(name, periodic)
    points, cell = _grid(periodic, decoder.shift, decoder.scale, 4000 if len(periodic) == 1 else 300)
    for z in torch.randn(2, 1):
        with torch.no_grad():
            mass = torch.exp(decoder.log_prob(points, z.expand(len(points), 1))).sum() * cell
        assert float(mass) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_samples_follow_its_density(name):
    """The sample mean of x|z matches the density's mean on a grid (checks sample() against log_prob())."""
    decoder = _decoder(name, [False, False], seed=3)
    z = torch.full((20000, 1), 0.7)
    torch.manual_seed(0)
    samples = decoder.sample(z)
    points, cell = _grid([False, False], decoder.shift, decoder.scale, 400)
    with torch.no_grad():
        weights = torch.exp(decoder.log_prob(points, z[:1].expand(len(points), 1))) * cell
    expected = (weights[:, None] * points).sum(0)
    spread = samples.std(0)
    assert torch.allclose(samples.mean(0), expected, atol=float(4 * spread.max() / math.sqrt(len(z))))


def test_periodic_columns_are_sampled_on_the_circle():
    decoder = _decoder("autoregressive", [False, True])
    x = decoder.sample(torch.randn(500, 1))
    assert float(x[:, 1].min()) >= -math.pi and float(x[:, 1].max()) < math.pi
    shifted = x.clone()
    shifted[:, 1] += 2 * math.pi
    z = torch.zeros(500, 1)
    assert torch.allclose(decoder.log_prob(x, z), decoder.log_prob(shifted, z), atol=1e-4)


@pytest.mark.parametrize("n_components", [1, 2])
def test_flow_prior_log_density_is_change_of_variables(n_components):
    torch.manual_seed(1)
    prior = FlowPrior(n_components, hidden=(16, 16))
    z = 3 * torch.randn(6, n_components)
    expected = []
    for point in z:
        u = prior.to_base(point[None])[0]
        jacobian = torch.autograd.functional.jacobian(lambda p: prior.to_base(p[None])[0], point)
        log_det = torch.linalg.slogdet(jacobian)[1]
        expected.append(-0.5 * (u**2).sum() - 0.5 * n_components * math.log(2 * math.pi) + log_det)
    assert torch.allclose(prior.log_prob(z), torch.stack(expected), atol=1e-4)
    assert not torch.allclose(prior.to_base(z), z, atol=1e-2)  # the flow is not the identity
    far = torch.full((1, n_components), 15.0)  # outside [−10, 10] the splines are the identity
    assert torch.allclose(prior.to_base(far) - far, prior.to_base(far + 1) - far - 1, atol=1e-5)


def test_beta_schedule_is_linear_then_constant():
    schedule = BetaSchedule(1.0, 5.0, anneal_epochs=20)
    assert [schedule(e) for e in (0, 10, 20, 50)] == [1.0, 3.0, 5.0, 5.0]
    assert BetaSchedule(0.0, 2.0, anneal_epochs=0)(0) == 2.0
    with pytest.raises(ValueError):
        BetaSchedule(-1.0, 1.0)


def _data(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 2 - 1
    return torch.stack([t, t**2 + 0.05 * torch.randn(n, generator=g)], 1)


def test_training_lowers_the_loss_and_is_seeded():
    x = _data()
    kwargs = dict(n_components=1, decoder="condind", beta=1.0, epochs=6, anneal_epochs=2, lr=3e-3, seed=5,
                  progress=False, encoder_hidden=(16,), decoder_hidden=(16,), prior_hidden=(8,))
    vae, history = fit_vae(x, [False, False], **kwargs)
    assert history[-1]["val_nll"] + history[-1]["val_kl"] < history[0]["val_nll"] + history[0]["val_kl"] - 0.5
    _, again = fit_vae(x, [False, False], **kwargs)
    assert again == history


def test_training_resumes_from_checkpoint(tmp_path):
    x = _data()
    kwargs = dict(n_components=1, decoder="flow", beta=1.0, anneal_epochs=2, lr=3e-3, seed=2, progress=False,
                  encoder_hidden=(16,), decoder_hidden=(16,), prior_hidden=(8,))
    full, history = fit_vae(x, [False, False], epochs=3, **kwargs)
    fit_vae(x, [False, False], epochs=1, checkpoint=tmp_path / "run.ckpt", **kwargs)  # "interrupted" mid-anneal
    resumed, resumed_history = fit_vae(x, [False, False], epochs=3, checkpoint=tmp_path / "run.ckpt", **kwargs)
    assert len(history) == 3
    assert resumed_history == history
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_keep_best_selects_the_best_validation_epoch_at_the_final_beta(tmp_path):
    x = _data()
    kwargs = dict(n_components=1, decoder="autoregressive", beta=1.0, epochs=6, anneal_epochs=2, lr=3e-2, seed=1,
                  progress=False, encoder_hidden=(16,), decoder_hidden=(16,), prior_hidden=(8,))
    vae, history = fit_vae(x, [False, False], keep_best=True, checkpoint=tmp_path / "best.ckpt", **kwargs)
    final = [h for h in history if h["beta"] == 1.0]
    selected = [h for h in history if h.get("selected")]
    assert len(selected) == 1
    assert selected[0]["val_nll"] + selected[0]["val_kl"] == min(h["val_nll"] + h["val_kl"] for h in final)
    resumed, again = fit_vae(x, [False, False], keep_best=True, checkpoint=tmp_path / "best.ckpt", **kwargs)
    assert again == history
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(ValueError, match="x_val"):
        fit_vae(x, [False, False], keep_best=True, validation_fraction=0.0, **kwargs)


def test_carrying_parameters_over_to_a_larger_beta():
    x = _data()
    kwargs = dict(n_components=1, decoder="condind", anneal_epochs=2, lr=3e-3, progress=False,
                  encoder_hidden=(16,), decoder_hidden=(16,), prior_hidden=(8,))
    first, _ = fit_vae(x, [False, False], beta=1.0, epochs=2, **kwargs)
    before = {k: v.clone() for k, v in first.state_dict().items()}
    second, history = fit_vae(x, [False, False], beta=5.0, epochs=2, start=first, beta_start=1.0, **kwargs)
    assert [h["beta"] for h in history] == [1.0, 3.0]
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in before.items())  # the start is not modified
    assert any(not torch.equal(v, second.state_dict()[k]) for k, v in before.items())


def test_exported_cv_is_the_encoder_mean(tmp_path):
    x = _data(200)
    vae = build_vae(x, [False, False], 2, "mse", encoder_hidden=(8,), decoder_hidden=(8,), prior_hidden=(8,))
    positions = torch.zeros(200, 1, 3)
    positions[:, 0, :2] = x
    cv = make_cv(vae, Cartesians([0], components=(0, 1)), 1, positions=positions)
    loaded = cvplug.load_cv(cv.export(tmp_path / "cv.pt"))
    assert loaded.method == "flowvae" and loaded.names == ["z0", "z1"] and loaded.info["decoder"] == "mse"
    assert torch.allclose(loaded(positions), vae.encoder(x)[0], atol=1e-6)
    assert len(loaded.info["bias_range"]) == 2


def test_cv_with_a_periodic_observation_map_exports(tmp_path):
    g = torch.Generator().manual_seed(0)
    xy = torch.randn(300, 2, generator=g) + torch.tensor([2.0, 0.0])
    polar = PolarCoordinates()(xy)
    vae = build_vae(polar, [False, True], 1, "autoregressive", encoder_hidden=(8,), decoder_hidden=(8,))
    positions = torch.cat([xy, torch.zeros(300, 1)], 1)[:, None]
    cv = make_cv(vae, Cartesians([0], components=(0, 1)), 1, observation=PolarCoordinates())
    loaded = cvplug.load_cv(cv.export(tmp_path / "polar.pt"))
    assert torch.allclose(loaded(positions), vae.encoder(polar)[0], atol=1e-5)


def test_method_is_registered_and_fits_a_cv():
    from cvplug import methods

    assert methods.get("flowvae") is FlowPriorVAE
    x = _data(300)
    positions = torch.cat([x, torch.zeros(300, 1)], 1)[:, None]
    data = TrainingData.from_trajectories([positions.numpy()], systems.load("three-well"),
                                          Cartesians([0], components=(0, 1)))
    fitted = methods.create("flowvae", dict(n_components=1, decoder="condind", epochs=1, encoder_hidden=(8,),
                                            decoder_hidden=(8,), prior_hidden=(8,)), progress=False).fit(data)
    assert fitted.cv.method == "flowvae" and fitted.cv(positions).shape == (300, 1)
    assert isinstance(fitted.model, FlowVAE)


def test_bad_input_raises_clear_errors():
    x = _data(100)
    with pytest.raises(ValueError, match="unknown decoder"):
        build_vae(x, [False, False], 1, "gan")
    with pytest.raises(ValueError, match="len\\(periodic\\)"):
        build_vae(x, [False], 1)
    with pytest.raises(ValueError, match="constant"):
        build_vae(torch.cat([x, torch.ones(100, 1)], 1), [False, False, False], 1)
    bad = x.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_vae(bad, [False, False], epochs=1, progress=False)
    with pytest.raises(ValueError, match="n_components"):
        build_vae(x, [False, False], 0)
    with pytest.raises(ValueError, match="frames must be"):
        TrainingData.from_trajectories([x.numpy()], systems.load("three-well"), Cartesians([0], components=(0, 1)))
