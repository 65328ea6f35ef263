"""The known answer of the harmonic chain, and how close a trained NCT comes to it.

Helpers of ``harmonic_chain.py`` (not installed with cvplug). The chain's normal modes also appear, written out,
in ``tests/plugins/nct``.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

from cvplug.plugins.nct import NCTModel

__all__ = ["chain_normal_modes", "mode_cosines"]


def chain_normal_modes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies ω_k = 2 sin(πk/(2n+2)) (slowest first, unit masses and springs) and orthonormal normal modes
    [n, n] (row k: sin(πk i/(n+1)), i = 1…n, normalised) of the chain of n beads with fixed ends."""
    k = np.arange(1, n + 1)
    frequencies = 2 * np.sin(np.pi * k / (2 * n + 2))
    modes = np.sqrt(2 / (n + 1)) * np.sin(np.pi * np.outer(k, k) / (n + 1))
    return frequencies, modes


def mode_cosines(model: NCTModel, x: Tensor, modes: np.ndarray) -> np.ndarray:
    """|cos| between the Jacobian rows ∂Q_k/∂x of the slowest latent coordinates (slowest first) and the rows of
    ``modes`` [m, n] (slowest first), averaged over the samples x [B, n]; returns [m]."""
    rows = model.latent_jacobian(x)[:, model.slow_order()[: len(modes)]].double().numpy()   # [B, m, n]
    cosines = np.abs((rows * modes[None]).sum(-1)) / (np.linalg.norm(rows, axis=-1) * np.linalg.norm(modes, axis=-1))
    return cosines.mean(axis=0)
