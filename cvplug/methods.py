"""The registry of CV-learning methods: plugins registered under the entry-point group ``cvplug.methods``.

A third party adds a method without touching cvplug by declaring, in its own ``pyproject.toml``::

    [project.entry-points."cvplug.methods"]
    mymethod = "mypackage.mymodule:MyMethod"

The object must satisfy :class:`Method`: a ``name``, a one-line ``summary`` and ``fit(...)`` returning a
:class:`cvplug.CollectiveVariable`. Methods that can learn from MD trajectories also provide
``fit_trajectories`` (:class:`TrajectoryMethod`), which is what ``cvplug learn`` calls between rounds.
The core never imports a plugin module directly; it asks :func:`get`.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .cv import CollectiveVariable

__all__ = ["Method", "TrajectoryMethod", "available", "get", "GROUP"]

GROUP = "cvplug.methods"


@runtime_checkable
class Method(Protocol):
    name: str
    summary: str

    def fit(self, *args, **kwargs) -> CollectiveVariable:  # pragma: no cover - protocol
        ...


@runtime_checkable
class TrajectoryMethod(Protocol):
    """A method that learns a CV from molecular or toy trajectories (used by ``cvplug learn``)."""

    def fit_trajectories(self, trajectories: Sequence[np.ndarray], spec, *, latent_dim: int = 2, lag: int = 1,
                         weights: Optional[Sequence[np.ndarray]] = None, seed: int = 0,
                         previous: Optional[CollectiveVariable] = None, work_dir=None,
                         progress: bool = True) -> CollectiveVariable:  # pragma: no cover - protocol
        """Learn a ``latent_dim``-component CV of ``spec`` from trajectories of full-system positions.

        ``trajectories``: arrays [frames, n_atoms, 3] (nm), each one continuous in time with ``lag`` frames
        between the pairs a time-lagged method uses (pairs never straddle two arrays); ``weights``: per-frame
        statistical weights (biased runs) for methods that need equilibrium averages; ``previous``: the CV of
        the last round, to fine-tune from; ``work_dir``: where checkpoints may go.
        """
        ...


def available() -> dict[str, str]:
    """Registered method names → the entry point's target (``module:object``)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def get(name: str) -> Method:
    """Load the method registered as ``name``; unknown names raise ValueError listing the known ones."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available())) or "none installed"
        raise ValueError(f"unknown CV method {name!r}; registered methods: {known}")
    method = matches[0].load()
    if not isinstance(method, Method):
        raise TypeError(f"the entry point {matches[0].value} for {name!r} does not provide name, summary and fit()")
    return method
