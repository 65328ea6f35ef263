"""A metadynamics bias tabulated on a regular grid, so evaluating it costs the same whatever the number of hills
(the exact sum costs ≈ 0.15 µs per hill per call: 0.2 ms at 1500 hills, more than an MD step of alanine dipeptide).

Each node holds the exact V and all its mixed first derivatives ∂^|S|V/∏_{k∈S}∂s_k (S ⊆ components: V, ∂V/∂s_0,
∂V/∂s_1, ∂²V/∂s_0∂s_1 in 2D) of the hills added so far. Between nodes the bias is the tensor-product cubic Hermite
interpolant of these values, and the force uses its exact gradient: energy and force are consistent and
continuous (C¹). With ``points_per_width`` = 4 nodes per Gaussian width the interpolant is within ≈ 1e-4 of a
hill's height (tests/metad/test_hills.py measures it). Periodic components wrap around; outside a non-periodic
component's range the grid answers None and the caller sums the hills.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["HillsGrid", "derivative_subsets"]


def derivative_subsets(d: int) -> np.ndarray:
    """The subsets S of the d components as boolean rows [2^d, d], ∅ first (the column order of the table)."""
    return np.array(list(itertools.product([False, True], repeat=d)))[:, ::-1]


# Cubic Hermite basis h00, h10, h01, h11 on [0, 1] as coefficients of (1, t, t², t³), and their t-derivatives
_BASIS = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [-3, -2, 3, -1], [2, 1, -2, 1]], dtype=float)
_SLOPE = np.vstack([_BASIS[1:] * np.arange(1, 4)[:, None], np.zeros((1, 4))])
_POWERS = np.arange(4)


def _hermite(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hermite basis at t [d], indexed [k, corner, derivative order], and its t-derivative."""
    powers = t[:, None] ** _POWERS
    return (powers @ _BASIS).reshape(-1, 2, 2), (powers @ _SLOPE).reshape(-1, 2, 2)


class HillsGrid:
    """Tabulated bias (kJ/mol) on ``ranges`` (CV units; periodic components span their period) with about
    ``points_per_width`` nodes per Gaussian width."""

    def __init__(self, ranges: Sequence[Sequence[float]], widths: Sequence[float],
                 periods: Sequence[Optional[tuple[float, float]]], points_per_width: int = 4):
        d = len(widths)
        self.periodic = np.array([p is not None for p in periods])
        lower, spacing, shape = [], [], []
        for (lo, hi), width, period in zip(ranges, widths, periods):
            if period is not None:
                lo, hi = period
                n = int(np.ceil((hi - lo) * points_per_width / width))   # nodes lo … hi − spacing, wrapping
                step = (hi - lo) / n
            else:
                n = int(np.ceil((hi - lo) * points_per_width / width)) + 1
                step = (hi - lo) / (n - 1)
            lower.append(lo)
            spacing.append(step)
            shape.append(n)
        self.lower, self.spacing, self.shape = np.array(lower), np.array(spacing), np.array(shape)
        self.subsets = derivative_subsets(d)
        self.table = np.zeros((int(np.prod(shape)), len(self.subsets)))
        self.nodes = self.lower + np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"),
                                           axis=-1).reshape(-1, d) * self.spacing
        # one interpolation term per (corner of the cell, derivative subset): bits [terms, d] each
        terms = list(itertools.product(range(2 ** d), range(len(self.subsets))))
        corners = np.array(list(itertools.product([0, 1], repeat=d)))
        self.term_corner = corners[[c for c, _ in terms]]
        self.term_order = self.subsets[[s for _, s in terms]].astype(int)
        self.term_column = np.array([s for _, s in terms])
        # a derivative ∂/∂s_k on the table is d/dt_k / spacing_k: scale columns so the basis works in t units
        self.column_scale = np.prod(np.where(self.subsets, self.spacing, 1.0), axis=1)
        self.strides = np.array([int(np.prod(shape[k + 1:])) for k in range(d)])
        self.dims = np.arange(d)
        self.one_hot = np.eye(d, dtype=bool)[:, None, :]                    # [k, 1, d]

    @property
    def size(self) -> int:
        """The number of grid nodes."""
        return len(self.table)

    def add(self, exact: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add ``exact(nodes)`` [nodes, 2^d] — V and its mixed derivatives in :func:`derivative_subsets` order."""
        self.table += exact(self.nodes) * self.column_scale

    def reset(self) -> None:
        """Empty the table (no hills)."""
        self.table[:] = 0.0

    def __call__(self, s: np.ndarray) -> Optional[tuple[float, np.ndarray]]:
        """Interpolated V (kJ/mol) and dV/ds at ``s`` [d], or None outside the grid."""
        position = (s - self.lower) / self.spacing
        cell = np.floor(position)
        t = position - cell
        cell = cell.astype(int)
        if (~self.periodic & ((cell < 0) | (cell >= self.shape - 1))).any():
            return None
        corner = cell + self.term_corner
        corner[:, self.periodic] %= self.shape[self.periodic]
        coefficients = self.table[corner @ self.strides, self.term_column]
        basis, slope = _hermite(t)
        value = basis[self.dims, self.term_corner, self.term_order]          # [terms, d]
        slope = slope[self.dims, self.term_corner, self.term_order]
        # ∂/∂t_k of the product over components: the k-th factor replaced by its slope
        gradient = np.where(self.one_hot, slope, value).prod(axis=-1) @ coefficients
        return float(value.prod(axis=1) @ coefficients), gradient / self.spacing
