"""DynAE plugin: losses, latent bins, resampling, training behaviour, export (fast tests)."""
import math

import numpy as np
import pytest
import torch

import cvplug
from cvplug import systems
from cvplug.features import Cartesians
from cvplug.methods import get
from cvplug.plugins import dynae
from cvplug.plugins.dynae import (BinSampler, Pairs, assign, bin_probabilities, regular_space,
                                  sliced_wasserstein)
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory, trajectory_positions

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is fastest


@pytest.fixture(scope="module")
def three_well(tmp_path_factory):
    """2000 frames of three-well Brownian dynamics, one frame every 10 steps (0.01 ps)."""
    out = tmp_path_factory.mktemp("tw") / "tw"
    path = simulate(systems.load("three-well"), 20_000, out, report_every=10, seed=3, platform="Reference",
                    progress=False)
    return load_trajectory(path)


def observed():
    return dynae.Observed(Cartesians([0], components=(0, 1)), dynae.ParabolicWarp())


QUICK = dict(epochs=3, groups=4, batch=32, progress=False)


# --- sliced-Wasserstein distance -------------------------------------------------------------------------------

def test_sliced_wasserstein_is_zero_for_identical_samples():
    a = torch.randn(3, 200, 2)
    assert sliced_wasserstein(a, a.clone()).item() == 0.0
    assert sliced_wasserstein(a, a[:, torch.randperm(200)]).item() == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_matches_the_closed_form_for_two_1d_gaussians():
    # W2² between N(m1, s1²) and N(m2, s2²) is (m1 − m2)² + (s1 − s2)²; exact quantiles as samples
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(20_000, dtype=torch.float64) + 0.5) / 2e4)
    a = (0.3 + 1.0 * quantiles)[torch.randperm(20_000)].unsqueeze(1)
    b = (-1.2 + 2.5 * quantiles)[torch.randperm(20_000)].unsqueeze(1)
    assert sliced_wasserstein(a, b).item() == pytest.approx(1.5**2 + 1.5**2, rel=1e-3)


def test_sliced_wasserstein_of_shifted_isotropic_gaussians_averages_the_shift_over_directions():
    # slices of N(Δ, I) and N(0, I) along θ are 1D unit Gaussians shifted by θ·Δ, and over evenly spread
    # directions in 2D the mean of (θ·Δ)² is |Δ|²/2
    torch.manual_seed(0)
    a, b = torch.randn(20_000, 2, dtype=torch.float64), torch.randn(20_000, 2, dtype=torch.float64)
    angles = torch.arange(64, dtype=torch.float64) * math.pi / 64
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)
    shift = torch.tensor([3.0, 0.0], dtype=torch.float64)
    assert sliced_wasserstein(a + shift, b, directions=directions).item() == pytest.approx(9.0 / 2, rel=0.01)


def test_sliced_wasserstein_averages_over_groups():
    a, b, directions = torch.randn(4, 50, 2), torch.randn(4, 50, 2), torch.nn.functional.normalize(
        torch.randn(10, 2), dim=1)
    separate = torch.stack([sliced_wasserstein(a[k], b[k], directions=directions) for k in range(4)]).mean()
    assert sliced_wasserstein(a, b, directions=directions).item() == pytest.approx(separate.item(), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        sliced_wasserstein(a, b[:, :10])


# --- latent bins and resampling ----------------------------------------------------------------------------------

def test_regular_space_respects_d_min_and_covers_every_point(rng):
    z = rng.normal(size=(5000, 2)) * [3.0, 1.0]
    centres = regular_space(z, d_min=0.7, chunk=512)
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert distances[np.triu_indices(len(centres), 1)].min() >= 0.7
    assert np.linalg.norm(z - centres[assign(z, centres)], axis=1).max() < 0.7
    np.testing.assert_array_equal(centres[0], z[0])


def test_regular_space_follows_data_order_like_the_sequential_definition(rng):
    z = rng.uniform(-2, 2, size=(800, 2))
    expected = []
    for point in z:
        if all(np.linalg.norm(point - c) >= 0.5 for c in expected):
            expected.append(point)
    np.testing.assert_array_equal(regular_space(z, 0.5, chunk=100), np.array(expected))


def test_regular_space_rejects_bad_input():
    with pytest.raises(ValueError, match="d_min"):
        regular_space(np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        regular_space(np.zeros((0, 2)), 1.0)


def test_bin_probabilities_follow_counts_to_the_one_over_gamma():
    labels = np.repeat([0, 1, 2], [100, 400, 1600])
    np.testing.assert_allclose(bin_probabilities(labels, gamma=2.0), np.array([10.0, 20.0, 40.0]) / 70.0)
    np.testing.assert_allclose(bin_probabilities(labels, gamma=1.0), np.array([100, 400, 1600]) / 2100)
    with pytest.raises(ValueError, match="gamma"):
        bin_probabilities(labels, gamma=0.5)


def test_bin_sampler_draws_each_group_from_one_bin_at_the_resampled_frequencies():
    labels = np.repeat([2, 0, 1], [100, 400, 1600])
    np.random.default_rng(0).shuffle(labels)
    sampler = BinSampler(labels, gamma=2.0)
    torch.manual_seed(0)
    batches = sampler.draw(groups=20_000, batch=8)
    group_labels = labels[batches.numpy()]
    assert (group_labels == group_labels[:, :1]).all()
    frequencies = np.bincount(group_labels[:, 0], minlength=3) / 20_000
    np.testing.assert_allclose(frequencies, np.array([20.0, 40.0, 10.0]) / 70.0, atol=0.01)


# --- training -----------------------------------------------------------------------------------------------------

def test_short_training_lowers_the_loss(three_well):
    result = dynae.train(three_well, 2, 1, features=observed(), seed=0, **{**QUICK, "epochs": 6})
    first, last = result.history[0], result.history[-1]
    assert last["reconstruction"] < 0.5 * first["reconstruction"]
    assert last["sliced_wasserstein"] < 0.5 * first["sliced_wasserstein"]
    assert last["bins"] > 1  # after the first epoch the latent is binned


def test_same_seed_same_numbers(three_well):
    one = dynae.train(three_well, 2, 1, features=observed(), seed=5, **QUICK)
    two = dynae.train(three_well, 2, 1, features=observed(), seed=5, **QUICK)
    other = dynae.train(three_well, 2, 1, features=observed(), seed=6, **QUICK)
    positions = torch.as_tensor(three_well.x[:50]).unsqueeze(1)
    positions = torch.nn.functional.pad(positions, (0, 1))
    assert one.history == two.history and torch.equal(one.cv(positions), two.cv(positions))
    assert not torch.equal(one.cv(positions), other.cv(positions))


def test_interrupted_training_resumes_to_the_same_numbers(three_well, tmp_path):
    path = tmp_path / "dynae.ckpt"
    settings = dict(features=observed(), seed=5, checkpoint=path, **QUICK)
    dynae.train(three_well, 2, 1, **{**settings, "epochs": 2})  # as if stopped after two epochs
    resumed = dynae.train(three_well, 2, 1, **settings)
    uninterrupted = dynae.train(three_well, 2, 1, **{**settings, "checkpoint": None})
    assert resumed.history == uninterrupted.history
    for a, b in zip(resumed.encoder.parameters(), uninterrupted.encoder.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="other settings"):
        dynae.train(three_well, 2, 1, **{**settings, "batch": 16})


def test_fit_on_pairs_trains_like_fit_on_the_trajectory(three_well):
    positions = np.zeros((len(three_well.x), 1, 3))
    positions[:, 0, :2] = three_well.x
    on_trajectory = dynae.train(three_well, 2, 2, features=observed(), seed=1, **QUICK)
    on_pairs = dynae.train(Pairs(positions[:-2], positions[2:]), 2, features=observed(), seed=1, **QUICK)
    assert on_pairs.history == on_trajectory.history


def test_learned_force_field_and_diffusion(three_well):
    result = dynae.train(three_well, 2, 1, features=observed(), seed=0, **QUICK)
    z = result.encode(np.pad(three_well.x[:100, None, :], ((0, 0), (0, 0), (0, 1))))
    assert result.force_field(z).shape == (100, 2)
    diffusion = result.diffusion(z)
    assert diffusion.shape == (100, 2, 2)
    np.testing.assert_allclose(diffusion, diffusion.transpose(0, 2, 1), atol=1e-6)
    assert (np.linalg.eigvalsh(diffusion) > 0).all()


@pytest.mark.parametrize("model", ["autoencoder", "vae"])
def test_baselines_share_the_encoder_and_learn_no_dynamics(three_well, model):
    ours = dynae.train(three_well, 2, 1, features=observed(), seed=0, **QUICK)
    baseline = dynae.train(three_well, 2, 1, features=observed(), seed=0, model=model, **QUICK)
    assert [p.shape for p in baseline.cv.encoder.parameters()] == [p.shape for p in ours.cv.encoder.parameters()]
    assert baseline.history[-1]["reconstruction"] < baseline.history[0]["reconstruction"]
    assert ("kl" in baseline.history[-1]) == (model == "vae")
    with pytest.raises(ValueError, match="only model='dynae'"):
        baseline.force_field(np.zeros((1, 2)))


def test_the_registry_fit_gives_a_cv_that_exports_bit_identically(three_well, tmp_path):
    from cvplug.data import TrainingData
    from cvplug.methods import create

    spec = systems.load(three_well.system)
    data = TrainingData.from_trajectories([trajectory_positions(three_well, spec)], spec, observed())
    options = {k: v for k, v in QUICK.items() if k != "progress"}
    fitted = create("dynae", dict(n_components=2, **options), seed=0, progress=False).fit(data)
    cv = fitted.cv
    assert isinstance(cv, cvplug.CollectiveVariable) and cv.method == "dynae"
    assert isinstance(get("dynae")(), dynae.DynAE) and isinstance(fitted.model, dynae.DynAEResult)
    loaded = cvplug.load_cv(cv.export(tmp_path / "dynae.pt"))
    positions = torch.as_tensor(np.pad(three_well.x[:64, None, :], ((0, 0), (0, 0), (0, 1))))
    assert torch.equal(loaded(positions), cv(positions))
    assert loaded.metadata["features"]["map"] == "(x, y) -> (x, y + 1.0 x^2)"
    assert len(loaded.metadata["info"]["bias_range"]) == 2


def test_the_device_option_is_checked_where_it_enters_and_resolved_on_this_machine():
    from cvplug.methods import create

    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, got 'gpu'"):
        create("dynae", {"device": "gpu"})
    with pytest.raises(ValueError, match="method 'tica' trains on the CPU only"):
        create("tica", {"device": "cuda"})
    gpu = torch.cuda.is_available()
    assert create("dynae").training_device() == ("cuda" if gpu else "cpu")
    assert create("dynae", {"device": "cpu"}).training_device() == "cpu"
    assert create("tica").training_device() == "cpu"
    if not gpu:
        with pytest.raises(ValueError, match="torch sees no CUDA GPU here"):
            create("dynae", {"device": "cuda"}).training_device()


def test_a_cuda_run_is_refused_before_any_md_where_there_is_no_gpu(tmp_path):
    from cvplug.learn import LearnSettings, prepare

    settings = LearnSettings(method="dynae", method_options={"device": "cuda"}, steps_per_round=100,
                             report_every=10, frequency=10)
    if torch.cuda.is_available():
        assert prepare("three-well", tmp_path / "run", settings, progress=False).settings is settings
    else:
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            prepare("three-well", tmp_path / "run", settings, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    (dict(model="pca"), "model must be one of"),
    (dict(lag=0), "lag must be a positive"),
    (dict(lag=5000), "no pairs at lag"),
    (dict(n_components=0), "n_components"),
    (dict(gamma=0.5), "gamma"),
    (dict(d_min=-1.0), "d_min"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(sigma=1.0), "unknown settings"),
])
def test_bad_settings_raise_clear_errors(three_well, options, message):
    options = {"n_components": 2, "lag": 1, **options}
    with pytest.raises(ValueError, match=message):
        dynae.train(three_well, features=observed(), **options, **QUICK)


def test_bad_data_raise_clear_errors():
    with pytest.raises(ValueError, match="pass features"):
        dynae.fit(np.zeros((10, 22, 3)), 2, 1)
    with pytest.raises(ValueError, match=r"\[frames, n_atoms, 3\]"):
        dynae.fit(np.zeros((10, 22)), 2, 1, features=Cartesians([0]))
    with pytest.raises(ValueError, match="differ in shape"):
        dynae.fit(Pairs(np.zeros((10, 1, 3)), np.zeros((9, 1, 3))), 2, features=Cartesians([0]))
    with pytest.raises(ValueError, match="NaN"):
        dynae.fit(np.full((10, 1, 3), np.nan), 2, 1, features=Cartesians([0]))


def test_an_alanine_cv_biases_a_run_through_cvplug_bias(ala2_frames, tmp_path):
    from cvplug.cli import main

    spec = systems.load("ala2-implicit")
    heavy = list(spec.extras["heavy_atoms"])
    features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))
    cv = dynae.fit(ala2_frames, 2, 1, features=features, seed=0, **QUICK)
    path = cv.export(tmp_path / "ala2-dynae.pt")
    out = tmp_path / "meta"
    assert main(["bias", "--system", "ala2-implicit", "--cv", str(path), "--steps", "400", "--frequency", "100",
                 "--report-every", "100", "--platform", "Reference", "--out", str(out)]) == 0
    colvar = np.loadtxt(out / "colvar.dat", ndmin=2)
    assert colvar.shape == (4, 4) and colvar[-1, -1] > 0  # time, z0, z1, bias (kJ/mol): bias was deposited
    frames = load_trajectory(out / "trajectory.dcd")
    expected = cvplug.load_cv(path)(torch.as_tensor(frames.xyz)).detach().numpy()
    np.testing.assert_allclose(colvar[:, 1:3], expected, atol=1e-5)  # the biased CV is the exported one
