"""Internal coordinates of a molecule (bonds, angles, torsions), made unbounded: the model coordinates in which a
torsion is one number.

Atoms are placed in breadth-first order over the bond graph from a ``root`` atom (heavy atoms before hydrogens).
Every atom ``a`` after the first has a bond partner ``p`` (its parent), every atom after the second an angle
partner ``q`` and every atom after the third a torsion partner ``r``; ``a`` is placed from (p, q, r) with its
bond length b = |a − p|, angle θ = ∠(a, p, q) and torsion τ = dihedral(r, q, p, a) (the natural extension of
reference frame, NeRF). Where p already carries a placed substituent, that substituent is r, so the torsions of
the second and third substituents of an atom are stiff offsets from the first: rotating a group changes one
torsion. Backbone torsions such as φ and ψ of alanine dipeptide become single coordinates.

The coordinates are unbounded, so a Gaussian model has no mass outside the physical domain:

    y = [log(b / nm) of n − 1 bonds, logit(θ / π) of n − 2 angles, τ (rad, periodic) of n − 3 torsions].

Given a ``reference`` structure, the improper torsions (r bonded to p) are bounded instead, to within ±60° of their
reference value: y = artanh((τ − τ_ref) / (π/3)). A tetrahedral centre's impropers sit near ±120°, so they never
reach 0° or 180°, where the centre would turn planar and then invert. That keeps the reference's chirality: a force
field without improper terms at sp3 centres gives a molecule and its mirror image the same energy (D- and
L-alanine), and a model spread wide at small β would otherwise land in either.

Rigid-body motion is gone (3n − 6 numbers). The Boltzmann density of y carries the Jacobian of the map from
Cartesians (:meth:`InternalCoordinates.log_jacobian`): b² for every bond, sin θ for every angle (spherical
coordinates), times b per bond and π σ(y)(1 − σ(y)) per angle for the unbounded transforms.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Optional, Sequence

import torch
from torch import Tensor

from cvplug.features import Feature, dihedral_angles

from .model import wrap

__all__ = ["placement_order", "InternalCoordinates", "BOND_SCALE", "ANGLE_SCALE", "TORSION_SCALE"]

BOUND = math.pi / 3   # rad: half-width of the bounded torsions' range

BOND_SCALE, ANGLE_SCALE, TORSION_SCALE = 0.1, 0.3, math.pi
"""The networks' units of log-bond, logit-angle and torsion coordinates (:attr:`InternalCoordinates.scale`); a
fresh model starts with σθ = 0.1 × these."""


def placement_order(n_atoms: int, bonds: Sequence[tuple[int, int]], root: int,
                    hydrogens: Sequence[int] = ()) -> list[tuple[int, int, int, int]]:
    """(atom, p, q, r) for every atom in placement order (−1 where the atom has no such partner).

    ``bonds``: the molecule's bonds (atom index pairs); it must be connected. ``root`` is placed first; its first
    neighbour must have another neighbour or the root a second one. ``hydrogens``: atoms placed after the heavy
    atoms of the same parent.
    """
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        neighbours[i].append(j)
        neighbours[j].append(i)
    light = set(hydrogens)
    for row in neighbours:
        row.sort(key=lambda k: (k in light, k))
    parent, order, queue = {root: -1}, [root], deque([root])
    while queue:
        atom = queue.popleft()
        for k in neighbours[atom]:
            if k not in parent:
                parent[k] = atom
                order.append(k)
                queue.append(k)
    if len(order) != n_atoms or n_atoms < 3:
        raise ValueError(f"the bond graph must connect all {n_atoms} atoms (at least 3); it reaches {len(order)}")
    placed: set[int] = set()
    rows = []
    for atom in order:
        p = parent[atom]
        q = r = -1
        if p >= 0:
            q = parent[p] if parent[p] >= 0 else next((k for k in order if k in placed and k != p), -1)
        if q >= 0 and len(placed) >= 3:
            siblings = [k for k in neighbours[p] if k in placed and k != q]
            if siblings:
                r = siblings[0]
            else:
                r = parent[q] if parent[q] >= 0 else next((k for k in neighbours[q] if k in placed and k != p), -1)
            if r < 0:
                raise ValueError(f"no torsion partner for atom {atom} (placed from {p}, {q}); choose another root")
        rows.append((atom, p, q, r))
        placed.add(atom)
    return rows


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


class InternalCoordinates(Feature):
    """Positions [B, n_atoms, 3] (nm) → unbounded internal coordinates y [B, 3 n_atoms − 6] (module docstring).

    Parameters
    ----------
    n_atoms : atoms of the molecule (all are used).
    bonds : atom index pairs of the bond graph (e.g. ``[(b.atom1.index, b.atom2.index) for b in top.bonds()]``).
    root : the atom placed first (a central heavy atom keeps the chains of placements short).
    hydrogens : hydrogen atom indices (placed after heavy atoms on the same parent).
    reference : positions [n_atoms, 3] (nm) whose chirality is kept: improper torsions bounded to ±60° of theirs.
    """

    def __init__(self, n_atoms: int, bonds: Sequence[tuple[int, int]], root: int, hydrogens: Sequence[int] = (),
                 reference: Optional[Tensor] = None):
        rows = placement_order(n_atoms, bonds, root, hydrogens)
        super().__init__(range(n_atoms), 3 * n_atoms - 6)
        self.rows = rows
        table = torch.tensor(rows, dtype=torch.long)
        self.register_buffer("bonded", table[1:, :2].clone())          # (a, p) of n − 1 bonds
        self.register_buffer("angled", table[2:, :3].clone())          # (a, p, q) of n − 2 angles
        self.register_buffer("twisted", table[3:].clone())             # (a, p, q, r) of n − 3 torsions
        n_bonds, n_angles = n_atoms - 1, n_atoms - 2
        self.n_bonds, self.n_angles = n_bonds, n_angles
        bonded = {frozenset(pair) for pair in bonds}
        improper = torch.tensor([frozenset((p, r)) in bonded for _, p, _, r in rows[3:]])
        self.register_buffer("bounded", improper & (reference is not None))
        self.register_buffer("centre", torch.zeros(n_atoms - 3))
        if reference is not None:
            reference = torch.as_tensor(reference, dtype=torch.get_default_dtype())[None]
            self.centre = self._torsions(reference)[0] * self.bounded
        self.register_buffer("periodic", torch.cat([torch.zeros(n_bonds + n_angles, dtype=torch.bool),
                                                    ~self.bounded]))
        self.register_buffer("scale", torch.cat([torch.full((n_bonds,), BOND_SCALE),
                                                 torch.full((n_angles,), ANGLE_SCALE),
                                                 torch.where(self.bounded, ANGLE_SCALE, TORSION_SCALE)]))

    def _torsions(self, positions: Tensor) -> Tensor:
        t = [positions.index_select(-2, self.twisted[:, k]) for k in range(4)]
        return dihedral_angles(t[3], t[2], t[1], t[0])

    def forward(self, positions: Tensor) -> Tensor:
        b = [positions.index_select(-2, self.bonded[:, k]) for k in range(2)]
        bonds = torch.linalg.vector_norm(b[0] - b[1], dim=-1)
        a = [positions.index_select(-2, self.angled[:, k]) for k in range(3)]
        cosine = (_unit(a[0] - a[1]) * _unit(a[2] - a[1])).sum(-1).clamp(-1.0, 1.0)
        angles = torch.acos(cosine) / math.pi
        torsions = self._torsions(positions)
        # outside the bound (|τ − τ_ref| ≥ π/3) reads as artanh(±(1 − 1e-6)); literals for TorchScript
        ratio = (wrap(torsions - self.centre) / (math.pi / 3)).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        torsions = torch.where(self.bounded, torch.atanh(ratio), torsions)
        return torch.cat([torch.log(bonds), torch.logit(angles), torsions], dim=-1)

    def split(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Bond lengths (nm), angles (rad) and torsions (rad) of coordinates y [B, 3n − 6]."""
        bonds = torch.exp(y[:, : self.n_bonds])
        angles = math.pi * torch.sigmoid(y[:, self.n_bonds:self.n_bonds + self.n_angles])
        torsions = y[:, self.n_bonds + self.n_angles:]
        return bonds, angles, torch.where(self.bounded, self.centre + BOUND * torch.tanh(torsions), torsions)

    def embed(self, y: Tensor) -> Tensor:
        """Coordinates y [B, 3n − 6] → positions [B, n, 3] (nm): root at 0, its first neighbour on +x, the third
        atom in the xy plane (y > 0)."""
        bonds, angles, torsions = self.split(y)
        zero = y.new_zeros(len(y))
        placed: dict[int, Tensor] = {}
        for k, (atom, p, q, r) in enumerate(self.rows):
            if p < 0:
                placed[atom] = torch.stack([zero, zero, zero], -1)
            elif q < 0:
                placed[atom] = torch.stack([bonds[:, 0], zero, zero], -1)
            elif r < 0:   # in the xy plane; q − p points along +x when p is the root, along −x otherwise
                along = torch.cos(angles[:, 0]) * (1.0 if p == self.rows[0][0] else -1.0)
                placed[atom] = placed[p] + bonds[:, 1, None] * torch.stack([along, torch.sin(angles[:, 0]), zero], -1)
            else:
                placed[atom] = _place(placed[r], placed[q], placed[p], bonds[:, k - 1], angles[:, k - 2],
                                      torsions[:, k - 3])
        return torch.stack([placed[i] for i in range(len(self.rows))], 1)

    def log_jacobian(self, y: Tensor) -> Tensor:
        """log |∂(Cartesians mod rigid motion)/∂y| [B] = Σ 3 log b + Σ [log sin θ + log(π σ(1 − σ))]
        + Σ_bounded log(π/3 (1 − tanh² y))."""
        log_b = y[:, : self.n_bonds]
        s = y[:, self.n_bonds:self.n_bonds + self.n_angles]
        angles = math.pi * torch.sigmoid(s)
        t = y[:, self.n_bonds + self.n_angles:]
        log_sech2 = 2 * (t + math.log(2.0) - torch.nn.functional.softplus(2 * t))
        return (3 * log_b).sum(-1) + (torch.log(torch.sin(angles)) + math.log(math.pi)
                                       + torch.nn.functional.logsigmoid(s)
                                       + torch.nn.functional.logsigmoid(-s)).sum(-1) \
            + torch.where(self.bounded, log_sech2 + math.log(BOUND), torch.zeros_like(t)).sum(-1)

    def describe(self) -> dict:
        return {"type": "internal_coordinates", "placement": [list(row) for row in self.rows],
                "bounded_torsions": self.bounded.tolist(), "bound_centres": self.centre.tolist(),
                "units": "log nm (bonds), logit of angle/π (angles), rad (torsions), "
                         "artanh of (torsion − centre)/(π/3) (bounded torsions)"}


def _place(r: Tensor, q: Tensor, p: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor) -> Tensor:
    """The atom a [B, 3] with |a − p| = bond, ∠(a, p, q) = angle and dihedral(r, q, p, a) = torsion (NeRF)."""
    axis = _unit(p - q)
    normal = _unit(torch.linalg.cross(q - r, axis))
    in_plane = torch.linalg.cross(normal, axis)
    along, across = -torch.cos(angle), torch.sin(angle)
    return p + bond[:, None] * (along[:, None] * axis + (across * torch.cos(torsion))[:, None] * in_plane
                                + (across * torch.sin(torsion))[:, None] * normal)
