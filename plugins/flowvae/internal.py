"""Bond-angle-torsion (BAT) internal coordinates of a molecule: a Z-matrix, its features and its inverse.

Every atom but the first is placed from a bonded parent p and two further reference atoms (g, h), already
placed: bond length |i−p| (nm), bond angle i-p-g (rad, in (0, π)) and dihedral i-p-g-h (rad, (−π, π]).
Atoms are placed in breadth-first order over the bond graph from a root (heavy atoms first, then those with
more heavy neighbours, so the backbone continues first). The first child of p gets a proper torsion
(h bonded to g); a later child's dihedral is taken about p−g relative to that first sibling (h = the sibling),
a phase offset with small fluctuations, as in MDAnalysis' BAT. Otherwise the three hydrogens of a methyl group
would have three strongly coupled torsions, which a decoder that treats coordinates as independent given z
cannot model. Bonds held
rigid by constraints are left out of the coordinates (:attr:`ZMatrix.free_bonds`) and restored at their
constraint length. The forward map is built from cvplug.features plus :class:`Angles`, so an exported CV
computes it from OpenMM positions; :meth:`ZMatrix.to_cartesian` is the inverse (NeRF placement; Parsons et al.,
J. Comput. Chem. 26, 1063, 2005) and :meth:`ZMatrix.log_jacobian` the log-Jacobian of Cartesian → BAT,
Σ log b² + Σ log sin θ (up to a constant).
"""
from __future__ import annotations

from collections import deque
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from cvplug.features import Concatenate, Dihedrals, Feature, PairwiseDistances

__all__ = ["Angles", "ZMatrix", "bond_angles"]


def bond_angles(p0: Tensor, p1: Tensor, p2: Tensor) -> Tensor:
    """Angle p0-p1-p2 (radians, [0, π]) of points [..., 3]."""
    a, b = p0 - p1, p2 - p1
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=-1), (a * b).sum(-1))


class Angles(Feature):
    """Bond angles (radians) of atom triples (i, j, k), the angle at j. TorchScript-able like cvplug.features."""

    def __init__(self, triples: Sequence[tuple[int, int, int]]):
        triples = [tuple(t) for t in triples]
        if any(len(t) != 3 or len(set(t)) != 3 for t in triples):
            raise ValueError("each angle needs three different atom indices")
        super().__init__([i for t in triples for i in t], len(triples))
        self.register_buffer("triples", torch.tensor(triples, dtype=torch.long))

    def forward(self, positions: Tensor) -> Tensor:
        """Bond angles [batch, n_angles] (rad) of positions [batch, n_atoms, 3] (nm)."""
        return bond_angles(positions.index_select(-2, self.triples[:, 0]),
                           positions.index_select(-2, self.triples[:, 1]),
                           positions.index_select(-2, self.triples[:, 2]))

    def describe(self) -> dict:
        """JSON-able description: the atom triples and the unit."""
        return {"type": "angles", "triples": self.triples.tolist(), "units": "rad"}


def _place(p: Tensor, g: Tensor, h: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor) -> Tensor:
    """Position of atom i [..., 3] with |i−p| = bond, angle i-p-g and dihedral i-p-g-h."""
    pg = g - p
    pg = pg / torch.linalg.vector_norm(pg, dim=-1, keepdim=True)
    normal = torch.linalg.cross(h - g, pg)
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
    third = torch.linalg.cross(normal, pg)
    local = torch.stack([torch.cos(angle), -torch.sin(angle) * torch.cos(torsion),
                         torch.sin(angle) * torch.sin(torsion)], dim=-1)
    frame = torch.stack([pg, third, normal], dim=-1)  # columns
    return p + bond.unsqueeze(-1) * (frame @ local.unsqueeze(-1)).squeeze(-1)


class ZMatrix:
    """A Z-matrix of a molecule from its bond graph.

    Parameters
    ----------
    n_atoms : atoms of the molecule (indices 0 … n_atoms − 1).
    bonds : bonded pairs (i, j).
    root : the first atom placed.
    heavy : atoms placed before the hydrogens of the same breadth-first level (default: none preferred).
    constraints : {(i, j): length in nm} of rigid bonds, dropped from the coordinates.

    Notes
    -----
    ``order`` is the placement order, ``refs`` holds per placed atom after the first (i, p, g, h) with
    g, h = −1 where undefined, ``free_bonds`` the indices into the bonds that are coordinates. The coordinates
    (:meth:`n_coordinates` of them) are the free bond lengths (nm), then the angles, then the dihedrals (rad).
    """

    def __init__(self, n_atoms: int, bonds: Sequence[tuple[int, int]], root: int = 0,
                 heavy: Sequence[int] = (), constraints: Optional[dict] = None):
        neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
        for i, j in bonds:
            neighbours[i].append(j)
            neighbours[j].append(i)
        heavy_set = set(heavy)
        rank = lambda a: (a not in heavy_set, -len(heavy_set.intersection(neighbours[a])), a)  # noqa: E731
        parent, order, queue = {root: -1}, [root], deque([root])
        while queue:
            atom = queue.popleft()
            for child in sorted(neighbours[atom], key=rank):
                if child not in parent:
                    parent[child] = atom
                    order.append(child)
                    queue.append(child)
        if len(order) != n_atoms:
            raise ValueError(f"the bond graph is not connected: reached {len(order)} of {n_atoms} atoms")
        position = {a: k for k, a in enumerate(order)}
        refs = []
        for k, atom in enumerate(order[1:], start=1):
            placed = lambda a, exclude: a >= 0 and position[a] < k and a not in exclude  # noqa: E731
            p = parent[atom]
            g = next((a for a in [parent[p]] + sorted(neighbours[p], key=position.get) if placed(a, {atom, p})), -1)
            h = -1
            if g >= 0:
                siblings = [a for a in sorted(neighbours[p], key=position.get) if a != parent[p]]
                candidates = siblings + [parent[g]] + sorted(neighbours[g], key=position.get) + \
                    sorted(neighbours[p], key=position.get) + order
                h = next((a for a in candidates if placed(a, {atom, p, g})), -1)
            refs.append((atom, p, g, h))
        self.n_atoms, self.order, self.refs = n_atoms, order, refs
        constraints = {tuple(sorted(pair)): float(length) for pair, length in (constraints or {}).items()}
        self.bond_pairs = [(i, p) for i, p, _, _ in refs]
        self.fixed_length = [constraints.get(tuple(sorted(pair))) for pair in self.bond_pairs]
        self.free_bonds = [k for k, length in enumerate(self.fixed_length) if length is None]
        self.angle_triples = [(i, p, g) for i, p, g, _ in refs if g >= 0]
        self.dihedral_quads = [(i, p, g, h) for i, p, g, h in refs if h >= 0]

    @classmethod
    def from_topology(cls, topology, root: int = 0, constraints: Optional[dict] = None) -> "ZMatrix":
        """From an mdtraj or OpenMM topology; hydrogens are placed after heavy atoms of the same level."""
        atoms = list(topology.atoms() if callable(topology.atoms) else topology.atoms)
        bonds = list(topology.bonds() if callable(topology.bonds) else topology.bonds)
        heavy = [a.index for a in atoms if a.element is None or a.element.symbol != "H"]
        return cls(len(atoms), [(a.index, b.index) for a, b in bonds], root, heavy, constraints)

    @property
    def n_coordinates(self) -> int:
        """Number of internal coordinates: free bonds + angles + dihedrals."""
        return len(self.free_bonds) + len(self.angle_triples) + len(self.dihedral_quads)

    @property
    def periodic(self) -> list[bool]:
        """Which coordinates are angles with period 2π (the dihedrals)."""
        return [False] * (len(self.free_bonds) + len(self.angle_triples)) + [True] * len(self.dihedral_quads)

    def feature(self) -> Feature:
        """The coordinates as a TorchScript-able feature of positions [B, n_atoms, 3] (nm) → [B, n_coordinates]."""
        parts: list[Feature] = []
        if self.free_bonds:
            parts.append(PairwiseDistances(pairs=[self.bond_pairs[k] for k in self.free_bonds]))
        parts.append(Angles(self.angle_triples))
        parts.append(Dihedrals(self.dihedral_quads))
        return Concatenate(parts)

    def from_trajectory(self, trajectory) -> np.ndarray:
        """Coordinates [frames, n_coordinates] of an mdtraj trajectory, computed by mdtraj."""
        import mdtraj

        parts = []
        if self.free_bonds:
            parts.append(mdtraj.compute_distances(trajectory, [self.bond_pairs[k] for k in self.free_bonds],
                                                  periodic=False))
        parts.append(mdtraj.compute_angles(trajectory, self.angle_triples, periodic=False))
        parts.append(mdtraj.compute_dihedrals(trajectory, self.dihedral_quads, periodic=False))
        return np.concatenate(parts, axis=1)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Full bond lengths (constraints restored), angles and dihedrals of coordinates x [B, n_coordinates]."""
        n_free, n_angles = len(self.free_bonds), len(self.angle_triples)
        bonds = torch.tensor([length or 0.0 for length in self.fixed_length], dtype=x.dtype, device=x.device)
        bonds = bonds.expand(*x.shape[:-1], -1).clone()
        bonds[..., self.free_bonds] = x[..., :n_free]
        return bonds, x[..., n_free:n_free + n_angles], x[..., n_free + n_angles:]

    def to_cartesian(self, x: Tensor) -> Tensor:
        """Positions [B, n_atoms, 3] (nm) of coordinates x [B, n_coordinates], in a frame fixed by the first
        three atoms placed (root at the origin, second atom on +x, third in the xy-plane)."""
        if x.shape[-1] != self.n_coordinates:
            raise ValueError(f"expected {self.n_coordinates} internal coordinates, got {x.shape[-1]}")
        bonds, angles, torsions = self._split(x)
        batch = x.shape[:-1]
        xyz: list[Optional[Tensor]] = [None] * self.n_atoms
        xyz[self.order[0]] = torch.zeros(*batch, 3, dtype=x.dtype, device=x.device)
        a, t = 0, 0
        for k, (atom, p, g, h) in enumerate(self.refs):
            if g < 0:  # second atom: on the x axis
                xyz[atom] = xyz[p] + bonds[..., k, None] * torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype)
            elif h < 0:  # third atom: in the xy-plane, with a virtual h on the +y side
                virtual = xyz[g] + torch.tensor([0.0, 1.0, 0.0], dtype=x.dtype)
                xyz[atom] = _place(xyz[p], xyz[g], virtual, bonds[..., k], angles[..., a],
                                   torch.zeros_like(angles[..., a]))
                a += 1
            else:
                xyz[atom] = _place(xyz[p], xyz[g], xyz[h], bonds[..., k], angles[..., a], torsions[..., t])
                a, t = a + 1, t + 1
        return torch.stack(xyz, dim=-2)

    def log_jacobian(self, x: Tensor) -> Tensor:
        """log|det ∂(Cartesian)/∂(external, x)| = Σ 2 log b + Σ log sin θ [B] (NaN for angles outside (0, π))."""
        bonds, angles, _ = self._split(x)
        return 2 * torch.log(bonds).sum(-1) + torch.log(torch.sin(angles)).sum(-1)
