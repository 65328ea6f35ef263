"""Strategy 1: one OpenMM Context that evaluates the samples of a batch one after the other.

The reference strategy, and the right one on a GPU platform, where one Context already uses the whole device.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import openmm

from .context import evaluate, make_context, on_cores, shared_core

__all__ = ["SingleContext"]


class SingleContext:
    """Evaluates energies (kJ/mol) and forces (kJ/mol/nm) of positions [B, n, 3] (nm) with one Context.

    Parameters
    ----------
    system : the OpenMM System (its constraints are ignored: energies are those of the given positions).
    platform, threads, properties, box_vectors : see :func:`cvplug.bridge.context.make_context`. With one CPU
        thread, the caller and OpenMM's worker thread share a core during each batch
        (:func:`cvplug.bridge.context.shared_core`).
    """

    def __init__(self, system: openmm.System, platform: str = "CPU", threads: Optional[int] = None,
                 properties: Optional[Mapping[str, str]] = None, box_vectors: Optional[np.ndarray] = None):
        self.n_atoms = system.getNumParticles()
        self.cores = shared_core(platform, threads)
        self.context = make_context(system, platform, threads, properties, box_vectors, self.cores)

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        energies = np.empty(len(positions))
        forces = np.empty((len(positions), self.n_atoms, 3))
        with on_cores(self.cores):
            for i, x in enumerate(positions):
                self.context.setPositions(x)
                energies[i] = evaluate(self.context, forces[i]).getPotentialEnergy()._value  # kJ/mol
        return energies, forces

    def close(self) -> None:
        self.context = None
