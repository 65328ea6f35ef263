"""Data for the 2D experiments: a grid sampler of exp(−u), the Beltway potential, polar observations.

Beltway (defined here; not in cvplug.systems): two concentric rings ("lanes") of radius 1 and 2 joined by a
radial barrier, flat in the angle,
    u(x, y) = ((r − 1.5)² − 0.25)² / 0.02,   r = √(x² + y²)   (reduced units, kT = 1).
Each lane is a Gaussian-like channel of width ≈ 0.1; the barrier at r = 1.5 is 3.1 kT; the outer lane holds
about 2/3 of the probability (the Cartesian density carries the factor r).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["grid_sample", "beltway_u", "BELTWAY_BOUNDS", "PolarCoordinates", "polar_reduced_energy"]

BELTWAY_BOUNDS = ((-2.8, -2.8), (2.8, 2.8))


def beltway_u(x: Tensor) -> Tensor:
    """Beltway reduced energy [B] of Cartesian points x [B, 2] (see the module docstring)."""
    r = torch.linalg.vector_norm(x, dim=-1)
    return ((r - 1.5) ** 2 - 0.25) ** 2 / 0.02


def grid_sample(u: Callable[[Tensor], Tensor], lower: Sequence[float], upper: Sequence[float], n: int,
                spacing: float = 0.005, seed: int = 0) -> Tensor:
    """n independent draws [n, dim] from p ∝ exp(−u) restricted to the box [lower, upper].

    Exact up to the grid: cells of width ``spacing`` are chosen with probability ∝ exp(−u(centre)) and a point
    is drawn uniformly inside the chosen cell. Choose the box so that exp(−u) is negligible outside it.
    """
    lower, upper = torch.as_tensor(lower, dtype=torch.float64), torch.as_tensor(upper, dtype=torch.float64)
    if lower.shape != upper.shape or lower.dim() != 1 or not bool((upper > lower).all()) or spacing <= 0:
        raise ValueError(f"need lower < upper (same length) and spacing > 0, got {lower}, {upper}, {spacing}")
    axes = [torch.arange(lo + spacing / 2, hi, spacing, dtype=torch.float64) for lo, hi in zip(lower, upper)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))
    with torch.no_grad():
        log_p = -torch.cat([u(chunk) for chunk in centres.split(1 << 16)]).double()
    generator = torch.Generator().manual_seed(seed)
    cells = torch.multinomial(torch.softmax(log_p, dim=0), n, replacement=True, generator=generator)
    jitter = (torch.rand(n, len(axes), generator=generator, dtype=torch.float64) - 0.5) * spacing
    return (centres[cells] + jitter).to(torch.get_default_dtype())


class PolarCoordinates(nn.Module):
    """(x, y) [B, 2] → (r, θ) [B, 2], r in the units of x, θ in radians (−π, π]; TorchScript-able."""

    def forward(self, x: Tensor) -> Tensor:
        """(r, θ) [B, 2] of (x, y) [B, 2]."""
        return torch.stack([torch.linalg.vector_norm(x, dim=-1), torch.atan2(x[..., 1], x[..., 0])], dim=-1)


def polar_reduced_energy(u: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """u in polar coordinates: u(r cos θ, r sin θ) − log r, +inf for r ≤ 0 (the density of (r, θ))."""

    def reduced(polar: Tensor) -> Tensor:
        r, theta = polar[..., 0], polar[..., 1]
        cartesian = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)
        return torch.where(r > 0, u(cartesian) - torch.log(r.clamp(min=1e-300)), math.inf)

    return reduced
