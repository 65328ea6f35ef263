"""The registry of CV-learning methods: plugins registered under the entry-point group ``cvplug.methods``.

A third party adds a method without touching cvplug by declaring, in its own ``pyproject.toml``::

    [project.entry-points."cvplug.methods"]
    mymethod = "mypackage.mymodule:MyMethod"

The object must satisfy :class:`Method`: a ``name``, a one-line ``summary`` and ``fit(...)`` returning a
:class:`cvplug.CollectiveVariable`. The core never imports a plugin module directly; it asks :func:`get`.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from .cv import CollectiveVariable

__all__ = ["Method", "available", "get", "GROUP"]

GROUP = "cvplug.methods"


@runtime_checkable
class Method(Protocol):
    name: str
    summary: str

    def fit(self, *args, **kwargs) -> CollectiveVariable:  # pragma: no cover - protocol
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
