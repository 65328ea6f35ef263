import numpy as np
import pytest
import torch
import openmm
import openmm.unit as unit

from cvplug import CollectiveVariable, systems
from cvplug.features import Cartesians
from cvplug.constants import MOLAR_GAS_CONSTANT
from cvplug.metad import WellTempered
from cvplug.metad.hills import HillsBias
from cvplug.metad.hills_engine import HillsEngine

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


def aligned_mlp_cv(spec):
    heavy = list(spec.extras["heavy_atoms"])
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    return CollectiveVariable(Cartesians(heavy, reference=torch.tensor(spec.positions[heavy])), encoder, spec.n_atoms)


@pytest.mark.parametrize("make_cv, evaluator", [("phi_psi", "torch_evaluator"), ("aligned_mlp", "numpy_evaluator")])
def test_python_force_applies_minus_gradient_of_bias(ala2_frames, tmp_path, make_cv, evaluator):
    """The hills engine's PythonForce: energy = V(s(x)), forces = −dV/dx, checked by finite differences, for a
    CV evaluated through TorchScript (dihedrals) and one evaluated in NumPy (an MLP on aligned Cartesians)."""
    from cvplug.demo import phi_psi_cv

    spec = systems.load("ala2-vacuum")
    cv = phi_psi_cv(spec).double() if make_cv == "phi_psi" else aligned_mlp_cv(spec)
    settings = WellTempered(ranges=[(-PI, PI)] * 2, widths=[0.35, 0.35], bias_factor=8.0, height=3.0, frequency=100)
    engine = HillsEngine(spec, cv, settings, tmp_path, 0)
    assert engine.evaluate.__qualname__.startswith(evaluator)
    x = ala2_frames.xyz[4].astype(float)
    s0 = cv(torch.tensor(x)).detach().numpy()
    for offset in [(-0.1, 0.2), (0.2, 0.05), (0.0, -0.15)]:
        engine.bias.deposit(s0 + np.array(offset))
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def bias_energy(positions):
        context.setPositions(positions)
        state = context.getState(getEnergy=True, getForces=True, groups={engine.group})
        return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))

    energy, forces = bias_energy(x)
    assert energy == pytest.approx(engine.bias(s0)[0], rel=1e-12)
    assert np.abs(forces).max() > 0.1
    for atom in (4, 8, 16):
        for k in range(3):
            step = np.zeros_like(x)
            step[atom, k] = 1e-5
            numeric = -(bias_energy(x + step)[0] - bias_energy(x - step)[0]) / 2e-5
            assert forces[atom, k] == pytest.approx(numeric, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("periods", [[(-PI, PI)] * 2, [None, None]])
def test_grid_matches_exact_sum_and_its_own_gradient(periods, rng):
    """The tabulated bias equals the exact hill sum to 1e-4 of a hill's height; its force is its own gradient."""
    exact = HillsBias([0.35, 0.5], periods, 300, 8, 3.0)
    tabulated = HillsBias([0.35, 0.5], periods, 300, 8, 3.0)
    assert tabulated.use_grid([(-PI, PI)] * 2)
    for s in rng.uniform(-2, 2, (40, 2)):
        assert tabulated.deposit(s) == pytest.approx(exact.deposit(s), rel=1e-4)
    for s in rng.uniform(-2.9, 2.9, (200, 2)):
        (v, g), (v_exact, g_exact) = tabulated(s), exact(s)
        assert v == pytest.approx(v_exact, abs=3e-4)
        np.testing.assert_allclose(g, g_exact, atol=0.01)
        numeric = [(tabulated(s + 1e-6 * e)[0] - tabulated(s - 1e-6 * e)[0]) / 2e-6 for e in np.eye(2)]
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-6)


def test_grid_falls_back_to_exact_sum_outside_its_range():
    bias = HillsBias([0.2], [None], 300, 8, 2.0)
    bias.use_grid([(-1.0, 1.0)])
    bias.deposit(np.array([0.9]))
    assert bias(np.array([1.3]))[0] == pytest.approx(bias.height * np.exp(-0.5 * 4), rel=1e-12)


def test_redeposit_replays_well_tempered_heights_on_new_centres():
    """Hills moved onto one point get decreasing well-tempered heights instead of stacking at full height."""
    bias = HillsBias([0.2], [None], 300, 8, 2.0)
    bias.use_grid([(-1.0, 1.0)])
    for s in (-0.8, 0.0, 0.8):
        bias.deposit(np.array([s]))
    bias.redeposit(np.zeros((3, 1)))
    v1 = bias.height
    v2 = v1 + bias.height * np.exp(-v1 / bias.delta_kT)
    expected = [bias.height, bias.height * np.exp(-v1 / bias.delta_kT), bias.height * np.exp(-v2 / bias.delta_kT)]
    np.testing.assert_allclose(bias.heights, expected, rtol=1e-4)
    assert bias(np.array([0.0]))[0] == pytest.approx(sum(expected), rel=1e-4)
    assert bias(np.array([0.8]))[0] == pytest.approx(sum(expected) * np.exp(-0.5 * 4**2), abs=1e-4)
