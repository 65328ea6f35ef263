"""How a biased run steps: the integrator (multiple time steps when the bias has a stride) and the
:class:`Stepper` that advances the simulation through its bias engine and writes the colvar file.

``stride = k > 1`` applies the bias force only every k MD steps, as the outer step of OpenMM's
``MTSLangevinIntegrator`` (inner steps: the system's timestep, all other forces), like PLUMED's stride option.
"""
from __future__ import annotations

from typing import Optional

import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug.systems import SystemSpec
from ..constants import openmm_seed
from .colvar import Colvar
from .engine import BiasEngine

__all__ = ["bias_integrator", "Stepper"]


def bias_integrator(spec: SystemSpec, seed: int, stride: int, bias_group: int,
                    dynamics: Optional[str]) -> openmm.Integrator:
    """The system's integrator, or for ``stride`` > 1 an MTS Langevin integrator whose outer step
    (``stride`` × the timestep, ps) applies the bias force group ``bias_group``."""
    if stride == 1:
        return spec.integrator(seed, dynamics)
    if (dynamics or spec.dynamics) != "langevin":
        raise ValueError("stride > 1 needs Langevin dynamics (OpenMM's MTSLangevinIntegrator)")
    groups = {spec.system.getForce(i).getForceGroup() for i in range(spec.system.getNumForces())} - {bias_group}
    integrator = openmm.MTSLangevinIntegrator(spec.temperature, spec.friction, stride * spec.timestep,
                                              [(g, stride) for g in sorted(groups)] + [(bias_group, 1)])
    integrator.setRandomNumberSeed(openmm_seed(seed))
    return integrator


class Stepper:
    """Advances ``simulation`` through ``engine`` and appends a colvar line after each advance (a report every
    ``report_every`` bias steps)."""

    def __init__(self, engine: BiasEngine, simulation: app.Simulation, colvar: Colvar, report_every: int):
        self.engine, self.simulation, self.colvar, self.report_every = engine, simulation, colvar, report_every
        self.dt = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)

    def resume(self) -> None:
        """Cut the colvar file and the engine's bias back to the step the simulation stands at (its checkpoint,
        or 0)."""
        self.colvar.open(self.simulation.currentStep // self.report_every)
        self.engine.resume(self.simulation)

    def flush(self) -> None:
        """Put the colvar lines and the engine's bias on disk (before a checkpoint)."""
        self.colvar.flush()
        self.engine.flush()

    def __call__(self, steps: int) -> None:
        """Advance ``steps`` bias steps, then write the colvar line of the new state."""
        self.engine.advance(self.simulation, steps)
        values = self.engine.values(self.simulation)
        self.colvar.append(self.simulation.currentStep * self.dt, values,
                           self.engine.bias_energy(self.simulation, values))
