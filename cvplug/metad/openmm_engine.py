"""The ``engine="openmm"`` bias engine: OpenMM's own ``openmm.app.Metadynamics``, one openmm-torch TorchForce per CV
component inside the CustomCVForce it builds, the bias on OpenMM's grid.

OpenMM keeps the bias on a grid and shares it with other walkers through ``bias_<id>_<n>.npy`` files in its bias
folder; here the id is the walker index. The hills behind this walker's grid (centre, height) are kept in
``bias/hills.<walker>.npy`` as well, so that a resumed run rebuilds its grid exactly as it stood at the checkpoint
and replaces the grid file that a killed run may have written past it.
"""
from __future__ import annotations

import re
from functools import reduce
from pathlib import Path
from typing import Optional

import numpy as np
import openmm.app as app
import openmm.unit as unit

from cvplug.systems import SystemSpec
from ..attach import cv_forces
from ..trajectory import TrajectoryError
from .hills import read_hills, write_hills
from .settings import WellTempered

__all__ = ["OpenMMEngine"]


class OpenMMEngine:
    """``openmm.app.Metadynamics`` with one TorchForce per component (a :class:`cvplug.metad.engine.BiasEngine`).

    Parameters as for :class:`cvplug.metad.hills_engine.HillsEngine` (settings with ranges and widths filled in:
    :meth:`WellTempered.for_cv`); OpenMM needs all components periodic or
    none, and cannot replace its CV during a run."""

    def __init__(self, spec: SystemSpec, cv, settings: WellTempered, out_dir: Optional[Path] = None,
                 walker: int = 0):
        ranges, widths = settings.ranges, settings.widths
        periods = [p is not None for p in cv.metadata["periodic"]]
        if len(set(periods)) > 1:
            raise ValueError("OpenMM's Metadynamics needs all CV components periodic or none; use engine='hills'")
        variables = [app.BiasVariable(force, lo, hi, width, periodic)
                     for force, (lo, hi), width, periodic in zip(cv_forces(cv), ranges, widths, periods)]
        self.frequency = settings.frequency // settings.stride
        # built without a bias folder (it would write and read files at once, under a random id) …
        self.meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, settings.bias_factor,
                                     settings.height * unit.kilojoule_per_mole, self.frequency)
        self.folder = Path(out_dir) / "bias" if out_dir is not None else None
        self.walker = int(walker)
        self.meta._id = self.walker
        self.centers: list[np.ndarray] = []
        self.heights: list[float] = []
        deposit = self.meta._addGaussian

        def record(position, height, context):
            self.centers.append(np.array(position, dtype=float))
            self.heights.append(height.value_in_unit(unit.kilojoule_per_mole))
            deposit(position, height, context)

        self.meta._addGaussian = record
        self.group = spec.system.getForce(spec.system.getNumForces() - 1).getForceGroup()
        self.axes = [np.linspace(lo, hi, v.gridWidth) for (lo, hi), v in zip(ranges, variables)]

    @property
    def n_hills(self) -> int:
        """Hills this walker deposited."""
        return len(self.heights)

    def _record_file(self) -> Path:
        return self.folder / f"hills.{self.walker}.npy"

    def _own_grid_files(self) -> list[tuple[int, Path]]:
        pattern = re.compile(rf"(?:bias|temp)_{self.walker}_(\d+)\.npy")
        return [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := pattern.fullmatch(p.name))]

    def resume(self, simulation) -> None:
        """Keep the hills deposited up to the step the simulation stands at (its checkpoint), rebuild this
        walker's grid from them, replace its grid file, and read the other walkers'."""
        count = simulation.currentStep // self.frequency
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        centers, heights = read_hills(self._record_file(), len(self.axes))
        if len(heights) < count:
            raise TrajectoryError(f"{self._record_file()} holds {len(heights)} hills, fewer than its checkpoint "
                                  f"({count}); start over with --overwrite (overwrite=True)")
        self.centers, self.heights = list(centers[:count]), list(heights[:count])
        self.flush()
        meta = self.meta
        meta._selfBias = np.zeros_like(meta._selfBias)
        for center, height in zip(self.centers, self.heights):
            meta._selfBias += height * self._gaussian(center)
        own = self._own_grid_files()
        for _, path in own:  # written by this walker's earlier process, possibly past the checkpoint
            path.unlink(missing_ok=True)
        meta.biasDir, meta.saveFrequency = str(self.folder), self.frequency
        meta._saveIndex = max((index for index, _ in own), default=0)  # others take the next one as newer
        meta._loadedBiases = {}
        meta._syncWithDisk()
        meta._totalBias = meta._selfBias + sum((b.bias for b in meta._loadedBiases.values()),
                                               np.zeros_like(meta._selfBias))
        if len(meta.variables) == 1:
            meta._table.setFunctionParameters(meta._totalBias.flatten(), *meta._limits)
        else:
            meta._table.setFunctionParameters(*meta._widths, meta._totalBias.flatten(), *meta._limits)
        meta._force.updateParametersInContext(simulation.context)

    def _gaussian(self, position) -> np.ndarray:
        """One unit-height hill at ``position`` on OpenMM's grid, as ``Metadynamics._addGaussian`` lays it."""
        axes = []
        for x, v in zip(position, self.meta.variables):
            x = (x - v.minValue) / (v.maxValue - v.minValue)
            if v.periodic:
                x = x % 1.0
            dist = np.abs(np.linspace(0, 1.0, num=v.gridWidth) - x)
            if v.periodic:
                dist = np.min(np.array([dist, np.abs(dist - 1)]), axis=0)
                dist[-1] = dist[0]
            axes.append(np.exp(-0.5 * dist * dist / v._scaledVariance))
        return axes[0] if len(axes) == 1 else reduce(np.multiply.outer, reversed(axes))

    def flush(self) -> None:
        """Write this walker's hills (the grid file is written by OpenMM at every deposition)."""
        if self.folder is not None:
            write_hills(self._record_file(), np.reshape(self.centers, (len(self.heights), len(self.axes))),
                        self.heights)

    def advance(self, simulation, steps: int) -> None:
        """Integrate ``steps`` bias steps through OpenMM's Metadynamics (which deposits the hills)."""
        self.meta.step(simulation, steps)

    def values(self, simulation) -> np.ndarray:
        """The CV values [d] at the simulation's positions."""
        return np.array(self.meta.getCollectiveVariables(simulation))

    def bias_energy(self, simulation, values) -> float:
        """The bias (kJ/mol) of the simulation's current state (the energy of the bias force group)."""
        state = simulation.context.getState(getEnergy=True, groups={self.group})
        return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    def free_energy(self) -> np.ndarray:
        """F = −γ/(γ − 1) V on OpenMM's grid (kJ/mol), minimum 0."""
        free = self.meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole).T  # OpenMM: [last, …, first]
        return free - free.min()

    def replace_cv(self, cv) -> None:
        """Not possible: OpenMM's grid is a function of the CV it was built with."""
        raise ValueError("only the 'hills' engine can replace its CV during a run")

    def close(self) -> None:
        """Write this walker's hills."""
        self.flush()
