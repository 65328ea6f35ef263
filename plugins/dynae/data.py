"""Turning trajectories into time-lagged feature pairs (x_t, x_t+τ) for DynAE and its baselines."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from cvplug.features import Feature, default_features as system_features

__all__ = ["Pairs", "positions_of", "default_features", "lagged_pairs"]


class Pairs(NamedTuple):
    """Explicit frame pairs: positions [n, n_atoms, 3] (nm) at t and at t + τ, row by row."""

    first: Any
    second: Any


def positions_of(trajectory) -> np.ndarray:
    """Positions [frames, n_atoms, 3] (nm) of an mdtraj Trajectory, a cvplug ToyTrajectory or an array."""
    from cvplug.trajectory import ToyTrajectory, trajectory_positions

    if isinstance(trajectory, ToyTrajectory):
        from cvplug import systems

        return trajectory_positions(trajectory, systems.load(trajectory.system))
    if hasattr(trajectory, "xyz") and hasattr(trajectory, "topology"):  # mdtraj.Trajectory
        return np.asarray(trajectory.xyz)
    positions = trajectory.detach().cpu().numpy() if isinstance(trajectory, Tensor) else np.asarray(trajectory)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be [frames, n_atoms, 3] (nm), got shape {positions.shape}; pass an "
                         "mdtraj Trajectory, a cvplug ToyTrajectory, a positions array or a Pairs")
    return positions


def default_features(trajectory) -> Feature:
    """The natural coordinates of a toy trajectory; molecules need explicit features."""
    from cvplug.trajectory import ToyTrajectory

    if isinstance(trajectory, ToyTrajectory):
        from cvplug import systems

        return system_features(systems.load(trajectory.system), None)
    raise ValueError("pass features=... (e.g. cvplug.features.Cartesians of the heavy atoms with a reference); "
                     "only toy trajectories have default features")


def _featurise(features: Feature, positions: np.ndarray, chunk: int = 20000) -> Tensor:
    with torch.no_grad():
        return torch.cat([features(torch.as_tensor(positions[i:i + chunk], dtype=torch.float32))
                          for i in range(0, len(positions), chunk)])


def lagged_pairs(data, lag: int, features: Optional[Feature]) -> tuple[Tensor, Tensor, np.ndarray, Feature]:
    """Feature pairs ``(x_t, x_t+lag)`` [n_pairs, n_features] each, some positions, and the features used.

    ``data`` is one trajectory (mdtraj, ToyTrajectory or positions array), a list of them (pairs never cross
    from one to the next), :class:`Pairs`, or a :class:`cvplug.data.TrainingData` (its pairs and features). ``lag`` is in frames. The positions returned are a subsample
    (≤ 5000 frames) for calibrating the CV.
    """
    from cvplug.data import TrainingData

    if isinstance(data, TrainingData):
        if features is not None:
            raise ValueError("TrainingData carries its features; do not pass features= as well")
        first, second = data.pairs()
        return first, second, data.sample_positions().numpy(), data.features
    if isinstance(data, Pairs):
        first, second = positions_of(data.first), positions_of(data.second)
        if first.shape != second.shape:
            raise ValueError(f"the two halves of Pairs differ in shape: {first.shape} and {second.shape}")
        if features is None:
            raise ValueError("pass features=... to fit on Pairs")
        every = [first]
        a, b = _featurise(features, first), _featurise(features, second)
    else:
        trajectories = list(data) if isinstance(data, (list, tuple)) else [data]
        if not trajectories:
            raise ValueError("no trajectories given")
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1:
            raise ValueError(f"lag must be a positive whole number of frames, got {lag!r}")
        features = features if features is not None else default_features(trajectories[0])
        every, a_parts, b_parts = [], [], []
        for trajectory in trajectories:
            positions = positions_of(trajectory)
            if len(positions) <= lag:
                raise ValueError(f"a trajectory of {len(positions)} frames has no pairs at lag {lag}")
            x = _featurise(features, positions)
            every.append(positions)
            a_parts.append(x[:-lag])
            b_parts.append(x[lag:])
        a, b = torch.cat(a_parts), torch.cat(b_parts)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("the features of the data contain NaN or infinite values")
    every = np.concatenate(every)
    sample = every[np.linspace(0, len(every) - 1, min(len(every), 5000)).astype(int)]
    return a, b, sample, features
