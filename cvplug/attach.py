"""Attach a CV to an OpenMM System as openmm-torch TorchForces (one per component) inside a CustomCVForce."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import openmm
from torch import Tensor, nn

from ._openmmtorch import TorchForce

from .cv import CollectiveVariable, LoadedCV

__all__ = ["attach", "AttachedCV", "cv_forces", "check_compatible"]

AnyCV = Union[CollectiveVariable, LoadedCV]


class _Component(nn.Module):
    """One component of a compiled CV, as the scalar a TorchForce needs."""

    def __init__(self, cv: torch.jit.ScriptModule, index: int):
        super().__init__()
        self.cv = cv
        self.index = index

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tensor:
        return self.cv(positions, boxvectors)[self.index]


def check_compatible(system: openmm.System, cv: AnyCV, topology=None) -> None:
    """Raise ValueError if ``cv`` was made for a different system (atom count, periodicity, elements)."""
    meta = cv.metadata
    n = system.getNumParticles()
    if meta["n_atoms"] != n:
        raise ValueError(f"this CV was made for a system of {meta['n_atoms']} atoms (method {meta['method']!r}, "
                         f"atoms {meta['atoms'][:8]}…), but the System has {n} particles; export the CV for this "
                         "system or pick the matching system")
    if meta["periodic_box"] and not system.usesPeriodicBoundaryConditions():
        raise ValueError("this CV was made for a periodic system but the System has no periodic box")
    elements = meta["info"].get("elements")
    if topology is not None and elements is not None:
        found = [topology_atom.element.symbol if topology_atom.element else "?"
                 for i, topology_atom in enumerate(topology.atoms()) if i in set(meta["atoms"])]
        if found != elements:
            raise ValueError(f"the CV's atoms should be elements {elements} but the topology has {found}")


def cv_forces(cv: AnyCV, example: Optional[Tensor] = None) -> list[TorchForce]:
    """One TorchForce per CV component (energy = the component's value), not yet added to any System."""
    compiled = cv.compiled(example)
    forces = []
    for k in range(cv.metadata["n_components"]):
        force = TorchForce(torch.jit.script(_Component(compiled, k)))
        force.setUsesPeriodicBoundaryConditions(bool(cv.metadata["periodic_box"]))
        forces.append(force)
    return forces


@dataclass
class AttachedCV:
    """Handles of a CV attached to a System: the CustomCVForce, its index in the System, component names."""

    force: openmm.CustomCVForce
    index: int
    names: list[str]

    def values(self, context: openmm.Context) -> np.ndarray:
        """Current CV values in ``context`` (the CV's own units)."""
        return np.array(self.force.getCollectiveVariableValues(context))


def attach(system: openmm.System, cv: AnyCV, energy: str = "0", parameters: Optional[dict[str, float]] = None,
           topology=None, force_group: Optional[int] = None) -> AttachedCV:
    """Add ``cv`` to ``system`` as a CustomCVForce whose collective variables are the CV's components.

    ``energy`` is the CustomCVForce expression in the component names (``cv.names``; e.g. ``"k*phi"``), with
    global ``parameters`` (name → value, kJ/mol-compatible units). The default ``"0"`` only monitors the CV.
    Raises ValueError when the CV was made for a different system.
    """
    check_compatible(system, cv, topology)
    names = list(cv.metadata["names"])
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"component names must be identifiers for OpenMM expressions, got {names}")
    force = openmm.CustomCVForce(energy)
    for name, value in (parameters or {}).items():
        force.addGlobalParameter(name, float(value))
    for name, component in zip(names, cv_forces(cv)):
        force.addCollectiveVariable(name, component)
    if force_group is not None:
        force.setForceGroup(force_group)
    return AttachedCV(force, system.addForce(force), names)
