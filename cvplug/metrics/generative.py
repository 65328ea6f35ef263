"""How well a generative model's samples reproduce a Boltzmann distribution, and how well a CV separates states.

* :func:`boltzmann_grid` — exact expectations of a low-dimensional reduced potential by quadrature on a grid.
* :func:`bond_length_deviation`, :func:`radius_of_gyration` — structural statistics of molecular samples.
* :func:`logistic_accuracy` — held-out accuracy of a linear logistic classifier of two states from a CV.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["boltzmann_grid", "bond_length_deviation", "radius_of_gyration", "logistic_accuracy"]


def boltzmann_grid(u: Callable[[torch.Tensor], torch.Tensor], bounds: Sequence[tuple[float, float]],
                   beta: float = 1.0, n: int = 801) -> tuple[np.ndarray, np.ndarray]:
    """Grid points [n^dim, dim] and normalised weights ∝ exp(−β u) of a reduced potential ``u`` (torch, [B, dim]
    → [B]) on the box ``bounds``; expectations are ``weights @ f(points)`` (rectangle rule on ``n`` points per axis)."""
    if not beta > 0 or n < 2:
        raise ValueError(f"need beta > 0 and n ≥ 2, got {beta}, {n}")
    axes = [np.linspace(lo, hi, n) for lo, hi in bounds]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(bounds))
    with torch.no_grad():
        log_w = -beta * u(torch.as_tensor(points, dtype=torch.float64)).numpy()
    weights = np.exp(log_w - log_w.max())
    return points, weights / weights.sum()


def bond_length_deviation(positions: np.ndarray, reference: np.ndarray, bonds: Sequence[tuple[int, int]]) -> float:
    """Mean over ``bonds`` of |⟨length⟩_positions − ⟨length⟩_reference| (nm); positions [N, n_atoms, 3] nm."""
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    if len(bonds) == 0:
        raise ValueError("need at least one bond")

    def mean_lengths(x):
        x = np.asarray(x, dtype=float)
        return np.linalg.norm(x[:, bonds[:, 0]] - x[:, bonds[:, 1]], axis=-1).mean(axis=0)

    return float(np.abs(mean_lengths(positions) - mean_lengths(reference)).mean())


def radius_of_gyration(positions: np.ndarray, masses: np.ndarray | None = None) -> np.ndarray:
    """Radius of gyration [N] (nm) of configurations [N, n_atoms, 3] (nm); unweighted unless ``masses`` given."""
    x = np.asarray(positions, dtype=float)
    w = np.ones(x.shape[1]) if masses is None else np.asarray(masses, dtype=float)
    w = w / w.sum()
    centre = np.einsum("a,nak->nk", w, x)
    return np.sqrt(np.einsum("a,na->n", w, ((x - centre[:, None]) ** 2).sum(-1)))


def logistic_accuracy(z: np.ndarray, labels: np.ndarray, test_fraction: float = 0.5, seed: int = 0) -> float:
    """Accuracy on a held-out ``test_fraction`` of a linear logistic classifier (scikit-learn, standardised
    inputs) of boolean ``labels`` from features z [N, d]; ``seed`` fixes the split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z = np.asarray(z, dtype=float).reshape(len(z), -1)
    labels = np.asarray(labels, dtype=bool)
    if len(z) != len(labels) or labels.all() or not labels.any():
        raise ValueError("need one label per sample and both classes present")
    z_fit, z_test, y_fit, y_test = train_test_split(z, labels, test_size=test_fraction, random_state=seed,
                                                    stratify=labels)
    classifier = make_pipeline(StandardScaler(), LogisticRegression()).fit(z_fit, y_fit)
    return float(classifier.score(z_test, y_test))
