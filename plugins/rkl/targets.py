"""Targets: the Boltzmann densities p_β(x) ∝ exp(−β u(x)) J(x) the model learns, in the model's coordinates x.

u is the reduced energy U/kT at the system's temperature, so β = 1 is the physical target and smaller β are the
tempered densities passed on the way. J is the Jacobian of the coordinates (1 for toys; the rigid-body orbit for
molecules, :mod:`.frame`). Every target counts the configurations it evaluated (``force_calls``).

* :class:`ToyTarget` — a toy potential's natural coordinates; energies from its torch twin or, through the
  bridge, from OpenMM.
* :class:`MoleculeTarget` — a molecule's internal-frame Cartesians; energies and forces from OpenMM through
  :class:`cvplug.bridge.OpenMMEnergy`. Constrained bonds (e.g. H-bonds in the shipped alanine dipeptide) become
  stiff harmonic springs at the constraint length, since the bridge evaluates unconstrained positions.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import openmm
import torch
from torch import Tensor

from cvplug.features import Cartesians, Feature

from .frame import RigidFrame

__all__ = ["Target", "ToyTarget", "MoleculeTarget", "default_frame", "springs_for_constraints", "ENERGIES"]

ENERGIES = ("torch", "bridge")
DEFAULT_CONSTRAINT_K = 3.0e5  # kJ/mol/nm², the order of AMBER's X–H bond force constants


class Target:
    """Base class: ``dim`` coordinates, reduced ``energy(x)``, ``log_jacobian(x)``, and the feature map from full
    positions to x (``features``) with which the learned encoder becomes a CV."""

    dim: int
    features: Feature
    force_calls: int = 0

    def energy(self, x: Tensor) -> Tensor:
        """Reduced energy u(x) = U/kT [B] at the system's temperature; counts the calls."""
        self.force_calls += len(x)
        return self._energy(x)

    def _energy(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def log_jacobian(self, x: Tensor) -> Tensor:
        """log J(x) [B]."""
        return x.new_zeros(len(x))

    def log_density(self, x: Tensor, beta: float) -> Tensor:
        """Unnormalised log p_β(x) = −β u(x) + log J(x) [B]."""
        return -beta * self.energy(x) + self.log_jacobian(x)

    def positions(self, x: Tensor) -> Tensor:
        """Full-system positions [B, n_atoms, 3] (nm) of coordinates x [B, dim]."""
        raise NotImplementedError

    def coordinates(self, positions) -> Tensor:
        """Coordinates x [B, dim] of positions [B, n_atoms, 3] (nm), e.g. of an MD trajectory."""
        with torch.no_grad():
            return self.features(torch.as_tensor(np.asarray(positions), dtype=torch.get_default_dtype()))

    def close(self) -> None:
        """Release OpenMM resources (bridge targets)."""


class ToyTarget(Target):
    """A toy potential of :mod:`cvplug.systems` (kT = 1) in its natural coordinates.

    ``energy="torch"`` uses the torch twin ``spec.toy.u``; ``energy="bridge"`` asks OpenMM through
    :class:`cvplug.bridge.OpenMMEnergy` (``bridge_options`` go to it; default one Context on the CPU).
    """

    def __init__(self, spec, energy: str = "torch", **bridge_options):
        if spec.toy is None:
            raise ValueError(f"{spec.name} is not a toy potential; use MoleculeTarget")
        if energy not in ENERGIES:
            raise ValueError(f"energy must be one of {ENERGIES}, not {energy!r}")
        self.toy, self.energy_source, self.dim = spec.toy, energy, spec.toy.dim
        self.features = Cartesians(range(self.toy.n_particles), components=range(self.toy.dim_per_particle))
        self.bridge = None
        if energy == "bridge":
            from cvplug.bridge import OpenMMEnergy

            options = {"batch_strategy": "single", **bridge_options}
            self.bridge = OpenMMEnergy(spec, **options)
        self.reference = torch.as_tensor(self.toy.start, dtype=torch.get_default_dtype())

    def _energy(self, x: Tensor) -> Tensor:
        if self.bridge is None:
            return self.toy.u(x)
        return self.bridge(self.positions(x))

    def positions(self, x: Tensor) -> Tensor:
        per = self.toy.dim_per_particle
        natural = x.reshape(len(x), self.toy.n_particles, per)
        return torch.nn.functional.pad(natural, (0, 3 - per))

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()


def springs_for_constraints(system: openmm.System, k: float = DEFAULT_CONSTRAINT_K) -> openmm.System:
    """A copy of ``system`` without constraints, each constraint replaced by a harmonic bond at its length.

    ``k`` in kJ/mol/nm². The bridge evaluates positions as they are (constraints play no part), and force
    fields built with constrained bonds carry no energy term for them; the springs restore one.
    """
    if not k > 0:
        raise ValueError(f"the spring constant must be positive (kJ/mol/nm²), got {k}")
    flexible = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    if flexible.getNumConstraints() == 0:
        return flexible
    springs = openmm.HarmonicBondForce()
    while flexible.getNumConstraints():
        last = flexible.getNumConstraints() - 1
        i, j, length = flexible.getConstraintParameters(last)
        springs.addBond(i, j, length, k)
        flexible.removeConstraint(last)
    flexible.addForce(springs)
    return flexible


def default_frame(spec) -> tuple[int, int, int]:
    """(origin, axis, plane) atoms of the internal frame: CA, N, C of the first residue with a backbone φ
    (peptides), else the heavy atom nearest the centroid and its two nearest heavy neighbours."""
    from cvplug.selection import phi_quadruplets

    quadruplets = phi_quadruplets(spec.topology)
    if quadruplets:
        _, n, ca, c = quadruplets[0]
        return ca, n, c
    heavy = [a.index for a in spec.topology.atoms() if a.element is not None and a.element.symbol != "H"]
    if len(heavy) < 3:
        raise ValueError(f"{spec.name} has fewer than 3 heavy atoms; give frame=(origin, axis, plane) atoms")
    xyz = spec.positions[heavy]
    origin = int(np.argmin(np.linalg.norm(xyz - xyz.mean(0), axis=1)))
    nearest = np.argsort(np.linalg.norm(xyz - xyz[origin], axis=1))[1:3]
    return heavy[origin], heavy[nearest[0]], heavy[nearest[1]]


class MoleculeTarget(Target):
    """A molecule in internal-frame Cartesians (:class:`.frame.RigidFrame`), energies from OpenMM via the bridge.

    Parameters
    ----------
    spec : a molecular :class:`cvplug.systems.SystemSpec` (non-periodic: the frame removes rigid-body motion).
    frame : (origin, axis, plane) atoms; default :func:`default_frame` (CA, N, C of the first residue of a peptide).
    constraint_k : spring constant (kJ/mol/nm²) replacing each constraint (see :func:`springs_for_constraints`).
    bridge_options : passed to :class:`cvplug.bridge.OpenMMEnergy` (platform, batch_strategy, workers, copies …).
        Its energy cap is off by default: training caps the tempered energy β u instead
        (:func:`.objective.capped`).
    """

    def __init__(self, spec, frame: Optional[tuple[int, int, int]] = None,
                 constraint_k: float = DEFAULT_CONSTRAINT_K, **bridge_options):
        from cvplug.bridge import OpenMMEnergy, SamplePolicy

        if spec.toy is not None:
            raise ValueError(f"{spec.name} is a toy potential; use ToyTarget")
        if spec.periodic:
            raise ValueError(f"{spec.name} is periodic; the reverse-KL model handles non-periodic molecules only")
        self.features = RigidFrame(spec.n_atoms, *(frame or default_frame(spec)))
        self.dim = self.features.n_out
        flexible = dataclasses.replace(spec, system=springs_for_constraints(spec.system, constraint_k))
        self.bridge = OpenMMEnergy(flexible, **{"policy": SamplePolicy(cap=None), **bridge_options})
        self.reference = self.coordinates(spec.positions[None])[0]

    def _energy(self, x: Tensor) -> Tensor:
        return self.bridge(self.positions(x))

    def log_jacobian(self, x: Tensor) -> Tensor:
        return RigidFrame.log_jacobian(x)

    def positions(self, x: Tensor) -> Tensor:
        return self.features.embed(x)

    def close(self) -> None:
        self.bridge.close()
