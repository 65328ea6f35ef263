"""OpenMM Contexts for the bridge: how one is made and how one energy + forces evaluation is read.

The bridge only evaluates: it never steps the integrator, so constraints, virtual-site placement and
thermostats play no part. Energies are those of exactly the positions given.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import AbstractSet, Iterator, Mapping, Optional, Protocol

import numpy as np
import openmm

from ..constants import get_platform

__all__ = ["Evaluator", "usable_cores", "current_core", "on_cores", "shared_core", "make_context",
           "evaluate", "single_precision", "translation_invariant", "recentre"]

GPU_PLATFORMS = ("CUDA", "OpenCL", "HIP", "Metal")

# Forces whose energy depends only on positions relative to each other in a non-periodic system (distances,
# angles, dihedrals, RMSD after superposition), or that carry no energy. Others (CustomExternalForce,
# CustomCompoundBondForce and CustomGBForce, whose expressions may read x, y, z; TorchForce, PythonForce, …)
# may depend on where the molecule is, so positions of systems holding them are never moved.
TRANSLATION_INVARIANT_FORCES = frozenset({
    "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "RBTorsionForce", "CMAPTorsionForce",
    "NonbondedForce", "GBSAOBCForce", "CustomBondForce", "CustomAngleForce", "CustomTorsionForce",
    "CustomNonbondedForce", "CustomHbondForce", "CustomCentroidBondForce", "RMSDForce",
    "CMMotionRemover", "AndersenThermostat", "MonteCarloBarostat", "MonteCarloAnisotropicBarostat",
    "MonteCarloMembraneBarostat", "MonteCarloFlexibleBarostat",
})


class Evaluator(Protocol):
    """A batch strategy: positions [B, n, 3] (nm, float64) → energies [B] (kJ/mol), forces [B, n, 3] (kJ/mol/nm)."""

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


def usable_cores() -> int:
    """Number of CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def current_core() -> Optional[int]:
    """The CPU core the calling thread is running on (Linux), else None."""
    try:
        with open("/proc/thread-self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])  # field 39, "processor"
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def on_cores(cores: Optional[AbstractSet[int]]) -> Iterator[None]:
    """Run the block with the calling thread restricted to ``cores``, then restore its affinity.

    A no-op for None and where the OS has no ``sched_setaffinity``. Threads started inside the block inherit
    the restriction.
    """
    if not cores or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def shared_core(platform: str, threads: Optional[int]) -> Optional[frozenset[int]]:
    """The core on which a one-thread CPU Context and its caller should both run, or None (other platforms).

    OpenMM's CPU platform hands every evaluation to a worker thread and waits for it. When the caller and the
    worker sit on different cores, each evaluation wakes an idle core twice; on a virtual machine that costs
    more than evaluating a small molecule (alanine dipeptide on this 2-core machine: ≈ 800 instead of ≈ 7,500
    evaluations per second, see benchmarks/bridge.py). On one core each hand-off is a plain context switch.
    """
    if platform != "CPU" or threads != 1:
        return None
    core = current_core()
    return None if core is None else frozenset({core})



def make_context(system: openmm.System, platform: str = "CPU", threads: Optional[int] = None,
                 properties: Optional[Mapping[str, str]] = None,
                 box_vectors: Optional[np.ndarray] = None,
                 cores: Optional[AbstractSet[int]] = None) -> openmm.Context:
    """A Context for ``system`` on ``platform``; ``threads`` sets the CPU platform's ``Threads`` property.

    ``properties`` are further platform properties (e.g. ``{"Precision": "double"}`` on CUDA); ``box_vectors``
    (nm, [3, 3]) fix the periodic box of periodic systems; ``cores`` restrict the CPU platform's worker threads
    to these cores (:func:`shared_core`).
    """
    chosen = get_platform(platform)
    props = dict(properties or {})
    if threads is not None and platform == "CPU":
        props["Threads"] = str(int(threads))
    with on_cores(cores):  # the worker threads start here and inherit the affinity
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), chosen, props)
    if box_vectors is not None:
        context.setPeriodicBoxVectors(*np.asarray(box_vectors, dtype=np.float64))
    return context


def evaluate(context: openmm.Context, forces_out: np.ndarray, parameter_derivatives: bool = False) -> openmm.State:
    """Evaluate ``context`` at its current positions, write the forces (kJ/mol/nm) into ``forces_out``
    (float64, C-contiguous, [n_particles, 3]) and return the State (energy, optionally parameter derivatives).
    """
    state = context.getState(energy=True, forces=True, parameterDerivatives=parameter_derivatives)
    # Fills the array in place; getForces(asNumpy=True) would copy it and wrap it in units (≈ 10 µs a call).
    state._getVectorAsNumpy(openmm.State.Forces, forces_out)
    return state


def single_precision(platform: str, properties: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``platform`` computes from single-precision (float32) positions: every platform but Reference,
    unless its ``Precision`` property is ``"double"``. (Mixed precision also computes forces from float32 positions.)
    """
    if platform == "Reference":
        return False
    precision = {key.lower(): str(value).lower() for key, value in (properties or {}).items()}
    return not any(key.endswith("precision") and value == "double" for key, value in precision.items())


def translation_invariant(system: openmm.System) -> bool:
    """Whether ``system``'s energy is unchanged by a rigid translation of all its particles: a non-periodic
    system whose forces are all in :data:`TRANSLATION_INVARIANT_FORCES`."""
    if system.usesPeriodicBoundaryConditions():
        return False
    return all(type(force).__name__ in TRANSLATION_INVARIANT_FORCES for force in system.getForces())


def recentre(positions: np.ndarray) -> np.ndarray:
    """Positions [B, n, 3] (float64) with each sample's centroid moved to the origin (a new array).

    On a single-precision platform a molecule far from the origin loses its shape to rounding (at 1e6 nm float32
    resolves 0.06 nm: alanine dipeptide's energy moves from −35.3 to −22.3 kT); a translation-invariant energy
    and its forces do not change when the molecule is moved back first.
    """
    return positions - positions.mean(axis=1, keepdims=True)
