"""Strategy 3: one Context holding B non-interacting copies of a molecule, so one OpenMM call evaluates B samples.

Each term of the molecule's force field is copied into every copy: bonds, angles and torsions as Custom*Forces
with the same functional form, and the nonbonded interactions as an explicit list of the pairs *within* a copy
(Lennard-Jones + Coulomb with NoCutoff, 1-4 and other exceptions taken from the NonbondedForce). Copies never
interact, so the forces on a copy's atoms are exactly the molecule's forces at that copy's positions.

Per-copy energies are exact: every term of copy k is multiplied by a global parameter ``s_k = 1``, so the total
energy is ``U = Σ_k s_k U_k`` and OpenMM's energy derivative ``∂U/∂s_k = U_k`` (requested with
``addEnergyParameterDerivative``) is the energy of copy k, computed in the same call as the forces.

Supported forces: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce with NoCutoff
(no parameter offsets), and CMMotionRemover (no energy; ignored). Anything else (implicit solvent such as
GBSAOBCForce, cutoffs, PME, custom forces, virtual sites, periodic systems) is refused with a ValueError: use
the "single" or "pool" strategy for those systems. The pair list grows as n_atoms², which suits the small
molecules this strategy is for.

Performance: a global parameter scales a whole Force, so the replica holds one Custom*Force per term kind and
copy. On alanine dipeptide 16–32 copies per call were fastest; 64 cost about twice as much per sample. OpenMM
evaluates these custom bonded forces on one thread: run several replicated Contexts in worker processes
(``OpenMMEnergy(..., batch_strategy="replicated", workers=k)``) to use more cores.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Mapping, Optional

import numpy as np
import openmm
import openmm.unit as unit

from .context import evaluate, make_context, on_cores, shared_core

__all__ = ["SUPPORTED_FORCES", "replicable_terms", "replicate", "ReplicatedContext"]

SUPPORTED_FORCES = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
                    "CMMotionRemover")
ONE_4PI_EPS0 = 138.93545764438198  # kJ mol⁻¹ nm e⁻², OpenMM 8's Coulomb constant

# kind: (Custom force class, energy of one term, its per-term parameters, add-parameter method, add-term method)
_KINDS = {
    "bond": (openmm.CustomBondForce, "0.5*k*(r-r0)^2", ("r0", "k"), "addPerBondParameter", "addBond"),
    "angle": (openmm.CustomAngleForce, "0.5*k*(theta-theta0)^2", ("theta0", "k"), "addPerAngleParameter",
              "addAngle"),
    "torsion": (openmm.CustomTorsionForce, "k*(1+cos(periodicity*theta-phase))", ("periodicity", "phase", "k"),
                "addPerTorsionParameter", "addTorsion"),
    "pair": (openmm.CustomBondForce, f"4*epsilon*(y^2-y)+{ONE_4PI_EPS0!r}*chargeProd/r; y=(sigma/r)^6",
             ("chargeProd", "sigma", "epsilon"), "addPerBondParameter", "addBond"),
}


_NONBONDED_METHODS = {openmm.NonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
                      openmm.NonbondedForce.CutoffPeriodic: "CutoffPeriodic", openmm.NonbondedForce.Ewald: "Ewald",
                      openmm.NonbondedForce.PME: "PME", openmm.NonbondedForce.LJPME: "LJPME"}


def _plain(values) -> tuple[float, ...]:
    return tuple(v.value_in_unit_system(unit.md_unit_system) if unit.is_quantity(v) else float(v) for v in values)


def _nonbonded_pairs(force: openmm.NonbondedForce) -> Iterator[tuple[str, tuple[int, ...], tuple[float, ...]]]:
    if force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
        method = _NONBONDED_METHODS.get(force.getNonbondedMethod(), force.getNonbondedMethod())
        raise ValueError(f"the replicated strategy supports NonbondedForce only with NoCutoff (vacuum), not {method}")
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise ValueError("the replicated strategy does not support NonbondedForce parameter offsets")
    exceptions = {}
    for e in range(force.getNumExceptions()):
        i, j, *parameters = force.getExceptionParameters(e)
        exceptions[min(i, j), max(i, j)] = _plain(parameters)
    particles = [_plain(force.getParticleParameters(i)) for i in range(force.getNumParticles())]
    for i, j in itertools.combinations(range(len(particles)), 2):
        (qi, si, ei), (qj, sj, ej) = particles[i], particles[j]
        charge_prod, sigma, epsilon = exceptions.get((i, j), (qi * qj, 0.5 * (si + sj), np.sqrt(ei * ej)))
        if charge_prod != 0 or epsilon != 0:
            yield "pair", (i, j), (charge_prod, sigma, epsilon)


def _terms(force: openmm.Force) -> Iterator[tuple[str, tuple[int, ...], tuple[float, ...]]]:
    """(kind, particles, parameters) of every term of ``force`` that carries energy (bonded: nonzero k)."""
    name = type(force).__name__
    if name == "HarmonicBondForce":
        bonded = ("bond", force.getNumBonds(), force.getBondParameters, 2)
    elif name == "HarmonicAngleForce":
        bonded = ("angle", force.getNumAngles(), force.getAngleParameters, 3)
    elif name == "PeriodicTorsionForce":
        bonded = ("torsion", force.getNumTorsions(), force.getTorsionParameters, 4)
    elif name == "NonbondedForce":
        yield from _nonbonded_pairs(force)
        return
    elif name == "CMMotionRemover":
        return
    else:
        raise ValueError(f"the replicated strategy does not support {name} (it supports "
                         f"{', '.join(SUPPORTED_FORCES)}); use batch_strategy='single' or 'pool'")
    kind, count, get_parameters, n_particles = bonded
    for t in range(count):
        parameters = get_parameters(t)
        values = _plain(parameters[n_particles:])
        if values[-1] != 0:  # the force constant
            yield kind, tuple(parameters[:n_particles]), values


def replicable_terms(system: openmm.System) -> list[tuple[str, tuple[int, ...], tuple[float, ...]]]:
    """The energy terms of ``system`` as (kind, particles, parameters); ValueError if it cannot be replicated."""
    terms = [term for force in system.getForces() for term in _terms(force)]
    if system.usesPeriodicBoundaryConditions():
        raise ValueError("the replicated strategy needs a non-periodic system (vacuum, NoCutoff)")
    if any(system.isVirtualSite(i) for i in range(system.getNumParticles())):
        raise ValueError("the replicated strategy does not support virtual sites")
    return terms


def replicate(system: openmm.System, copies: int) -> tuple[openmm.System, list[str]]:
    """A System of ``copies`` non-interacting copies of ``system`` (copy k holds particles k·n … k·n + n − 1)
    and the names of the global parameters ``s_k`` whose energy derivatives are the copies' energies.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    by_kind: dict[str, list] = {}
    for kind, particles, values in replicable_terms(system):
        by_kind.setdefault(kind, []).append((particles, list(values)))
    n = system.getNumParticles()
    replica = openmm.System()
    for _ in range(copies):
        for i in range(n):
            replica.addParticle(system.getParticleMass(i))
    scales = [f"cvplug_copy{k}_scale" for k in range(copies)]
    for k, scale in enumerate(scales):
        for kind, terms in by_kind.items():
            force_class, energy, parameters, add_parameter, add_term = _KINDS[kind]
            main, _, definitions = energy.partition(";")
            force = force_class(f"{scale}*({main})" + (f";{definitions}" if definitions else ""))
            for parameter in parameters:
                getattr(force, add_parameter)(parameter)
            for particles, values in terms:
                getattr(force, add_term)(*(p + k * n for p in particles), values)
            force.addGlobalParameter(scale, 1.0)
            force.addEnergyParameterDerivative(scale)
            replica.addForce(force)
    return replica, scales


class ReplicatedContext:
    """Evaluates energies (kJ/mol) and forces (kJ/mol/nm) of positions [B, n, 3] (nm), ``copies`` at a time.

    Parameters
    ----------
    system : a vacuum molecule whose forces are all supported (see the module docstring); constraints ignored.
    reference_positions : positions [n, 3] (nm) that fill the unused copies of a batch smaller than ``copies``.
    copies : samples per OpenMM call; batches are cut into chunks of this size (a divisor of the batch size
        wastes nothing).
    platform, threads, properties : see :func:`cvplug.bridge.context.make_context`.
    """

    def __init__(self, system: openmm.System, reference_positions: np.ndarray, copies: int = 16,
                 platform: str = "CPU", threads: Optional[int] = None,
                 properties: Optional[Mapping[str, str]] = None):
        replica, self.scales = replicate(system, copies)
        self.copies, self.n_atoms = copies, system.getNumParticles()
        self.cores = shared_core(platform, threads)
        self.context = make_context(replica, platform, threads, properties, cores=self.cores)
        self._reference = np.asarray(reference_positions, dtype=np.float64).reshape(self.n_atoms, 3)
        self._positions = np.tile(self._reference, (copies, 1))
        self._slots = self._positions.reshape(copies, self.n_atoms, 3)   # a view: copy k's positions
        self._forces = np.empty_like(self._positions)

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies = np.empty(len(positions))
        forces = np.empty((len(positions), self.n_atoms, 3))
        with on_cores(self.cores):
            for start in range(0, len(positions), self.copies):
                self._chunk(positions, start, energies, forces)
        return energies, forces

    def _chunk(self, positions: np.ndarray, start: int, energies: np.ndarray, forces: np.ndarray) -> None:
        """Evaluate positions[start : start + copies] in one call, writing into ``energies`` and ``forces``."""
        chunk = positions[start:start + self.copies]
        m = len(chunk)
        self._slots[:m] = chunk
        self._slots[m:] = self._reference
        self.context.setPositions(self._positions)
        derivatives = evaluate(self.context, self._forces, parameter_derivatives=True).getEnergyParameterDerivatives()
        energies[start:start + m] = [derivatives[scale] for scale in self.scales[:m]]
        forces[start:start + m] = self._forces.reshape(self.copies, self.n_atoms, 3)[:m]

    def close(self) -> None:
        self.context = None
