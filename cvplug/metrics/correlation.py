"""How well a learned coordinate tracks a known one (angles included)."""
from __future__ import annotations

import numpy as np

__all__ = ["circular_linear_correlation", "unwrapped_angle_correlation", "knn_r2"]


def circular_linear_correlation(angle: np.ndarray, x: np.ndarray) -> float:
    """Mardia's circular-linear correlation in [0, 1] between an angle (radians) and a linear variable.

    R² = (r_xc² + r_xs² − 2 r_xc r_xs r_cs) / (1 − r_cs²), with r the Pearson correlations of x, cos θ, sin θ;
    returns R. It is 1 when x = a cos(θ − θ0) + b exactly.
    """
    angle, x = np.asarray(angle, float).ravel(), np.asarray(x, float).ravel()
    c, s = np.cos(angle), np.sin(angle)
    r_xc, r_xs, r_cs = np.corrcoef(x, c)[0, 1], np.corrcoef(x, s)[0, 1], np.corrcoef(c, s)[0, 1]
    r2 = (r_xc**2 + r_xs**2 - 2 * r_xc * r_xs * r_cs) / (1 - r_cs**2)
    return float(np.sqrt(np.clip(r2, 0.0, 1.0)))


def unwrapped_angle_correlation(angle: np.ndarray, x: np.ndarray, cuts: int = 360) -> tuple[float, float]:
    """max over branch cuts c of |Pearson(x, angle unwrapped to (c − 2π, c])|, and that c (radians).

    A coordinate that follows an angle around the circle and jumps back at one place (an unfolded angle) scores
    ≈ 1 here; Mardia's circular-linear correlation cannot exceed ≈ 0.78 for it (uniform angle, linear ramp).

    >>> theta = np.linspace(-np.pi, np.pi, 1000, endpoint=False)
    >>> r, cut = unwrapped_angle_correlation(theta, np.mod(theta - 1.0, 2 * np.pi))
    >>> round(r, 6), abs(cut - 1.0) < 0.01
    (1.0, True)
    """
    angle, x = np.asarray(angle, float).ravel(), np.asarray(x, float).ravel()

    def best_of(candidates):
        return max((abs(float(np.corrcoef(x, c - np.mod(c - angle, 2 * np.pi))[0, 1])), float(c)) for c in candidates)

    step = 2 * np.pi / cuts
    _, coarse = best_of(np.linspace(-np.pi, np.pi, cuts, endpoint=False))
    return best_of(np.linspace(coarse - step, coarse + step, 101))


def knn_r2(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, k: int = 10) -> float:
    """R² on the test set of a k-nearest-neighbour regressor from z to y (mean of the k neighbours' y).

    ``y`` may be multi-column; R² = 1 − Σ‖y − ŷ‖² / Σ‖y − ȳ‖² over all columns.
    """
    from scipy.spatial import cKDTree

    z_train, z_test = np.asarray(z_train, float).reshape(len(z_train), -1), np.asarray(z_test, float).reshape(len(z_test), -1)
    y_train, y_test = np.asarray(y_train, float).reshape(len(y_train), -1), np.asarray(y_test, float).reshape(len(y_test), -1)
    _, neighbours = cKDTree(z_train).query(z_test, k=k)
    predicted = y_train[neighbours.reshape(len(z_test), -1)].mean(axis=1)
    residual = ((y_test - predicted) ** 2).sum()
    total = ((y_test - y_test.mean(axis=0)) ** 2).sum()
    return float(1.0 - residual / total)
