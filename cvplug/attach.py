"""Attach a CV to an OpenMM System as openmm-torch TorchForces (one per component) inside a CustomCVForce.

A CV that is only torsions or Cartesian coordinates (an identity encoder on unaligned :class:`Cartesians` or
:class:`Dihedrals` in radians, e.g. :func:`cvplug.demo.phi_psi_cv`) becomes native OpenMM forces instead
(``CustomTorsionForce``, ``CustomExternalForce``): the same values and forces without a call into torch at every
step, which costs ≈ 150 µs (50× a step of a small system on the Reference platform)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import numpy as np
import torch
import openmm
from torch import Tensor, nn

from ._openmmtorch import TorchForce

from .cv import CollectiveVariable, LoadedCV
from .features import Cartesians, Dihedrals

__all__ = ["attach", "AttachedCV", "cv_forces", "native_forces", "check_compatible", "check_energy", "expression_variables"]

AnyCV = Union[CollectiveVariable, LoadedCV]

# Functions of OpenMM's expression language (Lepton), which are not variables.
LEPTON_FUNCTIONS = frozenset({
    "sqrt", "exp", "log", "sin", "cos", "sec", "csc", "tan", "cot", "asin", "acos", "atan", "atan2", "sinh", "cosh",
    "tanh", "erf", "erfc", "step", "delta", "square", "cube", "recip", "min", "max", "abs", "floor", "ceil",
    "select",
})
# A number (1, 1.5, .5, 1e-3, 2.E+4) or an identifier; numbers first, so the "e" of 1e-3 is no identifier.
_TOKEN = re.compile(r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


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


def expression_variables(expression: str) -> set[str]:
    """The variable names an OpenMM (Lepton) energy expression reads: identifiers that are neither functions
    (a name followed by "(") nor defined in it (``"k*d^2; d=phi-phi0"`` reads k, phi and phi0)."""
    used, defined = set(), set()
    main, *definitions = expression.split(";")
    for part in [main] + definitions:
        body = part
        if part is not main:
            name, equals, body = part.partition("=")
            if not equals or not name.strip().isidentifier():
                raise ValueError(f"the energy expression {expression!r} has a part {part.strip()!r} after ';' "
                                 "that is not a definition (name = expression)")
            defined.add(name.strip())
        for match in _TOKEN.finditer(body):
            name = match.group("name")
            if name is not None and not body[match.end():].lstrip().startswith("("):
                used.add(name)
    return used - defined


def check_energy(energy: str, names: Iterable[str], parameters: Iterable[str] = ()) -> None:
    """Raise ValueError if ``energy`` reads a variable that is neither a CV component (``names``) nor a global
    parameter, or calls a function OpenMM does not have. (OpenMM itself would make such a bias silently 0.)"""
    names, parameters = list(names), list(parameters)
    unknown = sorted(expression_variables(energy) - set(names) - set(parameters))
    if unknown:
        raise ValueError(f"the energy expression {energy!r} uses {', '.join(unknown)}, which "
                         f"{'is' if len(unknown) == 1 else 'are'} neither a component of this CV "
                         f"({', '.join(names)}) nor a given parameter ({', '.join(parameters) or 'none'}); "
                         "write the expression in the CV's component names and give every other name in "
                         "parameters={name: value}")
    functions = {m.group("name") for m in _TOKEN.finditer(energy)
                 if m.group("name") and energy[m.end():].lstrip().startswith("(")}
    if functions - LEPTON_FUNCTIONS:
        raise ValueError(f"the energy expression {energy!r} calls {', '.join(sorted(functions - LEPTON_FUNCTIONS))}, "
                         f"which OpenMM does not know; its functions are {', '.join(sorted(LEPTON_FUNCTIONS))}")
    clashes = sorted(set(names) & set(parameters))
    if clashes:
        raise ValueError(f"parameters {', '.join(clashes)} have the names of CV components; rename them")


def cv_forces(cv: AnyCV, example: Optional[Tensor] = None, native: bool = True) -> list[openmm.Force]:
    """One force per CV component (energy = the component's value, kJ/mol per CV unit), not yet added to any
    System: native OpenMM forces where :func:`native_forces` can express the CV and ``native``, else TorchForces."""
    forces = native_forces(cv) if native else None
    if forces is not None:
        return forces
    compiled = cv.compiled(example)
    forces = []
    for k in range(cv.metadata["n_components"]):
        force = TorchForce(torch.jit.script(_Component(compiled, k)))
        force.setUsesPeriodicBoundaryConditions(bool(cv.metadata["periodic_box"]))
        forces.append(force)
    return forces


def native_forces(cv: AnyCV) -> Optional[list[openmm.Force]]:
    """The components of ``cv`` as native OpenMM forces, or None when the CV is more than torsions (rad) or
    Cartesian coordinates (nm) passed through unchanged (a loaded TorchScript file is never inspected). Positions
    are read as OpenMM holds them, unwrapped, as the TorchForce reads them."""
    if not isinstance(cv, CollectiveVariable) or not isinstance(cv.encoder, nn.Identity):
        return None
    if not (bool((cv.normalization.mean == 0).all()) and bool((cv.normalization.std == 1).all())):
        return None
    features = cv.features
    if isinstance(features, Dihedrals) and not features.sincos:
        forces = []
        for quadruplet in features.quadruplets.tolist():
            force = openmm.CustomTorsionForce("theta")
            force.addTorsion(*quadruplet, [])
            forces.append(force)
        return forces
    if isinstance(features, Cartesians) and not features.aligned:
        forces = []
        for atom in features.atoms.tolist():
            for component in features.components.tolist():
                force = openmm.CustomExternalForce("xyz"[component])
                force.addParticle(atom, [])
                forces.append(force)
        return forces
    return None


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
           topology=None, force_group: Optional[int] = None, native: bool = True) -> AttachedCV:
    """Add ``cv`` to ``system`` as a CustomCVForce whose collective variables are the CV's components.

    ``energy`` is the CustomCVForce expression in the component names (``cv.names``, e.g. ``"k*phi"`` for a CV
    whose components are phi and psi, ``"k*z0"`` for a DynAE CV), with global ``parameters`` (name → value,
    kJ/mol-compatible units). The default ``"0"`` only monitors the CV. Raises ValueError when the CV was made
    for a different system, or when the expression reads a name that is neither a component nor a parameter
    (:func:`check_energy`). ``native``: native OpenMM forces where the CV allows (:func:`cv_forces`).
    """
    check_compatible(system, cv, topology)
    names = list(cv.metadata["names"])
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"component names must be identifiers for OpenMM expressions, got {names}")
    check_energy(energy, names, parameters or {})
    force = openmm.CustomCVForce(energy)
    for name, value in (parameters or {}).items():
        force.addGlobalParameter(name, float(value))
    for name, component in zip(names, cv_forces(cv, native=native)):
        force.addCollectiveVariable(name, component)
    if force_group is not None:
        force.setForceGroup(force_group)
    return AttachedCV(force, system.addForce(force), names)
