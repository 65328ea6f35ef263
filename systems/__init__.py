"""Shipped molecular systems and toy potentials, behind one registry.

>>> from cvplug import systems
>>> spec = systems.load("ala2-implicit")
>>> spec.system.getNumParticles(), spec.temperature
(22, 300.0)

Every entry returns a fresh :class:`SystemSpec` (a new OpenMM ``System`` each call, so forces added by
``cvplug.attach`` never leak between users). Toy potentials also carry their torch twin
(:attr:`SystemSpec.toy`), which agrees with the OpenMM energy.
"""
from __future__ import annotations

from typing import Callable

from .spec import SystemSpec
from .toy import TOY_POTENTIALS, ToyPotential
from . import alanine, toy

__all__ = ["SystemSpec", "ToyPotential", "load", "names", "register"]

_REGISTRY: dict[str, Callable[..., SystemSpec]] = {}


def register(name: str, factory: Callable[..., SystemSpec]) -> None:
    """Add a system factory under ``name`` (it takes keyword options and returns a SystemSpec)."""
    if name in _REGISTRY:
        raise ValueError(f"a system named {name!r} is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(_REGISTRY)


def load(name: str, **options) -> SystemSpec:
    """Build the system registered as ``name``; ``options`` go to its factory (e.g. ``n=16`` for the chain)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of: {', '.join(names())}") from None
    return factory(**options)


for _name, _factory in alanine.FACTORIES.items():
    register(_name, _factory)
for _name in TOY_POTENTIALS:
    register(_name, lambda _n=_name, **kw: toy.make_spec(_n, **kw))
