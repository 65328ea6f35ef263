"""Differentiable, TorchScript-compatible molecular features.

Every feature maps positions [batch, n_atoms, 3] (nm) of the *whole* system to a feature matrix
[batch, n_out]; it selects its atoms itself, so a CV built on features can be handed OpenMM's full positions.
``describe()`` returns a JSON-able definition that is stored in every exported CV file.

>>> import torch
>>> phi = Dihedrals([(4, 6, 8, 14)])
>>> phi(torch.zeros(1, 22, 3)).shape
torch.Size([1, 1])
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Feature", "Cartesians", "PairwiseDistances", "Contacts", "Dihedrals", "Concatenate", "kabsch_align",
           "dihedral_angles", "rational_switch", "default_features"]


def dihedral_angles(p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """IUPAC dihedral angle (radians, in (−π, π]) of the points p0-p1-p2-p3, each [..., 3]."""
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1 = torch.linalg.cross(b1, b2)
    n2 = torch.linalg.cross(b2, b3)
    y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
    x = (n1 * n2).sum(-1)
    return torch.atan2(y, x)


def rational_switch(r: Tensor, r0: float, n: float = 6.0, m: float = 12.0) -> Tensor:
    """PLUMED's rational switching function s(r) = (1 − (r/r0)^n) / (1 − (r/r0)^m), elementwise.

    ``r`` and ``r0`` in the same length unit (nm); 0 < n < m. s falls from 1 at r = 0 through n/m at r = r0
    towards 0 (for m = 2n it is 1 / (1 + (r/r0)^n)). Written with t = ln(r/r0) as
    e^{(n−m) max(t, 0)} · expm1(−n|t|) / expm1(−m|t|), which has no cancellation near r0 and no overflow at large
    r; within |t| < 1e-4 of r0 the first-order expansion (n/m)(1 + (n − m) t / 2) is used, so value and gradient
    are finite (and right to O(t²)) at r = r0 exactly.
    """
    t = torch.log(r / r0)
    near = t.abs() < 1e-4
    t_far = torch.where(near, torch.ones_like(t), t)        # keeps the unused branch (and its gradient) finite
    tau = -t_far.abs()
    far = torch.exp((n - m) * t_far.clamp(min=0.0)) * torch.expm1(n * tau) / torch.expm1(m * tau)
    return torch.where(near, (n / m) * (1.0 + 0.5 * (n - m) * t), far)


def kabsch_align(coords: Tensor, reference: Tensor) -> Tensor:
    """Rigidly superpose ``coords`` [batch, k, 3] onto ``reference`` [k, 3] (both nm), minimising RMSD.

    The centroid is removed and the optimal proper rotation (Kabsch, with the reflection fix) applied.
    Differentiable everywhere except at degenerate (collinear) configurations.
    """
    centred = coords - coords.mean(dim=-2, keepdim=True)
    ref = reference - reference.mean(dim=-2, keepdim=True)
    covariance = centred.transpose(-1, -2) @ ref
    u, _, vh = torch.linalg.svd(covariance)
    d = torch.sign(torch.linalg.det(u @ vh))
    ones = torch.ones_like(d)
    correction = torch.diag_embed(torch.stack([ones, ones, d], dim=-1))
    rotation = u @ correction @ vh
    return centred @ rotation


class Feature(nn.Module):
    """Base of all features: holds the atom indices it reads (a buffer) and its output width."""

    def __init__(self, atoms: Sequence[int], n_out: int):
        super().__init__()
        if len(atoms) == 0:
            raise ValueError("a feature needs at least one atom index")
        if min(atoms) < 0:
            raise ValueError(f"atom indices must be non-negative, got {min(atoms)}")
        self.register_buffer("atoms", torch.tensor(list(atoms), dtype=torch.long))
        self.n_out = int(n_out)

    def describe(self) -> dict:
        """JSON-able description of the feature (type, atoms, options), stored in the CV file."""
        raise NotImplementedError

    def atom_indices(self) -> list[int]:
        """The sorted, distinct atom indices the feature reads."""
        return sorted(set(self.atoms.tolist()))


class Cartesians(Feature):
    """Flattened Cartesian coordinates (nm) of ``atoms``, optionally Kabsch-aligned to ``reference``.

    ``reference`` [len(atoms), 3] in nm: the coordinates of the same atoms in the reference frame.
    ``components`` keeps only some of x, y, z (0, 1, 2), e.g. ``(0, 1)`` for the 2D toy potentials.
    Output order: atom-major, [x_0, y_0, z_0, x_1, …].
    """

    def __init__(self, atoms: Sequence[int], reference: Optional[Tensor] = None,
                 components: Sequence[int] = (0, 1, 2)):
        if not components or any(c not in (0, 1, 2) for c in components):
            raise ValueError(f"components must be a non-empty subset of (0, 1, 2), got {tuple(components)}")
        super().__init__(atoms, len(components) * len(atoms))
        self.register_buffer("components", torch.tensor(list(components), dtype=torch.long))
        self.aligned = reference is not None
        if reference is not None:
            reference = torch.as_tensor(reference, dtype=torch.get_default_dtype())
            if reference.shape != (len(atoms), 3):
                raise ValueError(f"reference must have shape ({len(atoms)}, 3), got {tuple(reference.shape)}")
        self.register_buffer("reference", reference if reference is not None else torch.zeros(len(atoms), 3))

    def forward(self, positions: Tensor) -> Tensor:
        """The chosen Cartesian components [batch, n_atoms·n_components] (nm), Kabsch-aligned if given a reference."""
        coords = positions.index_select(-2, self.atoms)
        if self.aligned:
            coords = kabsch_align(coords, self.reference.to(coords.dtype))
        return coords.index_select(-1, self.components).flatten(-2)

    def describe(self) -> dict:
        """JSON-able description: atoms, components, whether aligned."""
        return {"type": "cartesians", "atoms": self.atoms.tolist(), "aligned": self.aligned,
                "components": self.components.tolist(), "units": "nm"}


class PairwiseDistances(Feature):
    """Distances (nm) between atom pairs: all pairs of ``atoms`` (i < j), or the explicit ``pairs``."""

    def __init__(self, atoms: Optional[Sequence[int]] = None, pairs: Optional[Sequence[tuple[int, int]]] = None):
        if (atoms is None) == (pairs is None):
            raise ValueError("give either atoms (all pairs among them) or pairs, not both")
        if pairs is None:
            atoms = list(atoms)
            pairs = [(atoms[i], atoms[j]) for i in range(len(atoms)) for j in range(i + 1, len(atoms))]
        pairs = [tuple(p) for p in pairs]
        if any(len(p) != 2 or p[0] == p[1] for p in pairs):
            raise ValueError("each pair must hold two different atom indices")
        super().__init__([i for p in pairs for i in p], len(pairs))
        self.register_buffer("first", torch.tensor([p[0] for p in pairs], dtype=torch.long))
        self.register_buffer("second", torch.tensor([p[1] for p in pairs], dtype=torch.long))

    def forward(self, positions: Tensor) -> Tensor:
        """Distances [batch, n_pairs] (nm) of positions [batch, n_atoms, 3] (nm)."""
        delta = positions.index_select(-2, self.second) - positions.index_select(-2, self.first)
        return torch.linalg.vector_norm(delta, dim=-1)

    def describe(self) -> dict:
        """JSON-able description: the atom pairs."""
        return {"type": "distances", "pairs": torch.stack([self.first, self.second], 1).tolist(), "units": "nm"}


class Contacts(Feature):
    """Smooth contacts of atom pairs: the rational switching function s(r) = (1 − (r/r0)^n) / (1 − (r/r0)^m) of
    each pair distance r (PLUMED's ``RATIONAL`` switching function with d0 = 0).

    Pairs as in :class:`PairwiseDistances`: all pairs of ``atoms`` (i < j), or the explicit ``pairs``. ``r0``
    (distance, nm): where s = n/m (½ for the default n = 6, m = 12); s ≈ 1 well inside r0 and decays like
    (r/r0)^(n−m) outside (s(2 r0) ≈ 0.015). ``n``, ``m``: exponents, 0 < n < m. Output: one value per pair in
    [0, 1], dimensionless.

    The default r0 = 0.8 nm is the usual Cα–Cα contact cutoff of protein contact maps (8 Å), so ``atoms`` =
    the Cα atoms gives a graded contact map out of the box. For contacts between heavy atoms use r0 ≈ 0.45 nm
    (the native-contact cutoff of Best, Hummer & Eaton, PNAS 110, 17874 (2013)); with 0.8 nm they would still
    vary smoothly but count the second solvation shell as half in contact.

    Reference: Bonomi et al., PLUMED, Comput. Phys. Commun. 180, 1961 (2009), "switching functions".

    >>> import torch
    >>> Contacts(pairs=[(0, 1)], r0=0.5)(torch.tensor([[[0.0, 0, 0], [0.5, 0, 0]]]))
    tensor([[0.5000]])
    """

    def __init__(self, atoms: Optional[Sequence[int]] = None, pairs: Optional[Sequence[tuple[int, int]]] = None,
                 r0: float = 0.8, n: float = 6.0, m: float = 12.0):
        if not r0 > 0:
            raise ValueError(f"r0 (the contact distance, nm) must be positive, got {r0}")
        if not 0 < n < m:
            raise ValueError(f"the switching exponents need 0 < n < m, got n = {n}, m = {m}")
        distances = PairwiseDistances(atoms=atoms, pairs=pairs)
        super().__init__(distances.atoms.tolist(), distances.n_out)
        self.distances = distances
        self.r0, self.n, self.m = float(r0), float(n), float(m)

    def forward(self, positions: Tensor) -> Tensor:
        """Switching-function contacts [batch, n_pairs] (dimensionless, 0 to 1) of positions (nm)."""
        return rational_switch(self.distances(positions), self.r0, self.n, self.m)

    def describe(self) -> dict:
        """JSON-able description: the pairs and r0 (nm), n, m."""
        return {"type": "contacts", "pairs": self.distances.describe()["pairs"], "switch": "rational",
                "r0": self.r0, "n": self.n, "m": self.m, "r0_units": "nm", "units": "dimensionless"}


class Dihedrals(Feature):
    """Dihedral angles of atom quadruplets: radians in (−π, π], or (sin, cos) pairs when ``sincos``.

    With ``sincos`` the output is [sin θ_1, …, sin θ_n, cos θ_1, …, cos θ_n].
    """

    def __init__(self, quadruplets: Sequence[tuple[int, int, int, int]], sincos: bool = False):
        quadruplets = [tuple(q) for q in quadruplets]
        if any(len(q) != 4 for q in quadruplets):
            raise ValueError("each dihedral needs four atom indices")
        super().__init__([i for q in quadruplets for i in q], len(quadruplets) * (2 if sincos else 1))
        self.register_buffer("quadruplets", torch.tensor(quadruplets, dtype=torch.long))
        self.sincos = sincos

    def forward(self, positions: Tensor) -> Tensor:
        """Torsions [batch, n] (rad, (−π, π]) or, with ``sincos``, all sines then all cosines [batch, 2n]."""
        p = [positions.index_select(-2, self.quadruplets[:, k]) for k in range(4)]
        angles = dihedral_angles(p[0], p[1], p[2], p[3])
        if self.sincos:
            return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        return angles

    def describe(self) -> dict:
        """JSON-able description: the atom quadruplets and sincos."""
        return {"type": "dihedrals", "quadruplets": self.quadruplets.tolist(), "sincos": self.sincos,
                "units": "dimensionless" if self.sincos else "rad"}


class Concatenate(Feature):
    """Several features side by side, in the given order."""

    def __init__(self, features: Sequence[Feature]):
        if len(features) == 0:
            raise ValueError("Concatenate needs at least one feature")
        super().__init__([i for f in features for i in f.atoms.tolist()], sum(f.n_out for f in features))
        self.parts = nn.ModuleList(features)

    def forward(self, positions: Tensor) -> Tensor:
        """The parts' outputs side by side [batch, n_out]."""
        return torch.cat([part(positions) for part in self.parts], dim=-1)

    def describe(self) -> dict:
        """JSON-able description: the parts in order."""
        return {"type": "concatenate", "parts": [part.describe() for part in self.parts]}


def default_features(spec, reference) -> Feature:
    """The inputs cvplug's trajectory learners use unless told otherwise.

    A toy's natural coordinates; for a molecule, :func:`cvplug.selection.default_feature_specs` of
    ``spec.topology`` built by :func:`cvplug.selection.parse_features`: the backbone torsions (sin, cos of φ and
    ψ) when the topology has any, else the Kabsch-aligned Cartesians of the heavy atoms of everything but water
    and ions, aligned to ``reference`` (full-system positions [n_atoms, 3] in nm).
    """
    if spec.toy is not None:
        return Cartesians(range(spec.toy.n_particles), components=range(spec.toy.dim_per_particle))
    from .selection import default_feature_specs, parse_features

    return parse_features(default_feature_specs(spec.topology), spec.topology, reference)
