"""The default bias engine (``engine="hills"``): the CV and the hills bias evaluated together in one
``openmm.PythonForce``.

One CV call per step for all components, in NumPy for plain MLP CVs (:mod:`cvplug.metad.fastcv`, 8–10× cheaper
than TorchScript autograd here) and through TorchScript otherwise; the bias is a :class:`cvplug.metad.hills.HillsBias`
tabulated on its grid. The force: energy V(s(x)), forces −Σ_k ∂V/∂s_k ∂s_k/∂x (kJ/mol/nm).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import openmm
import openmm.unit as unit
import torch

from cvplug.systems import SystemSpec
from ..trajectory import TrajectoryError
from .fastcv import cv_evaluator
from .fes import fes_axes
from .hills import HillsBias
from .settings import WellTempered

__all__ = ["HillsEngine"]


class HillsEngine:
    """CV and hills bias in one PythonForce added to ``spec.system`` (a :class:`cvplug.metad.engine.BiasEngine`).

    Parameters
    ----------
    spec : the system; its ``system`` gets the force.
    cv : the CV (a CollectiveVariable or a loaded CV file).
    settings : the well-tempered settings (height kJ/mol, bias factor, frequency in MD steps), with the widths
        and ranges for ``cv`` filled in (:meth:`WellTempered.for_cv`).
    out_dir : where ``hills/`` lives (this walker's hills and the others'); None keeps the bias in memory.
    walker : this walker's index.
    reprojectable : keep the positions (nm) of every hill so that :meth:`replace_cv` can move them to a new CV.
    inherited : (centres, heights kJ/mol) of hills the bias starts from (see :class:`HillsBias`).
    """

    SYNC_EVERY = 10  # depositions between writes of the hills file

    def __init__(self, spec: SystemSpec, cv, settings: WellTempered, out_dir: Optional[Path] = None,
                 walker: int = 0, reprojectable: bool = False, inherited=None):
        self.module = cv.compiled()
        self.evaluate = cv_evaluator(self.module)
        self._positions = np.empty((spec.system.getNumParticles(), 3))
        self.deposits: Optional[list[np.ndarray]] = [] if reprojectable else None  # positions (nm) of each hill
        folder = Path(out_dir) / "hills" if out_dir is not None else None
        self.bias = HillsBias.along(cv, settings, spec.temperature, folder, walker, inherited)
        self.frequency = settings.frequency // settings.stride
        self.group = _free_force_group(spec.system)
        force = openmm.PythonForce(self._compute)
        force.setForceGroup(self.group)
        force.setName("cvplug hills bias")
        spec.system.addForce(force)
        self.axes = fes_axes(settings.ranges, settings.widths)

    def _compute(self, state: openmm.State):
        """Bias energy (kJ/mol) and forces (kJ/mol/nm) at the state's positions."""
        # State.getPositions(asNumpy=True) wraps the array in units (≈ 50 µs a call here); read it directly, in nm
        state._getVectorAsNumpy(openmm.State.Positions, self._positions)
        s, pullback = self.evaluate(self._positions)
        energy, gradient = self.bias(s)
        return energy, -pullback(gradient)

    @property
    def n_hills(self) -> int:
        """Hills this walker deposited."""
        return len(self.bias.heights)

    def resume(self, simulation) -> None:
        """Drop this walker's hills deposited after the step the simulation resumed from."""
        count = simulation.currentStep // self.frequency
        if len(self.bias.heights) < count:
            raise TrajectoryError(f"this walker's hills file in {self.bias.folder} holds {len(self.bias.heights)} "
                                  f"hills, fewer than its checkpoint ({count}); start over with --overwrite "
                                  "(overwrite=True)")
        self.bias.keep(count)

    def flush(self) -> None:
        """Write this walker's hills."""
        self.bias.save()

    def advance(self, simulation, steps: int) -> None:
        """Integrate ``steps`` bias steps, depositing a hill every ``frequency`` of them."""
        while steps > 0:
            chunk = min(steps, self.frequency - simulation.currentStep % self.frequency)
            simulation.step(chunk)
            steps -= chunk
            if simulation.currentStep % self.frequency == 0:
                positions = _positions(simulation)
                if self.deposits is not None:
                    self.deposits.append(positions)
                self.bias.deposit(self.evaluate(positions)[0])
                if len(self.bias.heights) % self.SYNC_EVERY == 0:
                    self.bias.sync()

    def values(self, simulation) -> np.ndarray:
        """The CV values [d] at the simulation's positions."""
        return self.evaluate(_positions(simulation))[0]

    def replace_cv(self, cv) -> None:
        """Switch to a new CV during the run, depositing the hills again, in order, at the new CV values of the
        configurations where they were deposited (:meth:`HillsBias.redeposit`), so the bias keeps pushing away
        from the same configurations."""
        if self.deposits is None:
            raise ValueError("this run keeps no hill configurations; build it with reprojectable=True")
        if cv.metadata["n_components"] != self.bias.centers.shape[1]:
            raise ValueError("the new CV must have as many components as the old one")
        self.module = cv.compiled()
        self.evaluate = cv_evaluator(self.module)
        if self.deposits:
            with torch.no_grad():
                self.bias.redeposit(self.module(torch.from_numpy(np.stack(self.deposits))).double().numpy())

    def bias_energy(self, simulation, values) -> float:
        """The bias (kJ/mol) at CV values ``values``."""
        return self.bias(values)[0]

    def free_energy(self) -> np.ndarray:
        """F = −γ/(γ − 1) V on the grid ``axes`` (kJ/mol), minimum 0."""
        return self.bias.free_energy(self.axes)

    def close(self) -> None:
        """Save this walker's hills and read the others' once more."""
        self.bias.sync()


def _free_force_group(system: openmm.System) -> int:
    """The highest force group (0–31) no force of ``system`` uses, for the bias force."""
    used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    free = sorted(set(range(32)) - used)
    if not free:
        raise ValueError("all 32 force groups are in use; free one for the bias")
    return free[-1]


def _positions(simulation) -> np.ndarray:
    """Current positions (nm) of the simulation."""
    state = simulation.context.getState(getPositions=True)
    return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
