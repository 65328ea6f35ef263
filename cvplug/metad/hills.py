"""Well-tempered metadynamics bias kept as a list of Gaussian hills, with PLUMED-like hills files.

V(s) = Σ_i h_i exp(−Σ_k δ_k(s, c_ik)² / (2σ_k²)), with δ the minimum-image difference on periodic components.
Each deposition at s has height h = h0 · exp(−V(s) / (k_B ΔT)), ΔT = T(γ − 1) (Barducci, Bussi & Parrinello,
PRL 100, 020603, 2008); the free energy is F(s) = −γ/(γ − 1) · V(s). The same formulas as OpenMM's
``Metadynamics``; the bias is the exact sum of its hills, or, after :meth:`HillsBias.use_grid`, that sum
tabulated on a grid (:mod:`cvplug.metad.grid`) so that a per-step call costs the same at 10 or 10 000 hills.

Hills files (:func:`read_hills`, :func:`write_hills`): a table [hills, d + 1] of centres (CV units) and heights
(kJ/mol) in NumPy's ``.npy`` format. Restarts and multiple walkers: walker ``k`` writes its hills to
``<folder>/hills.<k>.npy`` (atomically, through :func:`cvplug.runs.write_atomic`) and reads the other walkers'
files (any other ``hills.*.npy``) on :meth:`HillsBias.sync`; a new run on the same folder reloads its own file.
Hills a bias starts from (``inherited``: the earlier rounds of :mod:`cvplug.learn`, deposited again on a new CV)
are part of its own state, kept in ``<folder>/inherited.npy`` for analysis and never read as another walker's.
A ``readonly`` bias (reweighting, analysis) reads the files and never writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..constants import MOLAR_GAS_CONSTANT
from ..runs import nonnegative_int, positive_number, write_atomic
from ..trajectory import TrajectoryError
from .grid import HillsGrid

if TYPE_CHECKING:
    from .settings import WellTempered

__all__ = ["HillsBias", "read_hills", "write_hills", "INHERITED"]

INHERITED = "inherited.npy"  # the hills a bias starts from, in its folder


def read_hills(path: Path, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres [hills, d] (CV units) and heights [hills] (kJ/mol) of a hills file; empty if there is none."""
    if not path.exists():
        return np.zeros((0, d)), np.zeros(0)
    try:
        table = np.load(path).reshape(-1, d + 1)
    except (ValueError, OSError) as error:
        raise TrajectoryError(f"the hills file {path} is damaged or of another CV ({error}); start over with "
                              "--overwrite (overwrite=True)") from None
    return table[:, :-1], table[:, -1]


def write_hills(path: Path, centers: np.ndarray, heights: np.ndarray) -> None:
    """Write centres [hills, d] (CV units) and heights [hills] (kJ/mol) atomically to a hills file."""
    table = np.column_stack([np.asarray(centers, dtype=float), np.asarray(heights, dtype=float)])
    write_atomic(path, lambda handle: np.save(handle, table))


class HillsBias:
    """Well-tempered metadynamics bias on a d-dimensional CV.

    Parameters
    ----------
    widths : Gaussian standard deviation per component (CV units).
    periods : per component None, or (lower, upper) for a periodic component.
    temperature : K.
    bias_factor : γ > 1.
    height : initial hill height h0, kJ/mol.
    folder : where hills files live (restart, multiple walkers); None keeps hills in memory only.
    walker : this walker's index.
    readonly : read the hills files, never write them (analysis of a run that may still be going).
    inherited : (centres [n, d], heights [n] kJ/mol) of hills the bias starts from; None: those in
        ``<folder>/inherited.npy``, if any.

    Examples
    --------
    >>> bias = HillsBias([0.2], [None], temperature=300, bias_factor=5, height=1.0)
    >>> bias.deposit([0.0])
    1.0
    >>> round(bias([0.2])[0], 4)  # one width away: exp(-1/2) of the height
    0.6065
    """

    def __init__(self, widths: Sequence[float], periods: Sequence[Optional[tuple[float, float]]],
                 temperature: float, bias_factor: float, height: float, folder=None, walker: int = 0,
                 readonly: bool = False, inherited: Optional[tuple[np.ndarray, np.ndarray]] = None):
        positive_number("bias_factor", bias_factor, above=1.0)
        positive_number("height (kJ/mol)", height)
        positive_number("temperature (K)", temperature)
        self.widths = np.asarray(widths, dtype=float)
        if len(periods) != len(self.widths) or not (np.isfinite(self.widths) & (self.widths > 0)).all():
            raise ValueError("give one positive width and one period (or None) per CV component")
        self.period = np.array([p[1] - p[0] if p is not None else 0.0 for p in periods])
        self.bias_factor, self.height = float(bias_factor), float(height)
        self.delta_kT = MOLAR_GAS_CONSTANT * temperature * (bias_factor - 1)  # k_B ΔT, kJ/mol
        self.folder = Path(folder) if folder is not None else None
        self.walker = nonnegative_int("walker", walker)
        self.readonly = readonly
        d = len(self.widths)
        self.centers, self.heights = np.zeros((0, d)), np.zeros(0)
        self._others_centers, self._others_heights = np.zeros((0, d)), np.zeros(0)
        self.inherited = (np.zeros((0, d)), np.zeros(0))
        if inherited is not None:
            self.inherited = (np.asarray(inherited[0], dtype=float).reshape(-1, d), np.asarray(inherited[1], float))
        elif self.folder is not None:
            self.inherited = read_hills(self.folder / INHERITED, d)
        self._inherited_saved = inherited is None
        self._joined_from: tuple = (None, None)
        self._grid: Optional[HillsGrid] = None
        self._value_and_gradient = np.vstack([np.zeros((1, d), bool), np.eye(d, dtype=bool)])  # subsets ∅, {k}
        if self.folder is not None:
            if not readonly:
                self.folder.mkdir(parents=True, exist_ok=True)
            self.centers, self.heights = read_hills(self._file(self.walker), d)
            self._read_others()

    @classmethod
    def along(cls, cv, settings: "WellTempered", temperature: float, folder=None, walker: int = 0,
              inherited: Optional[tuple[np.ndarray, np.ndarray]] = None) -> "HillsBias":
        """The bias along ``cv`` (its periods) with ``settings`` (widths, ranges filled in:
        :meth:`WellTempered.for_cv`), tabulated on the grid of its ranges; ``temperature`` in K."""
        periods = [tuple(p) if p is not None else None for p in cv.metadata["periodic"]]
        bias = cls(settings.widths, periods, temperature, settings.bias_factor, settings.height, folder, walker,
                   inherited=inherited)
        bias.use_grid(settings.ranges)
        return bias

    def _file(self, walker: int) -> Path:
        return self.folder / f"hills.{walker}.npy"

    def _all_hills(self) -> tuple[np.ndarray, np.ndarray]:
        """The inherited hills, this walker's and the others', joined once per change."""
        own, others = self._joined_from
        if own is not self.centers or others is not self._others_centers:  # deposit, sync, redeposit
            self._joined = (np.concatenate([self.inherited[0], self.centers, self._others_centers]),
                            np.concatenate([self.inherited[1], self.heights, self._others_heights]))
            self._joined_from = (self.centers, self._others_centers)
        return self._joined

    def _scaled_differences(self, s: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """(s − c)/σ with minimum-image differences on periodic components; s [..., 1, d], centres [N, d]."""
        delta = s - centers
        periodic = self.period > 0
        if periodic.any():
            p = self.period[periodic]
            delta[..., periodic] -= p * np.round(delta[..., periodic] / p)
        return delta / self.widths

    def _sum(self, points: np.ndarray, centers: np.ndarray, heights: np.ndarray,
             subsets: np.ndarray) -> np.ndarray:
        """Exact ∂^|S|V/∏_{k∈S}∂s_k [M, n] at ``points`` [M, d] from the given hills, for each row S of the boolean
        ``subsets`` [n, d] (an empty row is V itself)."""
        out = np.zeros((len(points), len(subsets)))
        chunk = max(1, 2**20 // max(1, len(heights)))  # keeps the [chunk, hills, d] arrays small
        for start in range(0, len(points), chunk):
            scaled = self._scaled_differences(points[start:start + chunk, None, :], centers)
            terms = heights * np.exp(-0.5 * (scaled**2).sum(axis=-1))
            factors = -scaled / self.widths                       # ∂/∂s_k of each hill, divided by the hill
            for j, subset in enumerate(subsets):
                out[start:start + chunk, j] = (terms * np.prod(factors[..., subset], axis=-1)).sum(axis=-1)
        return out

    def use_grid(self, ranges: Sequence[Sequence[float]], points_per_width: int = 4,
                 max_nodes: int = 500_000) -> bool:
        """Tabulate the bias on a grid over ``ranges`` (see :mod:`cvplug.metad.grid`) so that a call costs the
        same whatever the number of hills; returns False (and sums the hills exactly from now on) if it would
        exceed ``max_nodes`` nodes."""
        periods = [(0.0, p) if p > 0 else None for p in self.period]
        grid = HillsGrid(ranges, self.widths, periods, points_per_width)
        self._grid = grid if grid.size <= max_nodes else None
        if self._grid is None:
            return False
        self._tabulate_all()
        return True

    def _tabulate_all(self) -> None:
        if self._grid is not None:
            self._grid.reset()
            self._grid.add(lambda nodes: self._sum(nodes, *self._all_hills(), self._grid.subsets))

    def __call__(self, s) -> tuple[float, np.ndarray]:
        """Bias V (kJ/mol) and its gradient dV/ds (kJ/mol per CV unit) at CV value ``s`` [d]."""
        s = np.asarray(s, dtype=float)
        tabulated = self._grid(s) if self._grid is not None else None
        if tabulated is not None:
            return tabulated
        out = self._sum(s[None], *self._all_hills(), self._value_and_gradient)[0]
        return float(out[0]), out[1:]

    def deposit(self, s) -> float:
        """Add a hill at ``s`` with the well-tempered height; returns that height (kJ/mol)."""
        s = np.asarray(s, dtype=float)
        height = self.height * np.exp(-self(s)[0] / self.delta_kT)
        self.centers = np.vstack([self.centers, s[None]])
        self.heights = np.append(self.heights, height)
        if self._grid is not None:
            self._grid.add(lambda nodes: self._sum(nodes, s[None], np.array([height]), self._grid.subsets))
        return float(height)

    def redeposit(self, centers: np.ndarray) -> None:
        """Replace this walker's hills by hills at ``centers`` [N, d] deposited again in order, each with the
        well-tempered height the bias before it gives (e.g. after the CV was replaced). Keeping the old heights
        instead would stack hills wherever the new CV maps many old configurations together, far above what
        well-tempered deposition allows, and build walls that trap the system."""
        centers = np.asarray(centers, dtype=float).reshape(-1, len(self.widths))
        self.centers, self.heights = np.zeros((0, len(self.widths))), np.zeros(0)
        self._tabulate_all()
        for center in centers:
            self.deposit(center)

    def keep(self, count: int) -> None:
        """Keep only this walker's first ``count`` hills (a run resuming from an earlier checkpoint)."""
        if len(self.heights) > count:
            self.centers, self.heights = self.centers[:count], self.heights[:count]
            self._tabulate_all()
            self.save()

    def save(self) -> None:
        """Write this walker's hills (centres, heights) atomically, and the inherited ones once."""
        if self.folder is None or self.readonly:
            return
        if not self._inherited_saved:
            write_hills(self.folder / INHERITED, *self.inherited)
            self._inherited_saved = True
        write_hills(self._file(self.walker), self.centers, self.heights)

    def sync(self) -> None:
        """Save this walker's hills and load every other walker's."""
        if self.folder is None:
            return
        self.save()
        self._read_others()

    def _read_others(self) -> None:
        others = [read_hills(p, len(self.widths)) for p in sorted(self.folder.glob("hills.*.npy"))
                  if p != self._file(self.walker)]
        if others:
            centers, heights = np.concatenate([c for c, _ in others]), np.concatenate([h for _, h in others])
            if not (np.array_equal(centers, self._others_centers) and np.array_equal(heights, self._others_heights)):
                self._others_centers, self._others_heights = centers, heights
                self._tabulate_all()

    def exact(self, points) -> np.ndarray:
        """The exact bias (kJ/mol), summed over every hill (no grid), at CV values ``points`` [n, d]."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.widths))
        return self._sum(points, *self._all_hills(), self._value_and_gradient[:1])[:, 0]

    def on_grid(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        """The exact bias (kJ/mol) on the grid spanned by ``axes``, indexed [axis 0, axis 1, …]."""
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        return self.exact(mesh.reshape(-1, len(axes))).reshape(mesh.shape[:-1])

    def free_energy(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        """F = −γ/(γ − 1) V on the grid (kJ/mol), minimum at 0."""
        free = -self.bias_factor / (self.bias_factor - 1) * self.on_grid(axes)
        return free - free.min()
