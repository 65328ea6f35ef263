import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

from cvplug import systems
from cvplug.bias import _HillsEngine
from cvplug.hills import HillsBias
from cvplug.systems.spec import MOLAR_GAS_CONSTANT

PI = np.pi


def test_gradient_matches_finite_differences(rng):
    bias = HillsBias([0.3, 0.5], [(-PI, PI), None], temperature=300, bias_factor=6, height=1.5)
    for s in rng.uniform(-3, 3, size=(30, 2)):
        bias.deposit(s)
    for s in rng.uniform(-3, 3, size=(5, 2)):
        _, gradient = bias(s)
        numeric = [(bias(s + e)[0] - bias(s - e)[0]) / 2e-6 for e in np.eye(2) * 1e-6]
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_periodic_component_wraps():
    bias = HillsBias([0.3], [(-PI, PI)], temperature=300, bias_factor=6, height=2.0)
    bias.deposit([PI - 0.05])
    assert bias([-PI + 0.05])[0] == pytest.approx(bias([PI - 0.15])[0])
    assert bias([-PI + 0.05])[0] == pytest.approx(2.0 * np.exp(-0.5 * (0.1 / 0.3) ** 2))


def test_well_tempered_heights_and_free_energy():
    bias = HillsBias([0.2], [None], temperature=300, bias_factor=5, height=1.0)
    assert bias.deposit([0.0]) == 1.0
    delta_kT = MOLAR_GAS_CONSTANT * 300 * 4
    assert bias.deposit([0.0]) == pytest.approx(np.exp(-1.0 / delta_kT))
    axis = np.linspace(-1, 1, 41)
    free = bias.free_energy([axis])
    v = bias.on_grid([axis])
    np.testing.assert_allclose(free, -5 / 4 * (v - v.max()))


def test_walkers_share_hills_and_restart_reloads(tmp_path):
    a = HillsBias([0.2], [None], 300, 5, 1.0, folder=tmp_path, walker=0)
    b = HillsBias([0.2], [None], 300, 5, 1.0, folder=tmp_path, walker=1)
    a.deposit([0.5])
    a.sync()
    b.sync()
    assert b([0.5])[0] == pytest.approx(1.0)
    a.deposit([1.0])
    a.save()
    again = HillsBias([0.2], [None], 300, 5, 1.0, folder=tmp_path, walker=0)
    np.testing.assert_array_equal(again.centers[:, 0], [0.5, 1.0])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="bias_factor"):
        HillsBias([0.2], [None], 300, 1.0, 1.0)
    with pytest.raises(ValueError, match="one positive width"):
        HillsBias([0.2, -1], [None, None], 300, 5, 1.0)


def test_python_force_applies_minus_gradient_of_bias(ala2_frames, tmp_path):
    """The hills engine's PythonForce: energy = V(s(x)), forces = −dV/dx, checked by finite differences."""
    from cvplug.demo import phi_psi_cv

    spec = systems.load("ala2-vacuum")
    cv = phi_psi_cv(spec).double()
    engine = _HillsEngine(spec, cv, [(-PI, PI)] * 2, [0.35, 0.35], [(-PI, PI)] * 2, 8.0, 3.0, 100, tmp_path, 0)
    for s in [(-1.5, 2.5), (-1.2, 2.9), (-1.6, 2.2)]:
        engine.bias.deposit(np.array(s))
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    x = ala2_frames.xyz[4].astype(float)

    def bias_energy(positions):
        context.setPositions(positions)
        state = context.getState(getEnergy=True, getForces=True, groups={engine.group})
        return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))

    energy, forces = bias_energy(x)
    assert energy == pytest.approx(engine.bias(cv(torch.tensor(x)).numpy())[0], rel=1e-12)
    assert np.abs(forces).max() > 0.1
    for atom in (4, 8, 16):
        for k in range(3):
            step = np.zeros_like(x)
            step[atom, k] = 1e-5
            numeric = -(bias_energy(x + step)[0] - bias_energy(x - step)[0]) / 2e-5
            assert forces[atom, k] == pytest.approx(numeric, rel=1e-4, abs=1e-5)
