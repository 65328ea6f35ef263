"""The training data the core hands a method: frames of a system, their features, lag pairs and weights.

Every method's ``fit`` takes one :class:`TrainingData`. The core builds it (``cvplug learn`` from its rounds,
or a user from trajectories with :meth:`TrainingData.from_trajectories`), so a method never reads files, chooses
atoms or pairs frames itself. Data-free methods (reverse-KL, variational NCT) read ``data.spec`` and may use the
frames when they have a data option.

Frames hold only the atoms that were saved (``atoms``, full-system indices; a protein in water stores the
protein). Features select atoms by full-system index, so frames are scattered into full-system positions, a
chunk at a time, only where a feature or CV is evaluated.

>>> from cvplug import systems
>>> from cvplug.features import Cartesians
>>> spec = systems.load("three-well")
>>> data = TrainingData.from_trajectories([spec.positions[None].repeat(5, 0)], spec,
...                                       Cartesians([0], components=(0, 1)))
>>> data.n_frames, data.pairs()[0].shape
(5, torch.Size([4, 2]))
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from cvplug.systems import SystemSpec
from .features import Feature

__all__ = ["TrainingData", "DegenerateInputWarning", "full_positions"]

CHUNK_VALUES = 2_000_000  # positions (atoms × frames) scattered at once: ≈ 24 MB of float32 xyz


class DegenerateInputWarning(UserWarning):
    """Input a method cannot learn much from: constant features, a collapsed component."""


def full_positions(frames: np.ndarray, atoms: Optional[np.ndarray], spec: SystemSpec) -> Tensor:
    """Full-system positions [n, n_atoms, 3] (nm, float32) of frames of ``atoms``; other atoms stay at
    ``spec.positions`` (no feature may read them)."""
    frames = torch.as_tensor(np.asarray(frames), dtype=torch.float32)
    if atoms is None:
        return frames
    full = torch.as_tensor(spec.positions, dtype=torch.float32).repeat(len(frames), 1, 1)
    full[:, torch.as_tensor(atoms, dtype=torch.long)] = frames
    return full


@dataclass
class TrainingData:
    """Frames of ``spec`` and what a method may need of them.

    Attributes
    ----------
    spec : the system (data-free methods train from its force field).
    features : the CV's input features (full-system atom indices); a method may use others it declares.
    frames : one array [n_frames, len(atoms), 3] (nm) per continuous trajectory (lag pairs never cross two).
    atoms : full-system indices of the atoms in ``frames``; None: all atoms.
    weights : per trajectory, per-frame statistical weights (biased runs); None: all frames weigh the same.
    lag : frames between the two members of a lag pair.
    """

    spec: SystemSpec
    features: Feature
    frames: list[np.ndarray] = field(default_factory=list)
    atoms: Optional[np.ndarray] = None
    weights: Optional[list[np.ndarray]] = None
    lag: int = 1
    _features_cache: Optional[list[Tensor]] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.lag, bool) or int(self.lag) != self.lag or self.lag < 1:
            raise ValueError(f"lag must be a positive whole number of frames, got {self.lag!r}")
        if self.atoms is not None:
            self.atoms = np.asarray(self.atoms, dtype=np.int64)
            missing = sorted(set(self.features.atom_indices()) - set(self.atoms.tolist()))
            if missing:
                raise ValueError(f"the features read atoms that the frames do not hold (first: {missing[:5]}); "
                                 "save those atoms (--save-atoms) or choose features of the saved ones")
        width = self.spec.n_atoms if self.atoms is None else len(self.atoms)
        for frames in self.frames:
            if frames.ndim != 3 or frames.shape[1:] != (width, 3):
                raise ValueError(f"frames must be [n_frames, {width}, 3] (nm), got {frames.shape}")
        if self.weights is not None and [len(w) for w in self.weights] != [len(f) for f in self.frames]:
            raise ValueError("weights need one value per frame of each trajectory")

    @classmethod
    def from_trajectories(cls, trajectories: Sequence, spec: SystemSpec, features: Feature, *, lag: int = 1,
                          weights: Optional[Sequence[np.ndarray]] = None) -> "TrainingData":
        """Data from full-system trajectories: arrays [frames, n_atoms, 3] (nm) or mdtraj Trajectories."""
        frames = [np.asarray(getattr(t, "xyz", t), dtype=np.float32) for t in trajectories]
        return cls(spec, features, frames, None, None if weights is None else [np.asarray(w) for w in weights],
                   lag)

    @classmethod
    def from_system(cls, spec: SystemSpec, features: Feature) -> "TrainingData":
        """Data with no frames, for methods that learn from the force field alone."""
        return cls(spec, features)

    @property
    def n_frames(self) -> int:
        """Number of frames over all trajectories."""
        return sum(len(f) for f in self.frames)

    def positions(self, trajectory: int, index=slice(None)) -> Tensor:
        """Full-system positions [n, n_atoms, 3] (nm, float32) of frames ``index`` of one trajectory."""
        return full_positions(self.frames[trajectory][index], self.atoms, self.spec)

    def _chunks(self, trajectory: int):
        n = len(self.frames[trajectory])
        step = max(1, CHUNK_VALUES // self.spec.n_atoms)
        for start in range(0, n, step):
            yield self.positions(trajectory, slice(start, start + step))

    def apply(self, module) -> list[np.ndarray]:
        """``module`` (a feature or CV of full-system positions) on every frame: one array per trajectory."""
        with torch.no_grad():
            return [torch.cat([module(p) for p in self._chunks(k)]).numpy() for k in range(len(self.frames))]

    def feature_trajectories(self) -> list[Tensor]:
        """Features [n_frames, n_out] (float32) of every trajectory, computed once; warns about constant
        columns (:class:`DegenerateInputWarning`) and refuses NaN."""
        if self._features_cache is None:
            self._features_cache = [torch.as_tensor(x).float() for x in self.apply(self.features)]
            values = torch.cat(self._features_cache)
            if not torch.isfinite(values).all():
                raise ValueError("the features of the frames contain NaN or infinite values")
            constant = (values.std(0) < 1e-6 * values.abs().mean(0).clamp(min=1e-3)).nonzero().flatten().tolist()
            if constant and len(values) > 1:
                warnings.warn(f"{len(constant)} of {values.shape[1]} feature columns are constant over the "
                              f"{len(values)} frames (first: {constant[:5]}); they carry no information",
                              DegenerateInputWarning, stacklevel=2)
        return self._features_cache

    def pairs(self) -> tuple[Tensor, Tensor]:
        """Feature pairs (x_t, x_t+lag) [n_pairs, n_out] each, within trajectories."""
        usable = [x for x in self.feature_trajectories() if len(x) > self.lag]
        if not usable:
            raise ValueError(f"no trajectory has more than lag = {self.lag} frames")
        return torch.cat([x[:-self.lag] for x in usable]), torch.cat([x[self.lag:] for x in usable])

    def frame_weights(self) -> np.ndarray:
        """Weights of all frames in order, summing to 1."""
        weights = np.concatenate(self.weights) if self.weights is not None else np.ones(self.n_frames)
        return weights / weights.sum()

    def sample_positions(self, n: int = 5000) -> Tensor:
        """Full-system positions [≤ n, n_atoms, 3] (nm) of frames spread evenly over all trajectories;
        the starting structure when there are no frames."""
        if not self.frames:
            return torch.as_tensor(self.spec.positions, dtype=torch.float32)[None]
        lengths = np.cumsum([0] + [len(f) for f in self.frames])
        picks = np.unique(np.linspace(0, lengths[-1] - 1, min(n, lengths[-1])).astype(int))
        which = np.searchsorted(lengths, picks, side="right") - 1
        return torch.cat([self.positions(k, picks[which == k] - lengths[k]) for k in np.unique(which)])
