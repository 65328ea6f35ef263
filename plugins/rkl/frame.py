"""Rigid-body motion removed by a body-fixed frame: the 3n − 6 internal-frame Cartesians of a molecule.

Three atoms fix the frame, as in the paper (which removes the six rigid-body degrees of freedom by fixing atoms):
the ``origin`` atom sits at 0, the ``axis`` atom on the positive x axis and the ``plane`` atom in the xy plane
with y > 0. The remaining coordinates are

    x = [x_axis, x_plane, y_plane, (x, y, z) of every other atom in index order]   (nm, 3n − 6 numbers).

The Boltzmann density of these coordinates carries the Jacobian of the map from Cartesians (translations ×
rotations × frame coordinates): p(x) ∝ exp(−U/kT) · x_axis² · |y_plane| (:func:`log_jacobian`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from cvplug.features import Feature

__all__ = ["RigidFrame"]


class RigidFrame(Feature):
    """Positions [B, n_atoms, 3] (nm) → internal-frame coordinates [B, 3 n_atoms − 6] (nm); see the module docstring.

    Parameters
    ----------
    n_atoms : atoms of the molecule (all are used).
    origin, axis, plane : the three atoms (indices) that fix the frame; they must not be collinear.
    """

    def __init__(self, n_atoms: int, origin: int, axis: int, plane: int):
        frame = (int(origin), int(axis), int(plane))
        if n_atoms < 3 or len(set(frame)) != 3 or min(frame) < 0 or max(frame) >= n_atoms:
            raise ValueError(f"the frame needs three different atoms among {n_atoms} (n_atoms ≥ 3), got {frame}")
        super().__init__(range(n_atoms), 3 * n_atoms - 6)
        self.origin, self.axis, self.plane = frame
        self.register_buffer("others", torch.tensor([i for i in range(n_atoms) if i not in frame], dtype=torch.long))

    def forward(self, positions: Tensor) -> Tensor:
        coords = positions - positions[:, self.origin:self.origin + 1]
        e1 = coords[:, self.axis]
        e1 = e1 / torch.linalg.vector_norm(e1, dim=-1, keepdim=True).clamp_min(1e-12)
        c = coords[:, self.plane]
        e2 = c - (c * e1).sum(-1, keepdim=True) * e1
        e2 = e2 / torch.linalg.vector_norm(e2, dim=-1, keepdim=True).clamp_min(1e-12)
        local = coords @ torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)   # [B, n, 3]
        return torch.cat([local[:, self.axis, :1], local[:, self.plane, :2],
                          local.index_select(1, self.others).flatten(1)], dim=1)

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        """Internal-frame coordinates [B, 3n − 6] → positions [B, n, 3] (nm) in the body-fixed frame."""
        positions = x.new_zeros(x.shape[0], self.atoms.numel(), 3)
        positions[:, self.axis, 0] = x[:, 0]
        positions[:, self.plane, :2] = x[:, 1:3]
        positions[:, self.others] = x[:, 3:].reshape(x.shape[0], -1, 3)
        return positions

    @staticmethod
    def log_jacobian(x: Tensor) -> Tensor:
        """log(x_axis² |y_plane|) [B]: the log density of the rigid-body orbit through each configuration."""
        return 2 * torch.log(x[:, 0].abs()) + torch.log(x[:, 2].abs())

    def describe(self) -> dict:
        return {"type": "rigid_frame", "n_atoms": int(self.atoms.numel()), "origin": self.origin,
                "axis": self.axis, "plane": self.plane, "units": "nm"}
