"""Neural canonical transformation: symplecticity, inverses, exact densities, coordinates, training, CV export."""
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from cvplug import load_cv, methods, systems
from cvplug.features import Cartesians
from cvplug.plugins.nct import (CoordinateFlow, HarmonicLatent, MassWeighting, NCTModel, fit_nct, to_latent,
                                to_physical, train_mle, train_variational)
from cvplug.plugins.nct.inputs import alignment_constraints, feature_energy

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is fastest


def chain_normal_modes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (ascending) and orthonormal normal modes (rows) of the fixed-end chain of n unit beads."""
    squared, modes = np.linalg.eigh(2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1))
    return np.sqrt(squared), modes.T


def random_flow(dim: int, seed: int = 0) -> CoordinateFlow:
    """A double-precision flow far from the identity (all weights random), in eval mode."""
    flow = CoordinateFlow(dim, layers=4, hidden=16, rotation_every=2).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.copy_(0.4 * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return flow.train().eval()


class LinearFlow(torch.nn.Module):
    """Q = A z, the known linear map of the density test."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, z):
        return z @ self.matrix.T

    def inverse(self, Q):
        return torch.linalg.solve(self.matrix, Q.T).T


def test_point_transformation_is_symplectic_in_double():
    dim = 4
    flow = random_flow(dim)
    J = torch.zeros(2 * dim, 2 * dim, dtype=torch.float64)
    J[:dim, dim:], J[dim:, :dim] = torch.eye(dim), -torch.eye(dim)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        point = torch.randn(2 * dim, generator=generator, dtype=torch.float64)

        def phase_map(v):
            Q, P = to_latent(flow, v[None, :dim], v[None, dim:])
            return torch.cat([Q[0], P[0]])

        M = torch.autograd.functional.jacobian(phase_map, point)
        assert not torch.allclose(M[:dim, :dim], torch.eye(dim, dtype=torch.float64), atol=0.1)  # far from identity
        assert torch.allclose(M @ J @ M.T, J, atol=1e-8, rtol=0)


def test_inverses_round_trip():
    dim = 6
    flow = random_flow(dim, seed=3)
    q, p = torch.randn(32, dim, dtype=torch.float64), torch.randn(32, dim, dtype=torch.float64)
    assert torch.allclose(flow.inverse(flow(q)), q, atol=1e-12)
    Q, P = to_latent(flow, q, p)
    q_back, p_back = to_physical(flow, Q, P)
    assert torch.allclose(q_back, q, atol=1e-10) and torch.allclose(p_back, p, atol=1e-10)
    flow.train()  # the training-mode rotation (matrix exponential each call) is the same map
    assert torch.allclose(flow(q), flow.eval()(q), atol=1e-12)


def test_latent_density_of_a_linear_map_is_the_analytic_gaussian():
    torch.manual_seed(0)
    dim, kT = 3, 2.5
    A = torch.randn(dim, dim, dtype=torch.float64) + 2 * torch.eye(dim, dtype=torch.float64)
    omega = torch.tensor([0.5, 1.3, 4.0], dtype=torch.float64)
    model = NCTModel(MassWeighting(torch.zeros(dim), torch.ones(dim)), LinearFlow(A), kT=kT,
                     initial_frequency=omega).double()
    z, p = torch.randn(10, dim, dtype=torch.float64), torch.randn(10, dim, dtype=torch.float64)
    A_inv = torch.linalg.inv(A)
    covariance_z = (A_inv @ torch.diag(kT / omega**2) @ A_inv.T).numpy()
    covariance_p = (kT * A.T @ A).numpy()                    # p = P A, P ~ N(0, kT)
    expected = multivariate_normal(np.zeros(dim), covariance_z).logpdf(z.numpy()) + \
        multivariate_normal(np.zeros(dim), covariance_p).logpdf(p.numpy())
    assert np.allclose(model.log_prob(z, p).detach().numpy(), expected, atol=1e-10)


def test_exact_harmonic_chain_model_gives_the_free_energy_with_zero_variance():
    n = 6
    spec = systems.load("harmonic-chain", n=n)
    frequencies, modes = chain_normal_modes(n)
    model = NCTModel(MassWeighting(torch.zeros(n), torch.ones(n)), LinearFlow(torch.tensor(modes)),
                     initial_frequency=torch.tensor(frequencies)).double()
    with torch.no_grad():
        samples = torch.stack([model.free_energy(spec.toy.u, 1) for _ in range(20)])
    exact = -np.log(2 * np.pi / frequencies).sum()     # −log Z of the chain in phase space, kT = 1, unit masses
    assert np.allclose(samples.numpy(), exact, atol=1e-9)


def test_harmonic_latent_samples_have_the_stated_variances():
    latent = HarmonicLatent(2, kT=2.0, initial=torch.tensor([0.5, 2.0]))
    torch.manual_seed(0)
    Q, P = latent.sample(200_000)
    assert torch.allclose(Q.var(0), torch.tensor([8.0, 0.5]), rtol=0.02)
    assert torch.allclose(P.var(0), torch.tensor([2.0, 2.0]), rtol=0.02)
    with pytest.raises(ValueError):
        HarmonicLatent(2, kT=0.0)
    with pytest.raises(ValueError):
        HarmonicLatent(2, initial=-1.0)


def test_aligned_cartesians_obey_the_six_constraints_and_lose_six_coordinates():
    torch.manual_seed(0)
    reference = torch.randn(5, 3)
    features = Cartesians(range(5), reference=reference)
    positions = reference + 0.1 * torch.randn(40, 5, 3)
    rotation = torch.linalg.qr(torch.randn(3, 3))[0]
    x = features((positions @ rotation.T + 3.0).double())
    constraints = alignment_constraints(features)
    assert constraints.shape == (6, 15)
    assert torch.allclose(x @ constraints.T, torch.zeros(40, 6, dtype=torch.float64), atol=1e-5)
    masses = torch.tensor([12.0, 14.0, 16.0, 1.0, 32.0]).repeat_interleave(3)
    coordinates = MassWeighting(x.mean(0), masses, constraints)
    assert coordinates.dim == 9
    assert torch.allclose(coordinates.basis.T @ coordinates.basis, torch.eye(9), atol=1e-6)
    assert torch.allclose(coordinates.inverse(coordinates(x.float())), x.float(), atol=1e-5)
    with pytest.raises(ValueError, match="do not vary"):
        MassWeighting(x.mean(0), masses).check_spread(x)       # the unaligned map keeps degenerate directions
    assert alignment_constraints(Cartesians(range(5))) is None


def test_mass_weighting_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        MassWeighting(torch.zeros(3), torch.ones(4))
    with pytest.raises(ValueError, match="positive"):
        MassWeighting(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError):
        CoordinateFlow(1)


def test_training_is_seeded_and_resumes_from_its_checkpoint(tmp_path):
    data = torch.randn(500, 2) * torch.tensor([2.0, 0.5])

    def fresh():
        torch.manual_seed(7)
        return NCTModel(MassWeighting(torch.zeros(2), torch.ones(2)), CoordinateFlow(2, layers=2, hidden=8))

    settings = dict(batch=32, lr=1e-2, seed=3, progress=False)
    straight = fresh()
    history = train_mle(straight, data, steps=12, **settings)
    again = fresh()
    assert train_mle(again, data, steps=12, **settings) == history
    interrupted = fresh()
    loss, calls = interrupted.negative_log_likelihood, []

    def failing_loss(x):
        calls.append(1)
        if len(calls) > 7:
            raise KeyboardInterrupt
        return loss(x)

    interrupted.negative_log_likelihood = failing_loss
    with pytest.raises(KeyboardInterrupt):             # killed during step 8; the checkpoint holds step 5
        train_mle(interrupted, data, steps=12, checkpoint=tmp_path / "nct.ckpt", checkpoint_every=5, **settings)
    resumed = fresh()
    assert train_mle(resumed, data, steps=12, checkpoint=tmp_path / "nct.ckpt", checkpoint_every=5,
                     **settings) == history
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="features must be"):
        train_mle(fresh(), torch.randn(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_mle(fresh(), torch.full((10, 2), float("nan")), steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_variational(fresh(), lambda x: x.pow(2).sum(-1), steps=0, progress=False)


def test_variational_training_lowers_the_free_energy_of_a_gaussian():
    """u = x²/(2·0.25) + y²/2: ω = (2, 1); a few hundred steps move the frequencies most of the way."""
    model = NCTModel(MassWeighting(torch.zeros(2), torch.ones(2)), CoordinateFlow(2, layers=2, hidden=8),
                     initial_frequency=torch.tensor([0.5, 0.5]))
    history = train_variational(model, lambda x: 2 * x[:, 0] ** 2 + 0.5 * x[:, 1] ** 2, steps=300, batch=128,
                                lr=5e-3, seed=0, progress=False)
    assert np.mean(history[-20:]) == pytest.approx(-np.log(2 * np.pi / 2.0) - np.log(2 * np.pi / 1.0), abs=0.05)
    assert sorted(model.latent.frequencies.tolist()) == pytest.approx([1.0, 2.0], rel=0.1)


def test_fit_returns_an_exportable_cv_with_sorted_frequencies(tmp_path):
    cv = fit_nct(system="ring", steps=5, batch=16, layers=2, hidden=8, progress=False)
    assert cv.method == "nct" and cv.names == ["Q1", "Q2"] and cv.n_components == 2
    assert cv.info["frequencies"] == sorted(cv.info["frequencies"])
    assert cv.info["all_frequencies"][:2] == cv.info["frequencies"] and cv.info["training"] == "variational"
    loaded = load_cv(cv.export(tmp_path / "ring.pt"))
    positions = torch.randn(7, 1, 3)
    assert torch.equal(loaded(positions), cv(positions))
    assert loaded.info["frequencies"] == cv.info["frequencies"]
    assert methods.get("nct").name == "nct"


def test_fit_from_data_and_its_errors():
    spec = systems.load("gmm-correlated")
    data = np.random.default_rng(0).normal(size=(200, 1, 3))
    cv = fit_nct(data, system=spec, n_components=1, steps=3, batch=16, layers=2, hidden=8, progress=False)
    assert cv.n_components == 1 and cv.info["training"] == "mle" and len(cv.info["all_frequencies"]) == 2
    with pytest.raises(ValueError, match=r"\[frames, 1, 3\]"):
        fit_nct(np.zeros((10, 2, 3)), system=spec, steps=1, progress=False)
    with pytest.raises(ValueError, match="n_components"):
        fit_nct(data, system=spec, n_components=3, steps=1, progress=False)
    with pytest.raises(ValueError, match="energy="):
        fit_nct(data, system=spec, energy="twin", steps=1, progress=False)


def test_bridge_energy_matches_the_torch_twin():
    spec = systems.load("harmonic-chain", n=4)
    features = Cartesians(range(4), components=(0,))
    x = torch.randn(5, 4, dtype=torch.float64)
    twin = feature_energy(spec, features, "twin")
    bridge = feature_energy(spec, features, "openmm", platform="Reference", batch_strategy="single")
    assert torch.allclose(bridge(x), twin(x), atol=1e-6)
    with pytest.raises(ValueError, match="every particle"):
        feature_energy(spec, Cartesians(range(3), components=(0,)), "twin")


def test_variational_training_through_the_openmm_bridge_follows_the_twin():
    """Training from the OpenMM Hamiltonian (cvplug.bridge) takes the same steps as from the torch twin."""
    spec = systems.load("harmonic-chain", n=4)
    settings = dict(system=spec, steps=5, batch=32, layers=2, hidden=8, seed=1, progress=False)
    twin = fit_nct(energy="twin", **settings)
    bridge = fit_nct(energy="openmm", bridge_options={"platform": "Reference", "batch_strategy": "single"},
                     **settings)
    assert bridge.info["final_loss"] == pytest.approx(twin.info["final_loss"], abs=1e-4)
    assert np.allclose(bridge.info["all_frequencies"], twin.info["all_frequencies"], rtol=1e-4)
