"""Fixed observation maps placed after a feature, so that the exported CV sees what the trainer saw.

The DynAE three-well experiment observes the 2D particle through (x, y) → (x, y + x²): the encoder must undo a
nonlinear distortion to recover coordinates with isotropic diffusion.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cvplug.features import Feature

__all__ = ["Observed", "ParabolicWarp"]


class ParabolicWarp(nn.Module):
    """(x, y) → (x, y + a·x²) applied to the first two columns of [batch, 2]."""

    def __init__(self, a: float = 1.0):
        super().__init__()
        self.a = float(a)

    def forward(self, xy: Tensor) -> Tensor:
        """(x, y + a·x²) [batch, 2] of ``xy`` [batch, 2] (units of the input)."""
        x, y = xy[:, 0], xy[:, 1]
        return torch.stack([x, y + self.a * x * x], dim=1)

    def describe(self) -> str:
        """The map as text, stored in the CV's metadata."""
        return f"(x, y) -> (x, y + {self.a} x^2)"


class Observed(Feature):
    """``transform(inner(positions))``: a feature seen through a fixed differentiable map.

    ``transform`` maps [batch, inner.n_out] → [batch, n_out] and needs a ``describe()`` string; ``n_out``
    defaults to ``inner.n_out``.
    """

    def __init__(self, inner: Feature, transform: nn.Module, n_out: int | None = None):
        super().__init__(inner.atoms.tolist(), inner.n_out if n_out is None else n_out)
        self.inner, self.transform = inner, transform

    def forward(self, positions: Tensor) -> Tensor:
        """The transformed feature [batch, n_out] of positions [batch, n_atoms, 3] (nm)."""
        return self.transform(self.inner(positions))

    def describe(self) -> dict:
        """JSON-able description: the inner feature's and the map's."""
        return {"type": "observed", "inner": self.inner.describe(), "map": self.transform.describe()}
