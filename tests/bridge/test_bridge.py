"""The OpenMM ↔ torch bridge: every strategy against direct OpenMM, gradients, bad samples, dtypes, temperature."""
import multiprocessing
import os

import numpy as np
import openmm
import pytest
import torch

from cvplug import systems
from cvplug.bridge import OpenMMEnergy, SamplePolicy, default_strategy
from cvplug.bridge.context import current_core, on_cores, shared_core, usable_cores
from cvplug.bridge.pool import core_shares
from cvplug.bridge.single import SingleContext

RTOL = 1e-8


def perturbed(spec, batch, scale=0.005, seed=0):
    """``batch`` copies of the spec's positions with Gaussian noise of ``scale`` nm, as float64 [B, n, 3]."""
    rng = np.random.default_rng(seed)
    return spec.positions[None] + scale * rng.standard_normal((batch, spec.n_atoms, 3))


def direct(spec, positions):
    """Reduced energies [B] and gradients −F/kT [B, n, 3] from a plain Reference Context, one sample at a time."""
    context = openmm.Context(spec.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for x in positions:
        context.setPositions(x)
        state = context.getState(energy=True, forces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
    return np.array(energies) / spec.kT, -np.array(forces) / spec.kT


def bridge_values(energy, positions):
    """Energies and gradients of the bridge at float64 ``positions`` as numpy arrays."""
    x = torch.tensor(positions, requires_grad=True)
    u = energy(x)
    u.sum().backward()
    return u.detach().numpy(), x.grad.numpy()


def relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def vacuum():
    return systems.load("ala2-vacuum")


@pytest.mark.parametrize("strategy, platform", [("single", "Reference"), ("replicated", "Reference"),
                                                ("replicated", "CPU")])
def test_in_process_strategies_match_direct_openmm(vacuum, strategy, platform):
    positions = perturbed(vacuum, 7)
    with OpenMMEnergy(vacuum, platform=platform, batch_strategy=strategy, copies=3) as energy:  # 3 chunks, last partial
        u, grad = bridge_values(energy, positions)
    u_ref, grad_ref = direct(vacuum, positions)
    assert u.shape == (7,) and np.ptp(u_ref) > 1.0  # distinct samples, so a mix-up would show
    assert relative_error(u, u_ref) < RTOL
    assert relative_error(grad, grad_ref) < RTOL


@pytest.mark.parametrize("strategy", ["pool", "replicated"])
def test_worker_processes_match_direct_openmm_and_leave_no_processes(vacuum, strategy):
    positions = perturbed(vacuum, 5, seed=1)
    with OpenMMEnergy(vacuum, platform="Reference", batch_strategy=strategy, workers=2, copies=2) as energy:
        u, grad = bridge_values(energy, positions)
        pids = energy.evaluator.pids
        assert len(pids) == 2 and energy.threads == (1 if strategy == "replicated" else max(1, usable_cores() // 2))
        assert [os.sched_getaffinity(pid) for pid in pids] == core_shares(2)  # each worker on its own cores
    u_ref, grad_ref = direct(vacuum, positions)
    assert relative_error(u, u_ref) < RTOL
    assert relative_error(grad, grad_ref) < RTOL
    assert multiprocessing.active_children() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_core_shares_are_disjoint_and_cover_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert core_shares(2) == [{0, 1}, {2, 3}]
    assert core_shares(3) == [{0}, {1}, {2}]
    assert core_shares(5) == [{0}, {1}, {2}, {3}, {0}]  # more workers than cores: shared round-robin


def thread_ids() -> set:
    return set(os.listdir("/proc/self/task"))


def test_one_thread_cpu_context_shares_the_callers_core(vacuum):
    before = os.sched_getaffinity(0)
    started = thread_ids()
    evaluator = SingleContext(vacuum.system, "CPU", threads=1)
    workers = thread_ids() - started
    assert len(evaluator.cores) == 1 and len(workers) == 1  # OpenMM's one worker thread, on the caller's core
    assert os.sched_getaffinity(int(workers.pop())) == evaluator.cores
    assert os.sched_getaffinity(0) == before  # the caller is restricted only while it evaluates
    energies, _ = evaluator(perturbed(vacuum, 3))
    assert np.isfinite(energies).all() and os.sched_getaffinity(0) == before
    assert shared_core("CPU", 2) is None and shared_core("Reference", 1) is None
    with on_cores({current_core()}):
        assert os.sched_getaffinity(0) == {current_core()}
    assert os.sched_getaffinity(0) == before


def test_gradcheck_toy_and_torch_twin():
    spec = systems.load("mueller-brown")
    energy = OpenMMEnergy(spec, platform="Reference", batch_strategy="single")
    x = torch.tensor(perturbed(spec, 3, scale=0.3, seed=2), requires_grad=True)
    assert torch.autograd.gradcheck(energy, (x,), eps=1e-6, atol=1e-6)
    torch.testing.assert_close(energy(x), spec.toy.energy(x) / spec.kT, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("strategy", ["single", "replicated"])
def test_gradcheck_alanine_dipeptide(vacuum, strategy):
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy=strategy, copies=2)
    x = torch.tensor(perturbed(vacuum, 2, seed=3), requires_grad=True)
    assert torch.autograd.gradcheck(energy, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def overlapping_batch(spec):
    """Four samples; in sample 2 atoms 0 and 5 (a 1-4 pair, so they interact) sit at the same place."""
    positions = perturbed(spec, 4, seed=4)
    positions[2, 5] = positions[2, 0]
    return positions


@pytest.mark.parametrize("strategy", ["single", "replicated"])
def test_bad_sample_is_masked_and_good_samples_are_exact(vacuum, strategy):
    positions = overlapping_batch(vacuum)
    policy = SamplePolicy()
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy=strategy, copies=4, policy=policy)
    with pytest.warns(RuntimeWarning, match="1 of 4 samples"):
        u, grad = bridge_values(energy, positions)
    u_ref, grad_ref = direct(vacuum, positions)
    good = [0, 1, 3]
    assert not np.isfinite(u_ref[2])  # OpenMM itself gives NaN there
    assert relative_error(u[good], u_ref[good]) < RTOL
    assert relative_error(grad[good], grad_ref[good]) < RTOL
    assert u[2] == pytest.approx(policy.cap + 709.78, abs=0.01) and np.all(grad[2] == 0)
    assert energy.last_masked.tolist() == [False, False, True, False]


def test_bad_sample_can_raise(vacuum):
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single",
                          policy=SamplePolicy(nonfinite="raise"))
    with pytest.raises(ValueError, match=r"samples \[2\]"):
        energy(torch.tensor(overlapping_batch(vacuum)))


def test_nan_positions_raise_before_openmm(vacuum):
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single")
    calls = []
    inner = energy.evaluator
    energy.evaluator = lambda x: calls.append(x) or inner(x)
    x = torch.tensor(perturbed(vacuum, 3))
    x[1, 4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in samples \[1\]"):
        energy(x)
    assert calls == []
    energy(x[[0, 2]])
    assert len(calls) == 1


def test_lin_log_cap_values_and_consistent_gradient(vacuum):
    positions = perturbed(vacuum, 3, scale=0.01, seed=5)
    u_raw, grad_raw = direct(vacuum, positions)
    cap = float(np.sort(u_raw)[1])  # the highest sample is capped, the others are not
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single", policy=SamplePolicy(cap=cap))
    u, grad = bridge_values(energy, positions)
    high = np.argmax(u_raw)
    excess = u_raw[high] - cap
    assert excess > 1
    assert u[high] == pytest.approx(cap + np.log1p(excess), rel=1e-12)
    np.testing.assert_allclose(grad[high], grad_raw[high] / (1 + excess), rtol=1e-10, atol=1e-12)
    low = [i for i in range(3) if i != high]
    np.testing.assert_allclose(u[low], u_raw[low], rtol=1e-12)
    x = torch.tensor(positions[[high]], requires_grad=True)
    assert torch.autograd.gradcheck(energy, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_and_device_round_trip(vacuum, dtype):
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = torch.tensor(perturbed(vacuum, 2, seed=6), dtype=dtype, device=device, requires_grad=True)
        u = energy(x)
        u.sum().backward()
        assert u.dtype == dtype and u.device == x.device and x.grad.dtype == dtype and x.grad.device == x.device
        u_ref, grad_ref = direct(vacuum, x.detach().cpu().double().numpy())  # the same (rounded) positions
        resolution = torch.finfo(dtype).eps
        np.testing.assert_allclose(u.detach().cpu().double().numpy(), u_ref, rtol=resolution)
        assert relative_error(x.grad.cpu().double().numpy(), grad_ref) < resolution


def test_temperature_scales_reduced_energy(vacuum):
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single")
    positions = perturbed(vacuum, 2, seed=7)
    u300, grad300 = bridge_values(energy, positions)
    assert energy.temperature == 300.0 and energy.kT == pytest.approx(vacuum.kT, rel=1e-15)
    energy.temperature = 600.0
    u600, grad600 = bridge_values(energy, positions)
    np.testing.assert_allclose(u600, u300 / 2, rtol=1e-14)
    np.testing.assert_allclose(grad600, grad300 / 2, rtol=1e-14)
    energy.kT = 1.0
    assert energy.temperature == pytest.approx(120.27, abs=0.01)
    with pytest.raises(ValueError, match="temperature must be positive"):
        energy.temperature = -1.0


@pytest.mark.parametrize("name, force", [("ala2-implicit", "GBSAOBCForce"), ("ala2-explicit", "PME"),
                                         ("double-well", "CustomExternalForce")])
def test_replicated_refuses_unsupported_forces(name, force):
    with pytest.raises(ValueError, match=force):
        OpenMMEnergy(systems.load(name), batch_strategy="replicated")


def test_default_strategy_per_platform(vacuum):
    implicit = systems.load("ala2-implicit").system
    several = "pool" if usable_cores() > 1 else "single"
    assert default_strategy("CPU", vacuum.system) == "replicated"
    assert default_strategy("CPU", implicit) == several
    assert default_strategy("Reference", vacuum.system) == several
    assert default_strategy("CUDA", implicit) == "single"


def test_bad_arguments_raise_clear_errors(vacuum):
    with pytest.raises(ValueError, match="batch_strategy must be one of"):
        OpenMMEnergy(vacuum, batch_strategy="threads")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        OpenMMEnergy(vacuum, batch_strategy="pool", workers=0)
    with pytest.raises(ValueError, match="platform 'Nope' is not available"):
        OpenMMEnergy(vacuum, platform="Nope", batch_strategy="single")
    energy = OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single")
    with pytest.raises(ValueError, match=r"shape \[batch, 22, 3\]"):
        energy(torch.zeros(22, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating-point"):
        energy(torch.zeros(1, 22, 3, dtype=torch.int64))
    energy.close()
    with pytest.raises(RuntimeError, match="was closed"):
        energy(torch.zeros(1, 22, 3, dtype=torch.float64))


def test_docstring_examples_run():
    import doctest

    import cvplug.bridge
    import cvplug.bridge.energy

    for module in (cvplug.bridge, cvplug.bridge.energy):
        failed, attempted = doctest.testmod(module)
        assert attempted > 3 and failed == 0
