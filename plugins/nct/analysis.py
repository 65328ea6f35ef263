"""Checks of a trained NCT against known answers: harmonic-chain normal modes, Jacobian rows, unfolded angles."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .model import NCTModel

__all__ = ["chain_normal_modes", "jacobian_rows", "mode_cosines", "unwrapped_angle_correlation"]


def chain_normal_modes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies ω_k = 2 sin(πk/(2n+2)) (slowest first, unit masses and springs) and orthonormal normal modes
    [n, n] (row k: sin(πk i/(n+1)), i = 1…n, normalised) of the chain of n beads with fixed ends."""
    k = np.arange(1, n + 1)
    frequencies = 2 * np.sin(np.pi * k / (2 * n + 2))
    modes = np.sqrt(2 / (n + 1)) * np.sin(np.pi * np.outer(k, k) / (n + 1))
    return frequencies, modes


def jacobian_rows(model: NCTModel, x: Tensor) -> Tensor:
    """∂Q/∂x of the latent coordinates with respect to the features at samples x [B, n]: [B, d, n]."""
    def latent(sample: Tensor) -> Tensor:
        return model.latent_coordinates(sample.unsqueeze(0)).squeeze(0)

    with torch.enable_grad():
        return torch.func.vmap(torch.func.jacrev(latent))(x).detach()


def mode_cosines(model: NCTModel, x: Tensor, modes: np.ndarray) -> np.ndarray:
    """|cos| between the Jacobian rows ∂Q_k/∂x of the slowest latent coordinates (slowest first) and the rows of
    ``modes`` [m, n] (slowest first), averaged over the samples x [B, n]; returns [m]."""
    rows = jacobian_rows(model, x)[:, model.slow_order()[: len(modes)]].double().numpy()   # [B, m, n]
    cosines = np.abs((rows * modes[None]).sum(-1)) / (np.linalg.norm(rows, axis=-1) * np.linalg.norm(modes, axis=-1))
    return cosines.mean(axis=0)


def unwrapped_angle_correlation(angle: np.ndarray, x: np.ndarray, cuts: int = 360) -> tuple[float, float]:
    """max over branch cuts c of |Pearson(x, angle unwrapped to (c − 2π, c])|, and that c (radians).

    A coordinate that follows an angle around the circle and jumps back at one place (an unfolded angle) scores
    ≈ 1 here; Mardia's circular-linear correlation cannot exceed ≈ 0.78 for it (uniform angle, linear ramp).
    """
    angle, x = np.asarray(angle, float).ravel(), np.asarray(x, float).ravel()

    def best_of(candidates):
        return max((abs(float(np.corrcoef(x, c - np.mod(c - angle, 2 * np.pi))[0, 1])), float(c)) for c in candidates)

    step = 2 * np.pi / cuts
    _, coarse = best_of(np.linspace(-np.pi, np.pi, cuts, endpoint=False))
    return best_of(np.linspace(coarse - step, coarse + step, 101))
