import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import cvplug
from cvplug import systems

K = 7.5  # kJ/mol per CV unit


def cv_forces_from_openmm(spec, cv, positions, energy, native=True):
    attached = cvplug.attach(spec.system, cv, energy=energy, parameters={"k": K}, force_group=1, native=native)
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups={1})
    return (attached, context, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.mark.parametrize("component", [0, 1])
def test_torchforce_forces_equal_autograd(ala2_frames, component, tmp_path, mlp_cv):
    spec = systems.load("ala2-implicit")
    cv = mlp_cv(torch.float64)
    loaded = cvplug.load_cv(cv.export(tmp_path / "mlp.pt"))
    positions = ala2_frames.xyz[5].astype(np.float64)
    attached, context, energy, forces = cv_forces_from_openmm(spec, loaded, positions, f"k*cv{component}")
    x = torch.tensor(positions, requires_grad=True)
    value = cv(x)[component]
    (gradient,) = torch.autograd.grad(value, x)
    assert energy == pytest.approx(K * value.item(), rel=1e-10)
    np.testing.assert_allclose(forces, -K * gradient.numpy(), rtol=1e-5, atol=1e-8)
    assert np.abs(forces).max() > 1e-3  # the CV really moves atoms
    np.testing.assert_allclose(attached.values(context), cv(x).detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("native", [True, False])
def test_dihedral_cv_forces_equal_autograd(ala2_frames, native):
    """As native CustomTorsionForces (the default for a torsion CV) and as TorchForces."""
    from cvplug.demo import phi_psi_cv

    spec = systems.load("ala2-vacuum")
    cv = phi_psi_cv(spec).double()
    positions = ala2_frames.xyz[3].astype(np.float64)
    attached, _, energy, forces = cv_forces_from_openmm(spec, cv, positions, "k*(phi+2*psi)", native)
    kinds = {type(attached.force.getCollectiveVariable(k)).__name__ for k in range(2)}
    assert kinds == ({"CustomTorsionForce"} if native else {"Force"})  # a TorchForce comes back as a plain Force
    x = torch.tensor(positions, requires_grad=True)
    angles = cv(x)
    (gradient,) = torch.autograd.grad(angles[0] + 2 * angles[1], x)
    assert energy == pytest.approx(K * (angles[0] + 2 * angles[1]).item(), rel=1e-10)
    np.testing.assert_allclose(forces, -K * gradient.numpy(), rtol=1e-5, atol=1e-8)
    assert set(np.flatnonzero(np.abs(forces).sum(1) > 0)) == {4, 6, 8, 14, 16}


def test_cartesian_cv_becomes_native_forces_only_when_it_passes_coordinates_through(ala2_frames):
    """x of atom 4 and (y, z) of atom 8 as CustomExternalForces with the CV's values and forces; an aligned
    reference or a non-identity encoder keeps the TorchForce."""
    from cvplug.features import Cartesians

    spec = systems.load("ala2-vacuum")
    positions = ala2_frames.xyz[3].astype(np.float64)
    cv = cvplug.CollectiveVariable(Cartesians([4, 8], components=(1, 2)), torch.nn.Identity().double(), n_atoms=22)
    attached, context, energy, forces = cv_forces_from_openmm(spec, cv, positions, "k*(cv0-cv1+2*cv3)")
    assert [f.getEnergyFunction() for f in cvplug.native_forces(cv)] == ["y", "z", "y", "z"]
    np.testing.assert_allclose(attached.values(context), positions[[4, 4, 8, 8], [1, 2, 1, 2]], rtol=1e-12)
    assert energy == pytest.approx(K * (positions[4, 1] - positions[4, 2] + 2 * positions[8, 2]), rel=1e-10)
    expected = np.zeros_like(positions)
    expected[4] = [0, -K, K]
    expected[8] = [0, 0, -2 * K]
    np.testing.assert_allclose(forces, expected, atol=1e-9)
    aligned = cvplug.CollectiveVariable(Cartesians([4, 8], reference=torch.zeros(2, 3)), torch.nn.Identity(),
                                        n_atoms=22)
    scaled = cvplug.CollectiveVariable(Cartesians([4]), torch.nn.Linear(3, 1), n_atoms=22)
    assert cvplug.native_forces(aligned) is None and cvplug.native_forces(scaled) is None


def test_attach_to_wrong_atom_count_raises(mlp_cv):
    spec = systems.load("ala2-explicit")
    with pytest.raises(ValueError, match="22 atoms.*2269 particles"):
        cvplug.attach(spec.system, mlp_cv())
    assert not any(isinstance(f, openmm.CustomCVForce) for f in spec.system.getForces())


def test_attach_periodic_cv_to_nonperiodic_system_raises():
    from cvplug.demo import phi_psi_cv

    cv = phi_psi_cv(systems.load("ala2-explicit"))
    cv.n_atoms = 22  # pretend the atom count matched
    with pytest.raises(ValueError, match="periodic"):
        cvplug.attach(systems.load("ala2-implicit").system, cv)


def test_cv_rides_along_in_explicit_solvent(tmp_path):
    from cvplug.demo import phi_psi_cv

    spec = systems.load("ala2-explicit")
    cv = phi_psi_cv(spec)
    attached = cvplug.attach(spec.system, cvplug.load_cv(cv.export(tmp_path / "x.pt")))
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*spec.box_vectors)
    context.setPositions(spec.positions)
    np.testing.assert_allclose(attached.values(context), cv(torch.tensor(spec.positions)).numpy(), atol=1e-5)
