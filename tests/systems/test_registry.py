import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from cvplug import systems
from cvplug.systems.toy import TOY_POTENTIALS

TOYS = sorted(TOY_POTENTIALS)


def openmm_energy_forces(spec, x):
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@pytest.mark.parametrize("name", TOYS)
def test_toy_openmm_energy_and_forces_equal_torch_twin(name, rng):
    spec = systems.load(name)
    assert spec.kT == pytest.approx(1.0)
    for _ in range(5):
        x = spec.positions + rng.normal(scale=0.7, size=spec.positions.shape)
        energy, forces = openmm_energy_forces(spec, x)
        xt = torch.tensor(x, requires_grad=True)
        twin = spec.toy.energy(xt[None])[0]
        (gradient,) = torch.autograd.grad(twin, xt)
        assert energy == pytest.approx(twin.item(), rel=1e-6, abs=1e-9)
        np.testing.assert_allclose(forces, -gradient.numpy(), rtol=1e-6, atol=1e-8)


def test_toy_natural_coordinates_round_trip():
    toy = systems.load("harmonic-chain", n=5).toy
    q = np.arange(5.0)
    positions = toy.positions(q)
    assert positions.shape == (5, 3)
    np.testing.assert_array_equal(toy.natural(torch.tensor(positions)[None])[0].numpy(), q)


def test_harmonic_chain_normal_mode_frequencies():
    n = 6
    toy = systems.load("harmonic-chain", n=n).toy
    hessian = torch.autograd.functional.hessian(lambda v: toy.u(v[None])[0], torch.zeros(n, dtype=torch.float64))
    analytic = 2 * np.sin(np.pi * np.arange(1, n + 1) / (2 * n + 2))
    np.testing.assert_allclose(np.sqrt(np.linalg.eigvalsh(hessian.numpy())), analytic, rtol=1e-10)


@pytest.mark.parametrize("name,n_atoms,periodic", [("ala2-vacuum", 22, False), ("ala2-implicit", 22, False),
                                                    ("ala2-explicit", 2269, True)])
def test_alanine_dipeptide_systems(name, n_atoms, periodic):
    spec = systems.load(name)
    assert spec.n_atoms == n_atoms and spec.periodic == periodic
    assert spec.temperature == 300.0 and spec.kT == pytest.approx(2.494, abs=1e-3)
    assert np.isfinite(spec.energy())
    forces = {type(f).__name__ for f in spec.system.getForces()}
    assert ("GBSAOBCForce" in forces) == (name == "ala2-implicit")


def test_load_returns_a_fresh_system_each_time():
    a, b = systems.load("ala2-vacuum"), systems.load("ala2-vacuum")
    a.system.addForce(openmm.CustomExternalForce("0"))
    assert b.system.getNumForces() == a.system.getNumForces() - 1


def test_describe_answers_from_the_registration_without_building(monkeypatch):
    """A description given at registration is returned without calling the factory; otherwise the built
    system's description."""
    def never(**options):
        raise AssertionError("built")

    monkeypatch.setattr(systems, "_REGISTRY", {**systems._REGISTRY})
    monkeypatch.setattr(systems, "_DESCRIPTIONS", {**systems._DESCRIPTIONS})
    systems.register("slow-to-build", never, "a system that takes long to build")
    assert systems.describe("slow-to-build") == "a system that takes long to build"
    assert systems.describe("double-well") == systems.load("double-well").description != ""
    assert "11,034 atoms" in systems.describe("trpzip2-explicit")


def test_unknown_system_name_lists_choices():
    with pytest.raises(ValueError, match="ala2-implicit"):
        systems.load("ala3")


def test_brownian_dynamics_samples_the_double_well_minimum():
    from cvplug.simulate import make_simulation

    spec = systems.load("double-well")
    assert spec.dynamics == "brownian"
    simulation = make_simulation(spec, platform="Reference", seed=3)
    xs = []
    for _ in range(2000):
        simulation.step(25)
        xs.append(simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value[0, :2])
    xs = np.array(xs)[100:]
    # quadrature at kT = 1, restricted to the deep well (x1 < 0): mean x1 = -2.48, std x1 = 0.29; x2 ~ N(0, 1)
    assert xs[:, 0].mean() == pytest.approx(-2.48, abs=0.06)
    assert xs[:, 0].std() == pytest.approx(0.29, abs=0.05)
    assert xs[:, 1].std() == pytest.approx(1.0, abs=0.15)
