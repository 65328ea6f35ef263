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

from importlib import resources
from typing import Callable

from .files import SystemInputError, from_files, from_openmm, minimize_energy, resolve
from .spec import SystemSpec
from .toy import TOY_POTENTIALS, ToyPotential
from . import alanine, toy

__all__ = ["SystemInputError", "SystemSpec", "ToyPotential", "describe", "from_files", "from_openmm", "load",
           "minimize_energy", "names", "register", "resolve"]

_REGISTRY: dict[str, Callable[..., SystemSpec]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, factory: Callable[..., SystemSpec], description: str = "") -> None:
    """Add a system factory under ``name`` (it takes keyword options and returns a SystemSpec); ``description``
    lets :func:`describe` answer without building the system (for factories that take seconds)."""
    if name in _REGISTRY:
        raise ValueError(f"a system named {name!r} is already registered")
    _REGISTRY[name] = factory
    if description:
        _DESCRIPTIONS[name] = description


def describe(name: str) -> str:
    """One line on the system registered as ``name``: the description given at registration, else the built
    system's."""
    return _DESCRIPTIONS.get(name) or load(name).description


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


_TRPZIP2 = "tryptophan zipper 2 (12 residues) in TIP3P water, 11,034 atoms, old-format prmtop"


def _trpzip2(**options) -> SystemSpec:
    """Tryptophan zipper 2 in TIP3P water from the shipped old-format prmtop + crd (not minimised)."""
    folder = resources.files("cvplug.systems") / "data" / "trpzip2-explicit"
    spec = from_files(str(folder / "trpzip2.prmtop"), str(folder / "trpzip2.crd"), minimize=False, **options)
    spec.name, spec.description = "trpzip2-explicit", _TRPZIP2
    return spec


register("trpzip2-explicit", _trpzip2, _TRPZIP2)   # ParmEd reads its prmtop in ≈ 4 s
