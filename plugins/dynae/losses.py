"""Losses of DynAE and its baselines: sliced-Wasserstein distance, Gaussian KL, reconstruction."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["sliced_wasserstein", "kl_to_standard_normal", "reconstruction"]


def sliced_wasserstein(a: Tensor, b: Tensor, n_directions: int = 50,
                       generator: Optional[torch.Generator] = None, directions: Optional[Tensor] = None) -> Tensor:
    """Squared sliced-Wasserstein-2 distance between two equally sized samples, averaged over groups.

    ``a`` and ``b`` are [n, d] or [groups, n, d] (one group per latent bin, DynAE eq. 11). Both are projected on
    ``n_directions`` random unit vectors (or the given ``directions`` [L, d]); the projections are sorted, which
    solves 1D optimal transport, and the squared differences averaged over samples, directions and groups:
    SW² = E_θ W₂²(θ·a, θ·b). Zero for identical samples; in 1D it is the W₂² of the empirical distributions.
    """
    if a.shape != b.shape or a.dim() not in (2, 3):
        raise ValueError(f"a and b must both be [n, d] or [groups, n, d] of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if directions is None:
        if n_directions < 1:
            raise ValueError(f"n_directions must be positive, got {n_directions}")
        directions = torch.randn(n_directions, a.shape[-1], generator=generator).to(a)
        directions = directions / directions.norm(dim=1, keepdim=True)
    projected_a = torch.sort(directions @ a.transpose(-1, -2), dim=-1).values  # [(groups,) L, n], sorted
    projected_b = torch.sort(directions @ b.transpose(-1, -2), dim=-1).values
    return (projected_a - projected_b).pow(2).mean()


def kl_to_standard_normal(mean: Tensor, log_variance: Tensor) -> Tensor:
    """KL(N(mean, diag exp(log_variance)) ‖ N(0, I)) summed over latent dimensions, averaged over the batch."""
    return 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).sum(dim=-1).mean()


def reconstruction(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error over samples and (normalised) features."""
    return (x_hat - x).pow(2).mean()
