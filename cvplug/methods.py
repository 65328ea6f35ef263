"""One interface for every CV-learning method, and the registry that finds them (entry-point group
``cvplug.methods``).

A method is an estimator in the style of deeptime and scikit-learn: options go to the constructor, ``fit(data)``
trains on a :class:`cvplug.data.TrainingData` and returns the method itself, and then ``method.cv`` is the
learned :class:`~cvplug.CollectiveVariable` and ``method.model`` the method's own model (a deeptime TICA model,
a DynAE result, a FlowVAE, an NCT model, a coarse-grained generative model).

>>> from cvplug import methods
>>> tica = methods.create("tica", {"n_components": 1})
>>> tica.n_components, "pairs" in tica.needs
(1, True)

A third party adds a method without touching cvplug: subclass :class:`Method`, then declare in its own
``pyproject.toml``::

    [project.entry-points."cvplug.methods"]
    mymethod = "mypackage.mymodule:MyMethod"

``cvplug learn --method mymethod --option key=value`` then builds ``MyMethod(key=value, ...)`` and calls its
``fit`` after every round. Within one Python process, :func:`register` does the same without packaging
(``examples/custom_method.py``). The core never imports a plugin module directly; it asks :func:`get`.
"""
from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import entry_points
from typing import Any, Optional

__all__ = ["Method", "NEEDS", "DEVICES", "RUN_OPTIONS", "BASE_OPTIONS", "available", "get", "create", "register",
           "parse_option", "GROUP"]

GROUP = "cvplug.methods"
RUN_OPTIONS = ("seed", "work_dir", "progress")  # set by the caller of a method, not by its user
BASE_OPTIONS = (*RUN_OPTIONS, "device")  # what Method.__init__ takes besides n_components: a subclass passes them on

NEEDS = {
    "frames": "frames of the system (features computed by the core)",
    "pairs": "time-lagged pairs of frames (lag in frames)",
    "weights": "per-frame statistical weights of biased frames",
    "system": "the system's force field, through the autograd bridge (no data needed)",
}

DEVICES = ("auto", "cpu", "cuda")
"""Values of the ``device`` option: ``"auto"`` trains on CUDA where torch sees a GPU and the method can use one
(:attr:`Method.devices`), on the CPU otherwise."""


class Method:
    """Base class of the estimators: ``Method(n_components, *, seed, work_dir, progress, device, **options)``.

    Parameters
    ----------
    n_components : number of CV components d.
    seed : random seed; the same seed gives the same CV on the same machine and device.
    work_dir : folder for checkpoints (an interrupted fit resumes from it), or None.
    progress : show progress bars.
    device : where to train, one of :data:`DEVICES`; ``"cuda"`` on a method that trains on the CPU only raises
        ValueError. The CV is always returned on the CPU (it is exported and evaluated there).

    Notes
    -----
    Subclasses set ``name``, ``summary`` (one line), ``needs`` (keys of :data:`NEEDS`), ``devices`` (the torch
    device types :meth:`fit` can train on; CPU only by default) and implement :meth:`fit`, which sets ``self.cv``
    and ``self.model`` and returns ``self``.
    """

    name: str = ""
    summary: str = ""
    needs: tuple[str, ...] = ("frames",)
    devices: tuple[str, ...] = ("cpu",)

    def __init__(self, n_components: int = 2, *, seed: int = 0, work_dir=None, progress: bool = True,
                 device: str = "auto"):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        if device not in ("auto", *self.devices):
            raise ValueError(f"method {self.name!r} trains on the CPU only; leave device out or set device=cpu")
        self.n_components, self.seed, self.work_dir, self.progress = n_components, int(seed), work_dir, progress
        self.device = device
        self.cv = None
        self.model: Any = None

    def training_device(self) -> str:
        """The torch device :meth:`fit` trains on here: ``device`` resolved (``"auto"`` → ``"cuda"`` where torch
        sees a GPU and the method can use it, else ``"cpu"``). ``"cuda"`` with no GPU visible raises ValueError."""
        import torch

        gpu = torch.cuda.is_available()
        if self.device == "cuda" and not gpu:
            raise ValueError("device=cuda, but torch sees no CUDA GPU here; set device=cpu or leave it out")
        return "cuda" if self.device != "cpu" and gpu and "cuda" in self.devices else "cpu"

    @classmethod
    def options(cls) -> dict[str, Any]:
        """The options the constructor takes, with their defaults (``inspect.Parameter.empty`` if none).
        A method whose options live elsewhere (e.g. a settings dataclass) extends this."""
        options: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if "__init__" in vars(klass) and issubclass(klass, Method):
                for name, parameter in inspect.signature(klass.__init__).parameters.items():
                    if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                        options[name] = parameter.default
        return options

    def check(self, spec) -> None:
        """Raise ValueError if this method cannot learn a CV of system ``spec``; called before any MD runs."""

    def fit(self, data) -> "Method":  # pragma: no cover - interface
        """Train on ``data`` (:class:`cvplug.data.TrainingData`); sets ``cv`` and ``model``; returns self."""
        raise NotImplementedError

    def checkpoint(self, filename: str):
        """Path of a checkpoint file in ``work_dir``, or None when there is no work folder."""
        from pathlib import Path

        return Path(self.work_dir) / filename if self.work_dir is not None else None


_REGISTERED: dict[str, type[Method]] = {}


def register(method: type[Method]) -> type[Method]:
    """Register a :class:`Method` subclass under its ``name`` for this Python process (usable as a class
    decorator); it then works with :func:`get`, :func:`create` and :func:`available` like an installed plugin.
    A name already registered or installed raises ValueError. ``examples/custom_method.py`` shows it at work.
    """
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise TypeError(f"register() takes a subclass of cvplug.methods.Method, got {method!r}")
    if not method.name or not method.name.replace("-", "_").isidentifier():
        raise ValueError(f"a method needs a name of letters, digits, '_' or '-', got {method.name!r}")
    if method.name in available():
        raise ValueError(f"a CV method named {method.name!r} is already registered ({available()[method.name]})")
    _REGISTERED[method.name] = method
    return method


def available() -> dict[str, str]:
    """Registered method names → where the class lives (``module:object``): installed entry points and the
    classes given to :func:`register`."""
    registered = {name: f"{m.__module__}:{m.__qualname__}" for name, m in _REGISTERED.items()}
    return {**{ep.name: ep.value for ep in entry_points(group=GROUP)}, **registered}


def get(name: str) -> type[Method]:
    """The method class registered as ``name``; unknown names raise ValueError listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available())) or "none installed"
        raise ValueError(f"unknown CV method {name!r}; registered methods: {known}")
    method = matches[0].load()
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise TypeError(f"the entry point {matches[0].value} for {name!r} is not a cvplug.methods.Method class")
    return method


def create(name: str, options: Optional[dict] = None, **run) -> Method:
    """Build method ``name`` with user ``options``; ``run`` holds :data:`RUN_OPTIONS`. An unknown option
    raises ValueError naming it and listing the method's options."""
    method = get(name)
    options = dict(options or {})
    known = method.options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(k for k in known if k not in RUN_OPTIONS)
        raise ValueError(f"unknown option {', '.join(unknown)} for method {name!r}; its options: {listed}")
    return method(**options, **run)


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` → (key, value); the value is read as a TOML value (``3``, ``0.5``, ``true``, ``[64, 64]``,
    ``"text"``), and taken as a plain string if it is not one."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise ValueError(f"a method option is KEY=VALUE, e.g. epochs=50, not {text!r}")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()
