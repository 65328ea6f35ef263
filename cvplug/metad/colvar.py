"""The colvar file of a metadynamics run: one line per report, time (ps), CV values, bias (kJ/mol).

:class:`Colvar` appends lines, puts them on disk before a checkpoint, and on resume cuts the file back to the
lines of the frames before the checkpoint, so a resumed run has exactly one line per report.
:func:`read_colvar` reads it back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..runs import write_atomic
from ..trajectory import TrajectoryError

__all__ = ["Colvar", "read_colvar"]


def read_colvar(path) -> np.ndarray:
    """A colvar file as an array [lines, 1 + d + 1]: time (ps), CV values (CV units), bias (kJ/mol)."""
    return np.loadtxt(path, ndmin=2)


class Colvar:
    """Lines appended to ``path`` (time in ps, the CV ``names``, bias in kJ/mol)."""

    def __init__(self, path: Path, names: Sequence[str]):
        self.path = Path(path)
        self.header = f"# time_ps {' '.join(names)} bias_kJmol\n"
        self._handle = None

    def open(self, lines: int) -> None:
        """Keep the first ``lines`` lines (the reports before the checkpoint; 0 for a new run), then append."""
        data = []
        if self.path.exists():
            data = [line for line in self.path.read_text().splitlines(keepends=True) if not line.startswith("#")]
        if len(data) < lines:
            raise TrajectoryError(f"{self.path} holds {len(data)} lines, fewer than its checkpoint ({lines}); "
                                  "start over with --overwrite (overwrite=True)")
        kept = data[:lines]
        if kept and not kept[-1].endswith("\n"):
            raise TrajectoryError(f"{self.path} has a torn line before its checkpoint; start over with "
                                  "--overwrite (overwrite=True)")
        if len(data) != lines or not self.path.exists():
            write_atomic(self.path, self.header + "".join(kept))
        self._handle = open(self.path, "a")

    def append(self, time_ps: float, values: Sequence[float], bias: float) -> None:
        """One line: time (ps), CV values, bias (kJ/mol)."""
        self._handle.write(" ".join(f"{v:.6f}" for v in (time_ps, *values, bias)) + "\n")

    def flush(self) -> None:
        """Put the lines written so far on disk."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file (lines written so far stay)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
