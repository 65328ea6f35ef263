"""flowvae data helpers: bond-angle-torsion coordinates (vs mdtraj, inverse, Jacobian, OpenMM energies), the grid
sampler and the polar observation of the 2D toys."""
import math

import mdtraj
import numpy as np
import pytest
import torch

from cvplug import systems
from cvplug.plugins.flowvae import BATEnergy, ZMatrix
from cvplug.plugins.flowvae.internal import Angles
from cvplug.plugins.flowvae.toys import PolarCoordinates, beltway_u, grid_sample, polar_reduced_energy


def _constraints(spec):
    return {tuple(spec.system.getConstraintParameters(i)[:2]): spec.system.getConstraintParameters(i)[2]._value
            for i in range(spec.system.getNumConstraints())}


@pytest.fixture(scope="module")
def ala2():
    spec = systems.load("ala2-implicit")
    zmatrix = ZMatrix.from_topology(spec.topology, root=6, constraints=_constraints(spec))
    g = np.random.default_rng(0)
    positions = spec.positions[None] + 0.01 * g.standard_normal((8, spec.n_atoms, 3))
    trajectory = mdtraj.Trajectory(positions, mdtraj.Topology.from_openmm(spec.topology))
    return spec, zmatrix, trajectory


def _angle_difference(a, b, periodic):
    d = np.asarray(a) - np.asarray(b)
    d[:, periodic] = (d[:, periodic] + np.pi) % (2 * np.pi) - np.pi
    return np.abs(d).max()


def test_bat_coordinates_match_mdtraj_and_hold_phi_and_psi(ala2):
    spec, zmatrix, trajectory = ala2
    assert zmatrix.n_coordinates == 3 * 22 - 6 - 12  # 12 constrained X–H bonds dropped
    features = zmatrix.feature()(torch.tensor(trajectory.xyz, dtype=torch.float64)).numpy()
    assert _angle_difference(features, zmatrix.from_trajectory(trajectory), zmatrix.periodic) < 1e-5
    quads = [set(q) for q in zmatrix.dihedral_quads]
    assert set(spec.extras["phi_atoms"]) in quads and set(spec.extras["psi_atoms"]) in quads


def test_bat_inverse_reproduces_coordinates_and_energies(ala2):
    spec, zmatrix, trajectory = ala2
    xyz = torch.tensor(trajectory.xyz, dtype=torch.float64)
    x = zmatrix.feature()(xyz)
    rebuilt = zmatrix.to_cartesian(x)
    assert _angle_difference(zmatrix.feature()(rebuilt).numpy(), x.numpy(), zmatrix.periodic) < 1e-10
    energy = BATEnergy(spec, zmatrix, platform="Reference")
    expected = [spec.energy(p) / spec.kT for p in rebuilt.numpy()]
    assert np.allclose(energy(x).double().numpy() + zmatrix.log_jacobian(x).numpy(), expected, rtol=1e-5)
    impossible = x[:2].clone()
    impossible[0, zmatrix.n_coordinates - len(zmatrix.dihedral_quads) - 1] = 3.5  # an angle above π
    assert energy(impossible)[0] == math.inf and math.isfinite(float(energy(impossible)[1]))


def test_bat_log_jacobian_matches_autograd_for_a_four_atom_chain():
    zmatrix = ZMatrix(4, [(0, 1), (1, 2), (2, 3)])

    def cartesian(params):  # translation (3), ZYZ Euler angles (3), internal coordinates (6)
        a, b, c = params[3:6]
        rz = lambda t: torch.stack([torch.stack([torch.cos(t), -torch.sin(t), torch.zeros(())]),  # noqa: E731
                                    torch.stack([torch.sin(t), torch.cos(t), torch.zeros(())]),
                                    torch.tensor([0.0, 0.0, 1.0], dtype=t.dtype)])
        ry = torch.stack([torch.stack([torch.cos(b), torch.zeros(()), torch.sin(b)]),
                          torch.tensor([0.0, 1.0, 0.0], dtype=b.dtype),
                          torch.stack([-torch.sin(b), torch.zeros(()), torch.cos(b)])])
        local = zmatrix.to_cartesian(params[None, 6:])[0]
        return (local @ (rz(a) @ ry @ rz(c)).T + params[:3]).flatten()

    values = []
    for internal in ([0.15, 0.13, 0.14, 1.9, 2.1, 0.7], [0.10, 0.16, 0.12, 1.2, 2.6, -2.0]):
        params = torch.tensor([0.1, -0.2, 0.3, 0.4, 1.1, -0.5] + internal, dtype=torch.float64)
        log_det = torch.linalg.slogdet(torch.autograd.functional.jacobian(cartesian, params))[1]
        values.append(float(log_det - math.log(math.sin(1.1)) - zmatrix.log_jacobian(params[None, 6:])[0]))
    assert values[0] == pytest.approx(values[1], abs=1e-9)  # equal up to the constant of the parameterisation


def test_angles_feature_and_zmatrix_errors():
    positions = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 2.0, 0]]])
    assert torch.allclose(Angles([(0, 1, 2)])(positions), torch.tensor([[math.pi / 2]]))
    assert torch.jit.script(Angles([(0, 1, 2)]))(positions).shape == (1, 1)
    with pytest.raises(ValueError, match="three different"):
        Angles([(0, 1, 1)])
    with pytest.raises(ValueError, match="not connected"):
        ZMatrix(4, [(0, 1), (2, 3)])


def test_grid_sampler_reproduces_a_gaussian():
    x = grid_sample(lambda p: p[:, 0] ** 2 / 2 + p[:, 1] ** 2 / (2 * 0.25), (-6, -3), (6, 3), 100000, seed=1)
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.01)
    assert torch.allclose(x.var(0), torch.tensor([1.0, 0.25]), rtol=0.02)
    assert torch.equal(x, grid_sample(lambda p: p[:, 0] ** 2 / 2 + p[:, 1] ** 2 / (2 * 0.25), (-6, -3), (6, 3),
                                      100000, seed=1))
    with pytest.raises(ValueError):
        grid_sample(beltway_u, (1, 1), (0, 0), 10)


def test_polar_energy_carries_the_jacobian():
    h = 0.01
    xy = torch.stack(torch.meshgrid(torch.arange(-2.8, 2.8, h), torch.arange(-2.8, 2.8, h), indexing="ij"), -1)
    cartesian_mass = torch.exp(-beltway_u(xy.reshape(-1, 2).double())).sum() * h * h
    n_theta = 600
    r, theta = torch.arange(h / 2, 2.8, h), torch.arange(n_theta) * (2 * math.pi / n_theta) - math.pi
    polar = torch.stack(torch.meshgrid(r, theta, indexing="ij"), -1).reshape(-1, 2).double()
    polar_mass = torch.exp(-polar_reduced_energy(beltway_u)(polar)).sum() * h * (2 * math.pi / n_theta)
    assert float(polar_mass) == pytest.approx(float(cartesian_mass), rel=1e-3)
    assert polar_reduced_energy(beltway_u)(torch.tensor([[0.0, 1.0]]))[0] == math.inf
    back = PolarCoordinates()(torch.tensor([[0.0, -2.0]]))
    assert torch.allclose(back, torch.tensor([[2.0, -math.pi / 2]]))


def test_methyl_rotation_moves_only_the_first_hydrogen_torsion(ala2):
    """Later siblings are placed relative to the first one, so rotating a methyl group changes one coordinate."""
    spec, zmatrix, _ = ala2
    xyz = torch.tensor(np.asarray(spec.positions), dtype=torch.float64)[None]
    names = [atom.name for atom in spec.topology.atoms()]
    carbon, hydrogens = names.index("CB"), [names.index(n) for n in ("HB1", "HB2", "HB3")]
    axis = xyz[0, carbon] - xyz[0, names.index("CA")]
    axis = axis / torch.linalg.vector_norm(axis)
    angle = torch.tensor(0.7, dtype=torch.float64)
    rotated = xyz.clone()
    for h in hydrogens:  # Rodrigues rotation about the CA–CB axis
        v = xyz[0, h] - xyz[0, carbon]
        rotated[0, h] = xyz[0, carbon] + v * torch.cos(angle) + torch.linalg.cross(axis, v) * torch.sin(angle) \
            + axis * (axis @ v) * (1 - torch.cos(angle))
    before, after = zmatrix.feature()(xyz)[0], zmatrix.feature()(rotated)[0]
    changed = torch.nonzero((after - before).abs() > 1e-9).flatten().tolist()
    assert len(changed) == 1
    quad = zmatrix.dihedral_quads[changed[0] - (zmatrix.n_coordinates - len(zmatrix.dihedral_quads))]
    assert quad[0] == hydrogens[0] and float(after[changed[0]] - before[changed[0]]) == pytest.approx(0.7, abs=1e-9)
    offsets = [float(before[zmatrix.n_coordinates - len(zmatrix.dihedral_quads) + k])
               for k, q in enumerate(zmatrix.dihedral_quads) if q[0] in hydrogens[1:]]
    assert sorted(offsets) == pytest.approx([-2 * math.pi / 3, 2 * math.pi / 3], abs=0.01)
