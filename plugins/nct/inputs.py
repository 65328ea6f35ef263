"""From a system and its trajectory to what the NCT trains on: features, masses, a reduced energy of features.

Defaults: training on data uses :func:`molecule_cartesians` (Kabsch-aligned heavy-atom Cartesians of a molecule,
30 numbers for alanine dipeptide; a toy's natural coordinates); variational training
uses :func:`hamiltonian_features`, which cover every atom, since the force field needs them all.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import openmm.unit as unit
import torch
from torch import Tensor

from cvplug.features import Cartesians, Feature, default_features
from cvplug.systems import SystemSpec

__all__ = ["molecule_cartesians", "hamiltonian_features", "feature_masses", "alignment_constraints", "as_positions", "feature_energy"]


def molecule_cartesians(spec: SystemSpec) -> Cartesians:
    """What the NCT learns from data: a toy's natural coordinates, or the Kabsch-aligned Cartesians of the
    heavy atoms of a molecule (everything but water and ions), aligned to its initial structure."""
    if spec.toy is not None:
        return default_features(spec, spec.positions)
    from cvplug.selection import solute_atoms

    solute = set(solute_atoms(spec.topology))
    heavy = [a.index for a in spec.topology.atoms()
             if a.index in solute and (a.element is None or a.element.symbol != "H")]
    return Cartesians(heavy, reference=torch.as_tensor(spec.positions[heavy], dtype=torch.get_default_dtype()))


def hamiltonian_features(spec: SystemSpec) -> Cartesians:
    """A toy's natural coordinates; the Cartesians of every atom of a molecule, aligned to its initial structure."""
    if spec.toy is not None:
        return default_features(spec, spec.positions)
    return Cartesians(range(spec.n_atoms), reference=torch.tensor(spec.positions, dtype=torch.get_default_dtype()))


def feature_masses(spec: SystemSpec, features: Feature) -> Tensor:
    """Mass (amu) of the particle behind every component of Cartesian ``features``; other features have no
    masses and raise ValueError (pass ``masses`` to the trainer instead)."""
    if not isinstance(features, Cartesians):
        raise ValueError(f"masses are known only for Cartesian features, not {type(features).__name__}; pass "
                         "masses= (one per feature component, amu) explicitly")
    masses = torch.tensor([spec.system.getParticleMass(int(i)).value_in_unit(unit.dalton)
                           for i in features.atoms.tolist()], dtype=torch.float64)
    return masses.repeat_interleave(len(features.components))


def alignment_constraints(features: Feature) -> Optional[Tensor]:
    """Rows c [6, n] of the linear constraints c·x = 0 that Kabsch-aligned Cartesians obey, or None.

    Kabsch alignment onto a reference r (centred) leaves the centroid at 0 (three rows) and makes Σ_i x_i r_iᵀ
    symmetric, i.e. Σ_i x_i × r_i = 0 (three Eckart rows).
    """
    if not isinstance(features, Cartesians) or not features.aligned:
        return None
    if features.components.tolist() != [0, 1, 2]:
        raise ValueError("aligned Cartesian features for the NCT must keep all of x, y, z")
    reference = features.reference.double() - features.reference.double().mean(dim=0)
    n_atoms = len(reference)
    translation = torch.eye(3, dtype=torch.float64).repeat(1, n_atoms)            # [3, 3 n]
    levi_civita = torch.zeros(3, 3, 3, dtype=torch.float64)
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        levi_civita[a, b, c], levi_civita[a, c, b] = 1.0, -1.0
    # (Σ_i x_i × r_i)_a = Σ_i Σ_bc ε_abc x_ib r_ic
    rotation = torch.einsum("abc,ic->aib", levi_civita, reference).reshape(3, 3 * n_atoms)
    return torch.cat([translation, rotation])


def as_positions(spec: SystemSpec, data) -> Tensor:
    """Positions [frames, n_atoms, 3] (nm, float64) of an mdtraj.Trajectory, a cvplug ToyTrajectory (natural
    coordinates ``x``) or an array of positions."""
    if hasattr(data, "xyz"):
        positions = np.asarray(data.xyz, dtype=np.float64)
    elif hasattr(data, "x") and spec.toy is not None:
        x = np.asarray(data.x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != spec.toy.dim:
            raise ValueError(f"a {spec.name} trajectory has {spec.toy.dim} natural coordinates per frame, got "
                             f"shape {x.shape}")
        positions = np.zeros((len(x), spec.toy.n_particles, 3))
        positions[..., : spec.toy.dim_per_particle] = x.reshape(len(x), spec.toy.n_particles, -1)
    else:
        positions = np.asarray(data, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (spec.n_atoms, 3):
        raise ValueError(f"positions of {spec.name} must be [frames, {spec.n_atoms}, 3] (nm), got {positions.shape}")
    if len(positions) < 2 or not np.isfinite(positions).all():
        raise ValueError("the data need at least 2 frames of finite positions")
    return torch.from_numpy(positions)


def feature_energy(spec: SystemSpec, features: Cartesians, backend: str = "twin",
                   **bridge_options) -> Callable[[Tensor], Tensor]:
    """Reduced potential energy u = U/kT of feature values [B, n], for variational training.

    ``backend``: "twin" (a toy's torch twin; natural-coordinate features only) or "openmm" (the force field
    through :class:`cvplug.bridge.OpenMMEnergy`; the features must be Cartesians of every particle, and toys'
    spare components sit at 0). ``bridge_options`` go to OpenMMEnergy (platform, batch_strategy …).
    """
    if backend not in ("twin", "openmm"):
        raise ValueError(f"backend must be 'twin' or 'openmm', not {backend!r}")
    if not isinstance(features, Cartesians) or sorted(features.atoms.tolist()) != list(range(spec.n_atoms)):
        raise ValueError("variational training needs Cartesian features of every particle of the system, so that "
                         "the energy is a function of the features")
    if spec.periodic:
        raise ValueError(f"{spec.name} is periodic; variational NCT supports non-periodic systems only")
    order = features.atoms.tolist()
    components = features.components.tolist()
    if backend == "twin":
        if spec.toy is None:
            raise ValueError(f"{spec.name} has no torch twin; use backend='openmm'")
        if order != list(range(spec.n_atoms)) or components != list(range(spec.toy.dim_per_particle)):
            raise ValueError("the twin energy needs the toy's natural coordinates as features (default_features)")
        return spec.toy.u
    from cvplug.bridge import OpenMMEnergy

    bridge = OpenMMEnergy(spec, **bridge_options)
    inverse_order = torch.argsort(torch.tensor(order))

    def energy(x: Tensor) -> Tensor:
        coords = x.reshape(len(x), len(order), len(components))[:, inverse_order]
        positions = coords.new_zeros(len(x), spec.n_atoms, 3)
        positions[..., components] = coords
        return bridge(positions)

    return energy
