"""Reading what :func:`cvplug.simulate.simulate` writes: DCD + PDB trajectories of molecules (all atoms or the
saved ones, their indices in ``<out>.atoms.npy``) and ``.npz`` arrays of toy systems.

Toy trajectory format (``.npz``): ``x`` [frames, dim] natural coordinates (nm), ``time`` [frames] (ps),
``system`` (name), ``temperature`` (K), ``dt`` (ps between frames).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from cvplug.systems import SystemSpec

__all__ = ["TrajectoryError", "ToyTrajectory", "load_trajectory", "trajectory_positions", "saved_atoms"]


class TrajectoryError(ValueError):
    """A trajectory that cannot be read or does not match its topology/system."""


def saved_atoms(path) -> Optional[np.ndarray]:
    """Full-system indices of the atoms a trajectory written by :func:`simulate` holds; None: all atoms."""
    atoms = Path(path).with_suffix(".atoms.npy")
    return np.load(atoms) if atoms.exists() else None


class ToyTrajectory:
    """A toy-system trajectory: ``x`` [frames, dim] (nm), ``time`` [frames] (ps), ``system``, ``temperature``."""

    def __init__(self, x: np.ndarray, time: np.ndarray, system: str, temperature: float):
        self.x, self.time, self.system, self.temperature = x, time, system, temperature

    def __len__(self) -> int:
        return len(self.x)


def load_trajectory(path, top=None):
    """Read a trajectory written by :func:`cvplug.simulate.simulate`: an ``mdtraj.Trajectory`` or a :class:`ToyTrajectory`.

    For DCD files the topology defaults to the PDB beside it; a mismatch raises :class:`TrajectoryError`.
    """
    import mdtraj

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trajectory at {path}")
    if path.suffix == ".npz":
        try:
            data = np.load(path)
            return ToyTrajectory(data["x"], data["time"], str(data["system"]), float(data["temperature"]))
        except (KeyError, ValueError, OSError) as error:
            raise TrajectoryError(f"{path} is not a cvplug toy trajectory (.npz with x, time, system, "
                                  f"temperature): {error}") from error
    top = top or path.with_suffix(".pdb")
    try:
        return mdtraj.load(str(path), top=str(top) if isinstance(top, (str, Path)) else top)
    except (ValueError, OSError, IOError) as error:
        raise TrajectoryError(f"cannot read {path} with topology {top}: {error}") from error


def trajectory_positions(trajectory, spec: SystemSpec) -> np.ndarray:
    """Full-system positions [frames, n_atoms, 3] (nm, float64) of a loaded trajectory of ``spec``."""
    if spec.toy is not None:
        return np.stack([spec.toy.positions(x) for x in trajectory.x])
    if trajectory.n_atoms != spec.n_atoms:
        raise TrajectoryError(f"the trajectory holds {trajectory.n_atoms} of the {spec.n_atoms} atoms of "
                              f"{spec.name}; read its frames with cvplug.trajectory.saved_atoms")
    return trajectory.xyz.astype(np.float64)
