"""How close a learned latent is to a known coordinate up to a rigid motion (and optionally a global scale).

The isometry-corrected mean squared error of Wang, Wang, Evans & Tiwary, "From Latent Dynamics to Meaningful
Representations", J. Chem. Theory Comput. 20, 3503 (2024), eq. 9:

    L_z = min over orthogonal Q and shift b of  E ‖Q z + b − z_true‖²,

solved exactly by orthogonal Procrustes on the centred samples (reflections allowed: Q is any orthogonal matrix).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes

__all__ = ["isometry_mse"]


def isometry_mse(z: np.ndarray, z_true: np.ndarray, scale: bool = False, relative: bool = False) -> float:
    """E‖s Q z + b − z_true‖² minimised over orthogonal Q, shift b and (if ``scale``) one global factor s > 0.

    ``z`` and ``z_true`` are [n_samples, d] with the same d (any units; the result is in the units of
    ``z_true`` squared). With ``relative`` the error is divided by the variance E‖z_true − E z_true‖², so
    0 means recovery up to the allowed transformation and 1 means no information (``scale`` then lets the
    fit shrink z to its mean). The issue's "relative L_z" is ``isometry_mse(z, z_true, scale=True,
    relative=True)``.

    >>> t = np.random.default_rng(0).normal(size=(100, 2))
    >>> rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    >>> round(isometry_mse(3.0 * t @ rot + 5.0, t, scale=True, relative=True), 12)
    0.0
    """
    z, z_true = np.asarray(z, dtype=float), np.asarray(z_true, dtype=float)
    if z.ndim != 2 or z_true.ndim != 2 or z.shape != z_true.shape:
        raise ValueError(f"z and z_true must be [n_samples, d] of the same shape, got {z.shape} and "
                         f"{z_true.shape}")
    if len(z) < 2:
        raise ValueError("isometry_mse needs at least two samples")
    if not (np.isfinite(z).all() and np.isfinite(z_true).all()):
        raise ValueError("z and z_true must be finite")
    centred, target = z - z.mean(axis=0), z_true - z_true.mean(axis=0)
    _, singular_sum = orthogonal_procrustes(centred, target)  # max over Q of tr(Qᵀ centredᵀ target)
    norm_z, norm_t = float((centred**2).sum()), float((target**2).sum())
    if scale:
        residual = norm_t - (singular_sum**2 / norm_z if norm_z > 0 else 0.0)
    else:
        residual = norm_z + norm_t - 2.0 * singular_sum
    residual = max(residual, 0.0) / len(z)
    if relative:
        if norm_t == 0:
            raise ValueError("z_true is constant: the relative error is undefined")
        return residual / (norm_t / len(z))
    return residual
