"""Well-tempered metadynamics bias kept as a list of Gaussian hills, with PLUMED-like hills files.

V(s) = Σ_i h_i exp(−Σ_k δ_k(s, c_ik)² / (2σ_k²)), with δ the minimum-image difference on periodic components.
Each deposition at s has height h = h0 · exp(−V(s) / (k_B ΔT)), ΔT = T(γ − 1) (Barducci, Bussi & Parrinello,
PRL 100, 020603, 2008); the free energy is F(s) = −γ/(γ − 1) · V(s). The same formulas as OpenMM's
``Metadynamics``, but the bias is evaluated exactly from its hills (smooth, no grid) and deposition costs one
append, so a Python-side bias can run every step.

Restarts and multiple walkers: walker ``k`` writes its hills to ``<folder>/hills.<k>.npy`` (atomically) and
reads the other walkers' files on :meth:`sync`; a new run on the same folder reloads its own file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from cvplug.systems.spec import MOLAR_GAS_CONSTANT

__all__ = ["HillsBias"]


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
    """

    def __init__(self, widths: Sequence[float], periods: Sequence[Optional[tuple[float, float]]],
                 temperature: float, bias_factor: float, height: float, folder=None, walker: int = 0):
        if bias_factor <= 1:
            raise ValueError(f"bias_factor must be > 1 for well-tempered metadynamics, got {bias_factor}")
        self.widths = np.asarray(widths, dtype=float)
        if len(periods) != len(self.widths) or (self.widths <= 0).any():
            raise ValueError("give one positive width and one period (or None) per CV component")
        self.period = np.array([p[1] - p[0] if p is not None else 0.0 for p in periods])
        self.bias_factor, self.height = float(bias_factor), float(height)
        self.delta_kT = MOLAR_GAS_CONSTANT * temperature * (bias_factor - 1)  # k_B ΔT, kJ/mol
        self.folder = Path(folder) if folder is not None else None
        self.walker = int(walker)
        d = len(self.widths)
        self.centers, self.heights = np.zeros((0, d)), np.zeros(0)
        self._others_centers, self._others_heights = np.zeros((0, d)), np.zeros(0)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            own = self._file(self.walker)
            if own.exists():
                self.centers, self.heights = self._read(own)
            self.sync()

    def _file(self, walker: int) -> Path:
        return self.folder / f"hills.{walker}.npy"

    @staticmethod
    def _read(path: Path):
        table = np.load(path)
        return table[:, :-1], table[:, -1]

    def _all_hills(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._others_heights) == 0:
            return self.centers, self.heights
        return (np.concatenate([self.centers, self._others_centers]),
                np.concatenate([self.heights, self._others_heights]))

    def _scaled_differences(self, s: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """(s − c)/σ with minimum-image differences on periodic components; s [..., 1, d], centres [N, d]."""
        delta = s - centers
        periodic = self.period > 0
        if periodic.any():
            p = self.period[periodic]
            delta[..., periodic] -= p * np.round(delta[..., periodic] / p)
        return delta / self.widths

    def __call__(self, s) -> tuple[float, np.ndarray]:
        """Bias V (kJ/mol) and its gradient dV/ds (kJ/mol per CV unit) at CV value ``s`` [d]."""
        s = np.asarray(s, dtype=float)
        centers, heights = self._all_hills()
        if len(heights) == 0:
            return 0.0, np.zeros_like(s)
        scaled = self._scaled_differences(s, centers)
        terms = heights * np.exp(-0.5 * (scaled**2).sum(axis=1))
        return float(terms.sum()), -(terms[:, None] * scaled / self.widths).sum(axis=0)

    def deposit(self, s) -> float:
        """Add a hill at ``s`` with the well-tempered height; returns that height (kJ/mol)."""
        s = np.asarray(s, dtype=float)
        height = self.height * np.exp(-self(s)[0] / self.delta_kT)
        self.centers = np.vstack([self.centers, s[None]])
        self.heights = np.append(self.heights, height)
        return float(height)

    def save(self) -> None:
        """Write this walker's hills (centres, heights) atomically."""
        if self.folder is None:
            return
        path = self._file(self.walker)
        temporary = path.with_name(f".tmp.{path.name}")
        np.save(temporary, np.column_stack([self.centers, self.heights]))
        os.replace(temporary, path)

    def sync(self) -> None:
        """Save this walker's hills and load every other walker's."""
        if self.folder is None:
            return
        self.save()
        others = [self._read(p) for p in sorted(self.folder.glob("hills.*.npy")) if p != self._file(self.walker)]
        if others:
            self._others_centers = np.concatenate([c for c, _ in others])
            self._others_heights = np.concatenate([h for _, h in others])

    def on_grid(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        """The bias (kJ/mol) on the grid spanned by ``axes``, indexed [axis 0, axis 1, …]."""
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        points = mesh.reshape(-1, 1, len(axes))
        centers, heights = self._all_hills()
        values = np.zeros(len(points))
        for start in range(0, len(points), 1024):  # chunks keep the [points, hills, d] array small
            scaled = self._scaled_differences(points[start:start + 1024], centers)
            values[start:start + 1024] = (heights * np.exp(-0.5 * (scaled**2).sum(axis=-1))).sum(axis=-1)
        return values.reshape(mesh.shape[:-1])

    def free_energy(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        """F = −γ/(γ − 1) V on the grid (kJ/mol), minimum at 0."""
        free = -self.bias_factor / (self.bias_factor - 1) * self.on_grid(axes)
        return free - free.min()
