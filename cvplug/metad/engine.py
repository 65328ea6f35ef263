"""The one interface both metadynamics bias engines implement (:class:`BiasEngine`).

An engine owns the bias force it added to an ``openmm.System`` (in force group ``group``) and the bias behind it.
The run driver (:mod:`cvplug.metad.run`), the learn loop and the continuous mode talk to an engine only through
this protocol. The engines: :class:`cvplug.metad.hills_engine.HillsEngine` (``engine="hills"``) and
:class:`cvplug.metad.openmm_engine.OpenMMEngine` (``engine="openmm"``).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import openmm.app as app

__all__ = ["BiasEngine"]


class BiasEngine(Protocol):
    """A well-tempered metadynamics bias acting on a Simulation through one force.

    Attributes: ``group`` (the force group of the bias force), ``axes`` (the FES grid points per component, CV
    units), ``frequency`` (bias steps between depositions: MD steps / stride), ``n_hills``.
    """

    group: int
    axes: list[np.ndarray]
    frequency: int

    @property
    def n_hills(self) -> int:
        """The hills this walker deposited so far."""

    def advance(self, simulation: app.Simulation, steps: int) -> None:
        """Integrate ``steps`` bias steps (MD steps / stride), depositing hills on the way."""

    def values(self, simulation: app.Simulation) -> np.ndarray:
        """The CV values [d] (CV units) at the simulation's current positions."""

    def bias_energy(self, simulation: app.Simulation, values: np.ndarray) -> float:
        """The bias (kJ/mol) at the simulation's current state, whose CV values are ``values``."""

    def free_energy(self) -> np.ndarray:
        """F = −γ/(γ − 1) V (kJ/mol, minimum 0) on the grid ``axes``, indexed [axis 0, axis 1, …]."""

    def replace_cv(self, cv) -> None:
        """Bias along ``cv`` from now on, the hills deposited so far moved onto it (ValueError where the engine
        cannot)."""

    def resume(self, simulation: app.Simulation) -> None:
        """Cut the bias back to the step the simulation stands at (its checkpoint, or 0)."""

    def flush(self) -> None:
        """Put this engine's bias files on disk (before a checkpoint)."""

    def close(self) -> None:
        """Flush, and read the other walkers' bias once more (the final bias)."""
