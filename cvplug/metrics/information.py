"""Mutual information between learned and known coordinates (Kraskov–Stögbauer–Grassberger kNN estimator).

The estimate comes from scikit-learn's ``mutual_info_regression``: the KSG estimator (Kraskov, Stögbauer &
Grassberger, PRE 69, 066138, 2004, algorithm 1) with the max-norm, after scaling both variables to unit variance.
Angles are periodic but the estimator is not: we move an angle's branch cut to its least populated bin first
(a bijection of the circle, so the mutual information is unchanged and few neighbourhoods straddle the cut).
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

__all__ = ["mutual_information", "mutual_information_table", "cut_at_emptiest"]


def cut_at_emptiest(angle: np.ndarray, bins: int = 36) -> np.ndarray:
    """The angle (radians) re-expressed in [c, c + 2π) with the cut c at the centre of its emptiest bin."""
    angle = np.mod(np.asarray(angle, float), 2 * np.pi)
    counts, edges = np.histogram(angle, bins=bins, range=(0, 2 * np.pi))
    cut = 0.5 * (edges[np.argmin(counts)] + edges[np.argmin(counts) + 1])
    return cut + np.mod(angle - cut, 2 * np.pi)


def mutual_information(x: np.ndarray, y: np.ndarray, periodic_y: bool = False, n_neighbors: int = 3,
                       seed: int = 0) -> float:
    """I(x; y) in nats between two scalar samples [N] (KSG, ``n_neighbors`` neighbours).

    ``periodic_y``: y is an angle in radians (its branch cut is moved to the emptiest bin first).
    """
    from sklearn.feature_selection import mutual_info_regression

    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape or len(x) <= n_neighbors:
        raise ValueError(f"x and y need the same number of samples (> n_neighbors = {n_neighbors}), got "
                         f"{len(x)} and {len(y)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if periodic_y:
        y = cut_at_emptiest(y)
    return float(mutual_info_regression(x[:, None], y, n_neighbors=n_neighbors, random_state=seed)[0])


def mutual_information_table(latent: np.ndarray, references: Mapping[str, np.ndarray],
                             periodic: Optional[Mapping[str, bool]] = None, n_neighbors: int = 3,
                             seed: int = 0) -> dict[str, np.ndarray]:
    """I(latent_k; reference) in nats for every column k of ``latent`` [N, d] and every named reference [N].

    ``periodic`` marks angle references (default: all periodic). Returns {name: array [d]}.
    """
    latent = np.asarray(latent, float)
    if latent.ndim != 2:
        raise ValueError(f"latent must be [samples, components], got shape {latent.shape}")
    periodic = periodic or {name: True for name in references}
    return {name: np.array([mutual_information(latent[:, k], values, periodic_y=periodic.get(name, False),
                                               n_neighbors=n_neighbors, seed=seed)
                            for k in range(latent.shape[1])])
            for name, values in references.items()}
