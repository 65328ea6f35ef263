"""Mass-weighted coordinates: the fixed linear map between CV features (nm) and the flow's input.

z = Bᵀ √m (x − x̄): centred and mass-weighted (√amu·nm, so the kinetic energy is |p_z|²/2 with p_z = Bᵀ p/√m),
then projected onto an orthonormal basis B of the directions the features can move in. Linear constraints
c·x = 0 on the features are removed: Kabsch-aligned Cartesians obey six (centroid at 0, and the Eckart
condition Σ x_i × r_i = 0 towards the reference r), and no density exists along them. B is orthonormal, so the
map is a canonical (point) transformation of the kept subspace and frequencies keep their meaning (1/ps).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["MassWeighting"]


class MassWeighting(nn.Module):
    """z = (√m ⊙ (x − mean)) @ basis; buffers only, so it scripts and exports with the CV.

    Parameters
    ----------
    mean : [n] reference point of the features (nm); it should satisfy the constraints.
    masses : [n] mass of the particle each feature component belongs to (amu).
    constraints : [k, n] rows c of linear constraints c·x = 0 the features obey (default none).
    """

    def __init__(self, mean: Tensor, masses: Tensor, constraints: Optional[Tensor] = None):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        masses = torch.as_tensor(masses, dtype=torch.float64).flatten()
        n = mean.numel()
        if masses.numel() != n:
            raise ValueError(f"mean and masses must have the same length, got {n} and {masses.numel()}")
        if not bool((masses > 0).all()):
            raise ValueError("masses must be positive (amu); massless virtual sites cannot be NCT coordinates")
        basis = torch.eye(n, dtype=torch.float64)
        if constraints is not None:
            constraints = torch.as_tensor(constraints, dtype=torch.float64).reshape(-1, n)
            # c·x = 0  ⇔  (c/√m)·y = 0 for y = √m x: keep the orthogonal complement of the c/√m
            q, r = torch.linalg.qr((constraints / masses.sqrt()).T, mode="complete")
            rank = int((r.diagonal().abs() > 1e-10 * r.diagonal().abs().max()).sum())
            basis = q[:, rank:]
        dtype = torch.get_default_dtype()
        self.register_buffer("mean", mean.to(dtype))
        self.register_buffer("sqrt_masses", masses.sqrt().to(dtype))
        self.register_buffer("basis", basis.to(dtype))

    @property
    def dim(self) -> int:
        """Number of coordinates d (features minus independent constraints)."""
        return self.basis.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        """Mass-weighted coordinates z [B, d] (√amu·nm) of features x [B, n] (nm)."""
        return ((x - self.mean) * self.sqrt_masses) @ self.basis

    def inverse(self, z: Tensor) -> Tensor:
        """Features x (nm) of coordinates z; the constrained directions are those of the mean."""
        return self.mean + (z @ self.basis.T) / self.sqrt_masses

    def check_spread(self, x: Tensor, tolerance: float = 1e-10) -> None:
        """Raise ValueError if feature samples [N, n] do not move along some kept direction (no density there)."""
        z = self(torch.as_tensor(x, dtype=self.mean.dtype)).double()
        variances = torch.linalg.eigvalsh(torch.cov(z.T).reshape(self.dim, self.dim))
        if bool(variances[0] <= tolerance * variances[-1]):
            raise ValueError(f"the features do not vary along {int((variances <= tolerance * variances[-1]).sum())} "
                             "mass-weighted direction(s): they obey constraints the NCT was not told about (pass "
                             "them as constraints=, or choose independent features)")
