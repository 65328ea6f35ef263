"""Latent-space bins for DynAE: regular-space clustering and rare-region-boosting resampling.

Every epoch after the first, DynAE discretises the latent space with regular-space clustering (a point becomes a
new centre when it lies at least ``d_min`` from every existing centre, in data order; Prinz et al., J. Chem.
Phys. 134, 174105, 2011) and draws training batches one bin at a time, bin k with probability ∝ N_k^(1/γ) for
N_k members, so that rarely visited regions are trained on more often than their population says.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = ["regular_space", "assign", "bin_probabilities", "BinSampler"]


def regular_space(z: np.ndarray, d_min: float, max_centres: int = 1000, chunk: int = 4096) -> np.ndarray:
    """Regular-space cluster centres [k, d] of points ``z`` [n, d] with minimal centre distance ``d_min``.

    Points are visited in order; one becomes a centre if its distance to all earlier centres is ≥ ``d_min``.
    Hence all centres are at least ``d_min`` apart and every point lies within ``d_min`` of a centre. Stops
    with a warning after ``max_centres`` centres (then increase ``d_min``).
    """
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"z must be a non-empty [n, d] array, got shape {z.shape}")
    if not d_min > 0:
        raise ValueError(f"d_min must be positive, got {d_min}")
    centres: list[np.ndarray] = []
    for start in range(0, len(z), chunk):
        block = z[start:start + chunk]
        covered = np.zeros(len(block), dtype=bool)
        if centres:
            covered = cKDTree(np.array(centres)).query(block, distance_upper_bound=d_min)[0] < d_min
        for i in range(len(block)):
            if covered[i]:
                continue
            if len(centres) == max_centres:
                warnings.warn(f"regular-space clustering reached {max_centres} centres with d_min = {d_min}; "
                              "the remaining points join their nearest centre (increase d_min)")
                return np.array(centres)
            centres.append(block[i])
            covered[i:] |= np.linalg.norm(block[i:] - block[i], axis=1) < d_min
    return np.array(centres)


def assign(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for every point of ``z`` [n, d]."""
    return cKDTree(centres).query(np.asarray(z, dtype=float))[1]


def bin_probabilities(labels: np.ndarray, gamma: float = 2.0, n_bins: int | None = None) -> np.ndarray:
    """Probability of drawing each bin: ∝ N_k^(1/γ), N_k the number of points with label k (γ ≥ 1).

    γ = 1 keeps the data's own weights; larger γ flattens them towards uniform over the visited bins.
    """
    if gamma < 1:
        raise ValueError(f"gamma must be ≥ 1 (1: no reweighting), got {gamma}")
    counts = np.bincount(np.asarray(labels), minlength=n_bins or 0).astype(float)
    weights = counts ** (1.0 / gamma)
    return weights / weights.sum()


class BinSampler:
    """Draws index batches [groups, batch] of points: each group from one bin, bins ∝ N_k^(1/γ).

    Within a bin, members are drawn uniformly with replacement.
    """

    def __init__(self, labels: np.ndarray, gamma: float = 2.0):
        labels = np.asarray(labels)
        n_bins = int(labels.max()) + 1
        self.probabilities = torch.as_tensor(bin_probabilities(labels, gamma, n_bins))
        counts = np.bincount(labels, minlength=n_bins)
        self.order = torch.as_tensor(np.argsort(labels, kind="stable"))
        self.start = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self.count = torch.as_tensor(counts)

    @property
    def n_bins(self) -> int:
        """Number of occupied bins."""
        return len(self.count)

    def draw(self, groups: int, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Indices [groups, batch] of samples: ``groups`` bins drawn with the bin probabilities, then ``batch``
        samples drawn uniformly (with replacement) inside each."""
        bins = torch.multinomial(self.probabilities, groups, replacement=True, generator=generator)
        offsets = (torch.rand(groups, batch, generator=generator, dtype=torch.float64)
                   * self.count[bins, None]).long()
        return self.order[self.start[bins, None] + offsets]
