"""The SystemSpec: everything a simulation, a CV or a trainer needs to know about a system."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug.constants import MOLAR_GAS_CONSTANT, get_platform, openmm_seed

if TYPE_CHECKING:  # pragma: no cover
    from .toy import ToyPotential



@dataclass
class SystemSpec:
    """An OpenMM system ready to simulate.

    Attributes
    ----------
    name : registry name.
    system : the OpenMM ``System`` (fresh for every ``load``).
    topology : the OpenMM ``Topology`` (mdtraj reads it through ``mdtraj.Topology.from_openmm``).
    positions : initial positions, numpy array [n_atoms, 3] in nm.
    temperature : temperature in K.
    timestep : integration step in ps.
    friction : Langevin / Brownian friction coefficient in 1/ps.
    dynamics : ``"langevin"`` (molecules) or ``"brownian"`` (overdamped; the toys' default).
    box_vectors : periodic box, numpy array [3, 3] in nm, or None.
    toy : for toy potentials, the torch twin and the map between particle positions and natural coordinates.
    source : what defines the system, for rebuilding it with ``cvplug.systems.from_files(**source)``: the file
        paths and options for user files, ``{"system": name, ...}`` for a shipped system loaded by name.
    report : a system-specific addition to ``cvplug learn``'s round summaries: called as
        ``report(spec, positions [frames, n_atoms, 3] nm, weights [frames])``, returns a JSON-able dict
        (alanine dipeptide: its φ/ψ basin populations).
    """

    name: str
    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    temperature: float
    timestep: float
    friction: float
    dynamics: str = "langevin"
    box_vectors: Optional[np.ndarray] = None
    toy: Optional["ToyPotential"] = None
    description: str = ""
    extras: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    report: Optional[Callable[..., dict]] = None

    @property
    def n_atoms(self) -> int:
        return self.system.getNumParticles()

    @property
    def kT(self) -> float:
        """Thermal energy in kJ/mol."""
        return MOLAR_GAS_CONSTANT * self.temperature

    @property
    def periodic(self) -> bool:
        return self.system.usesPeriodicBoundaryConditions()

    def energy(self, positions=None, platform: str = "Reference") -> float:
        """Potential energy in kJ/mol of ``positions`` (nm, default: the initial ones), by OpenMM."""
        context = openmm.Context(self.system, openmm.VerletIntegrator(0.001),
                                 get_platform(platform))
        if self.box_vectors is not None:
            context.setPeriodicBoxVectors(*self.box_vectors)
        context.setPositions(self.positions if positions is None else np.asarray(positions))
        state = context.getState(getEnergy=True)
        return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    def integrator(self, seed: int = 0, dynamics: Optional[str] = None, timestep: Optional[float] = None):
        """A seeded OpenMM integrator for this system (``dynamics`` overrides the default kind)."""
        kind = dynamics or self.dynamics
        dt = self.timestep if timestep is None else timestep
        if kind == "langevin":
            integrator = openmm.LangevinMiddleIntegrator(self.temperature, self.friction, dt)
        elif kind == "brownian":
            integrator = openmm.BrownianIntegrator(self.temperature, self.friction, dt)
        else:
            raise ValueError(f"dynamics must be 'langevin' or 'brownian', not {kind!r}")
        integrator.setRandomNumberSeed(openmm_seed(seed))
        return integrator
