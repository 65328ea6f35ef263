"""Reverse-KL in internal coordinates: the placement, its Jacobian, periodic (wrapped-normal) model coordinates,
and the exported CV."""
import math

import numpy as np
import pytest
import torch

import cvplug
from cvplug import systems
from cvplug.features import dihedral_angles
from cvplug.plugins.rkl import CoarseGrainedModel, MoleculeTarget, build_model, make_cv, reverse_kl
from cvplug.plugins.rkl.internal import InternalCoordinates, placement_order
from cvplug.plugins.rkl.model import residual_log_density, wrap
from cvplug.plugins.rkl.targets import Target


def _alanine(keep_chirality=True):
    spec = systems.load("ala2-vacuum", temperature=330.0)
    bonds = [(b.atom1.index, b.atom2.index) for b in spec.topology.bonds()]
    hydrogens = [a.index for a in spec.topology.atoms() if a.element.symbol == "H"]
    reference = torch.tensor(spec.positions, dtype=torch.float64) if keep_chirality else None
    return spec, InternalCoordinates(22, bonds, spec.extras["phi_atoms"][2], hydrogens, reference)


def _backbone(spec, positions):
    return [dihedral_angles(*(positions[:, i] for i in spec.extras[name])) for name in ("phi_atoms", "psi_atoms")]


def test_round_trip_rigid_invariance_and_phi_psi_are_single_coordinates():
    spec, internal = _alanine()
    positions = torch.tensor(spec.positions, dtype=torch.float64)[None]
    y = internal(positions)
    assert y.shape == (1, 60) and int(internal.periodic.sum()) == 7 and int(internal.bounded.sum()) == 12
    assert float(y[0, 41:][internal.bounded].abs().max()) < 1e-6   # the reference sits at the centres (float32)
    rebuilt = internal.embed(y)
    assert torch.allclose(torch.cdist(rebuilt[0], rebuilt[0]), torch.cdist(positions[0], positions[0]), atol=1e-12)
    assert torch.allclose(internal(rebuilt), y, atol=1e-12)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(internal(positions @ (q * torch.sign(torch.det(q))).T - 0.3), y, atol=1e-12)
    assert torch.equal(torch.jit.script(internal)(positions), y)
    phi, psi = _backbone(spec, positions)
    carrier = {row[0]: k - 3 for k, row in enumerate(internal.rows) if k >= 3}   # atom → its torsion coordinate
    for atom, (dphi, dpsi) in ((4, (0.5, 0.0)), (15, (0.0, 0.5))):   # ACE's C carries φ, the ALA O ψ
        shifted = y.clone()
        shifted[0, 41 + carrier[atom]] += 0.5
        new_phi, new_psi = _backbone(spec, internal.embed(shifted))
        turned = [abs(float(wrap(new - old))) for new, old in ((new_phi, phi), (new_psi, psi))]
        assert turned == pytest.approx([dphi, dpsi], abs=1e-12)

def test_bounded_impropers_keep_the_chirality_of_the_reference_alanine_and_free_ones_do_not():
    def handedness(spec, positions):      # the CA centre's N, C, CB triple product: ±1, 0 within 1e-6 nm³ of planar
        _, n, ca, c = spec.extras["phi_atoms"]
        arms = [positions[:, k] - positions[:, ca] for k in (n, c, 10)]
        volume = torch.linalg.det(torch.stack(arms, -1))
        return torch.where(volume.abs() > 1e-6, torch.sign(volume), torch.zeros_like(volume))

    generator = torch.Generator().manual_seed(0)
    flipped = []
    for keep in (True, False):
        spec, internal = _alanine(keep)
        y = internal(torch.tensor(spec.positions, dtype=torch.float64)[None])
        noisy = y + torch.cat([torch.zeros(1, 41), 3.0 * torch.ones(1, 19)], 1) * torch.randn(
            500, 60, generator=generator, dtype=torch.float64)
        signs = handedness(spec, internal.embed(noisy))
        flipped.append(float((signs == -handedness(spec, torch.tensor(spec.positions)[None])).double().mean()))
    assert flipped[0] == 0.0 and flipped[1] > 0.2


def test_log_jacobian_matches_the_determinant_of_the_map_from_internal_coordinates_and_rigid_motion():
    """|∂X/∂(y, translation, Euler angles)| = J(y) × a factor of the Euler angles alone: at fixed angles the log
    determinant minus log J(y) is the same for every y."""
    _, internal = _alanine()
    y0 = internal(torch.tensor(systems.load("ala2-vacuum").positions, dtype=torch.float64)[None])[0]

    def rotation(a, b, c):
        def about(axis, t):
            k = torch.zeros(3, 3, dtype=torch.float64)
            i, j = [n for n in range(3) if n != axis]
            k[i, j], k[j, i] = -1.0, 1.0
            return torch.linalg.matrix_exp(t * k)
        return about(2, a) @ about(1, b) @ about(2, c)

    def cartesians(v):
        return (internal.embed(v[None, :60])[0] @ rotation(*v[63:]).T + v[60:63]).reshape(-1)

    generator = torch.Generator().manual_seed(0)
    offsets = []
    for _ in range(3):
        y = y0 + 0.2 * torch.randn(60, generator=generator, dtype=torch.float64)
        v = torch.cat([y, torch.tensor([0.1, -0.2, 0.3, 0.3, 1.1, -0.4], dtype=torch.float64)])
        log_det = torch.linalg.slogdet(torch.autograd.functional.jacobian(cartesians, v))[1]
        offsets.append(float(log_det - internal.log_jacobian(y[None])[0]))
    assert offsets == pytest.approx([math.log(math.sin(1.1))] * 3, abs=1e-9)


def test_placement_needs_a_connected_bond_graph():
    assert placement_order(4, [(0, 1), (1, 2), (2, 3)], 1) == [(1, -1, -1, -1), (0, 1, -1, -1), (2, 1, 0, -1),
                                                               (3, 2, 1, 0)]
    with pytest.raises(ValueError, match="connect all 4 atoms"):
        placement_order(4, [(0, 1), (1, 2)], 0)


@pytest.mark.parametrize("std", [0.3, 1.5, 20.0])
def test_wrapped_normal_is_a_density_on_the_circle(std):
    angles = torch.linspace(-math.pi, math.pi, 20_001, dtype=torch.float64)[:-1]
    residual = torch.stack([angles - 2.9, torch.zeros_like(angles)], -1)    # a mean near the edge of the circle
    log_std = torch.log(torch.tensor([std, 0.5], dtype=torch.float64))
    periodic = torch.tensor([True, False])
    density = torch.exp(residual_log_density(residual, log_std, periodic)) * math.sqrt(2 * math.pi) * 0.5
    assert float(density.sum() * (2 * math.pi / 20_000)) == pytest.approx(1.0, rel=1e-10)
    shifted = residual + torch.tensor([2 * math.pi, 0.0], dtype=torch.float64)
    assert torch.allclose(residual_log_density(shifted, log_std, periodic),
                          residual_log_density(residual, log_std, periodic), atol=1e-12)


class _PeriodicToy(Target):
    """x1 an angle in a cosine well (rad), x2 harmonic: u = −2 cos x1 + x2²/2."""

    dim, periodic = 2, torch.tensor([True, False])

    def __init__(self):
        self.reference = torch.zeros(2, dtype=torch.float64)

    def _energy(self, x):
        return -2.0 * torch.cos(x[:, 0]) + 0.5 * x[:, 1] ** 2


def test_periodic_model_wraps_samples_reads_angles_by_cosine_and_sine_and_its_loss_gradient_is_exact():
    torch.manual_seed(0)
    model = CoarseGrainedModel(2, 1, hidden=(8,), init_std=0.7, init_gain=3.0, periodic=[True, False]).double()
    with torch.no_grad():
        samples = model.sample(5000)
    assert float(samples.x[:, 0].min()) >= -math.pi and float(samples.x[:, 0].max()) < math.pi
    assert float(samples.x[:, 0].std()) > 1.0                 # the decoder's mean spans the circle
    x = samples.x[:20]
    turned = x + torch.tensor([2 * math.pi, 0.0], dtype=torch.float64)
    assert torch.allclose(model.encoder_mean()(turned), model.encoder_mean()(x), atol=1e-12)
    assert torch.allclose(model.log_likelihood(turned, samples.z[:20]), model.log_likelihood(x, samples.z[:20]))
    assert torch.allclose(model.noise_log_likelihood(samples.eps[:20]), model.log_likelihood(x, samples.z[:20]))

    target = _PeriodicToy()

    def loss():
        torch.manual_seed(5)
        return reverse_kl(model, target, 0.8, 64, kappa=None, extra_latents=2).loss

    params = dict(model.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss(), list(params.values()))))
    for name, p in params.items():
        flat = p.data.view(-1)
        for index in (0, p.numel() - 1):
            original = flat[index].item()
            flat[index] = original + 1e-6
            up = loss().item()
            flat[index] = original - 1e-6
            down = loss().item()
            flat[index] = original
            assert grads[name].view(-1)[index].item() == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-7), name


def test_internal_coordinate_target_energy_and_exported_cv(tmp_path):
    spec = systems.load("ala2-vacuum", temperature=330.0)
    target = MoleculeTarget(spec, coordinates="internal", platform="Reference")
    positions = np.asarray(spec.positions)[None]
    y = target.coordinates(positions).double()
    rebuilt = target.positions(y)[0].numpy()
    assert target.energy(y).item() == pytest.approx(spec.energy(rebuilt) / spec.kT, rel=1e-6)
    assert torch.equal(target.log_jacobian(y), target.features.log_jacobian(y))
    clash = positions.copy()
    clash[0, 20] = clash[0, 1] + 0.02              # two non-bonded atoms 0.02 nm apart
    assert target.bridge(torch.as_tensor(clash)).item() > 1e8     # raw energies: training caps β u itself
    torch.manual_seed(0)
    model = build_model(target, 2).double()
    assert torch.allclose(torch.exp(model.log_std), 0.1 * target.scale.double())
    cv = make_cv(model, target, spec.n_atoms, calibration_samples=50)
    cv.export(tmp_path / "cv.pt")
    loaded = cvplug.load_cv(tmp_path / "cv.pt")
    frames = torch.as_tensor(positions, dtype=torch.float64) + 0.002 * torch.randn(4, 22, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = model.encoder_mean()(target.coordinates(frames.numpy()).double())
    assert torch.allclose(loaded(frames), expected, atol=1e-6)
    target.close()
    with pytest.raises(ValueError, match="coordinates must be one of"):
        MoleculeTarget(spec, coordinates="cartesian")
