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
import math
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["HillsGrid", "derivative_subsets"]


def derivative_subsets(d: int) -> np.ndarray:
    """The subsets S of the d components as boolean rows [2^d, d], ∅ first (the column order of the table)."""
    return np.array(list(itertools.product([False, True], repeat=d)))[:, ::-1]


def _hermite(t: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The cubic Hermite basis on [0, 1] at ``t`` — h00, h10, h01, h11: (value, slope) at the lower node, then at
    the upper one — and its t-derivative."""
    t2 = t * t
    t3 = t2 * t
    return ((1 - 3 * t2 + 2 * t3, t - 2 * t2 + t3, 3 * t2 - 2 * t3, t3 - t2),
            (6 * t2 - 6 * t, 1 - 4 * t + 3 * t2, 6 * t - 6 * t2, 3 * t2 - 2 * t))


def _contract(coefficients: list[float], vectors: list[tuple[float, ...]]) -> float:
    """The full contraction of a tensor [4]^d (C order, flattened) with one 4-vector per axis."""
    for v0, v1, v2, v3 in reversed(vectors):
        coefficients = [coefficients[i] * v0 + coefficients[i + 1] * v1 + coefficients[i + 2] * v2
                        + coefficients[i + 3] * v3 for i in range(0, len(coefficients), 4)]
    return coefficients[0]


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
        # a derivative ∂/∂s_k on the table is d/dt_k / spacing_k: scale columns so the basis works in t units
        self.column_scale = np.prod(np.where(self.subsets, self.spacing, 1.0), axis=1)
        self.strides = np.array([int(np.prod(shape[k + 1:])) for k in range(d)])
        # the interpolant's 4^d terms, one per (node, derivative order) along each axis, in the C order of the
        # tensor [4]^d that _contract takes: per term the node of the cell (0 lower, 1 upper) along each axis and
        # the table column of its derivative subset
        terms = list(itertools.product(range(2), range(2), repeat=d))
        columns = [tuple(row) for row in self.subsets.astype(int).tolist()]
        self._term_nodes = [term[0::2] for term in terms]
        self._term_columns = np.array([columns.index(term[1::2]) for term in terms])
        self._axes = list(zip(self.lower.tolist(), self.spacing.tolist(), self.shape.tolist(),
                              self.periodic.tolist(), self.strides.tolist()))

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
        """Interpolated V (kJ/mol) and dV/ds at ``s`` [d], or None outside the grid.

        Evaluated on Python floats: called once per bias step with one point, where NumPy's per-call overhead
        would cost more than the arithmetic (12 µs a call in 1D here, against 37 µs vectorised)."""
        rows, values, slopes = [], [], []   # per axis: the table rows of the cell's two nodes, basis and slope
        for x, (lower, spacing, n, periodic, stride) in zip(s.tolist(), self._axes):
            position = (x - lower) / spacing
            cell = math.floor(position)
            if periodic:
                rows.append(((cell % n) * stride, ((cell + 1) % n) * stride))
            elif 0 <= cell < n - 1:
                rows.append((cell * stride, (cell + 1) * stride))
            else:
                return None
            value, slope = _hermite(position - cell)
            values.append(value)
            slopes.append(slope)
        term_rows = [sum(pair[node] for pair, node in zip(rows, nodes)) for nodes in self._term_nodes]
        coefficients = self.table[term_rows, self._term_columns].tolist()
        # ∂/∂t_k: the k-th axis's basis replaced by its slope
        gradient = [_contract(coefficients, [*values[:k], slopes[k], *values[k + 1:]]) for k in range(len(values))]
        return _contract(coefficients, values), np.array(gradient) / self.spacing
