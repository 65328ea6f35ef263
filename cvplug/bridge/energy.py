"""``OpenMMEnergy``: an OpenMM force field as a differentiable torch module of batched positions."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Mapping, Optional

import openmm
import openmm.unit as unit
import torch

from ..constants import MOLAR_GAS_CONSTANT

from ..constants import get_platform
from .context import GPU_PLATFORMS, Evaluator, single_precision, translation_invariant, usable_cores
from .function import ReducedEnergy
from .policy import SamplePolicy, check_positions
from .pool import WorkerPool
from .replicated import ReplicatedContext, replicable_terms
from .single import SingleContext

if TYPE_CHECKING:  # pragma: no cover
    from cvplug.systems import SystemSpec

__all__ = ["OpenMMEnergy", "STRATEGIES", "default_strategy"]

STRATEGIES = ("single", "pool", "replicated")


def default_strategy(platform: str, system: openmm.System) -> str:
    """The batch strategy used when none is given.

    GPU platforms: ``"single"`` (one Context already fills the device). CPU: ``"replicated"`` when the system
    allows it (a vacuum molecule, see :mod:`cvplug.bridge.replicated`), else ``"pool"`` on more than one core.
    Reference: ``"pool"`` on more than one core. Otherwise ``"single"``.
    """
    if platform in GPU_PLATFORMS:
        return "single"
    if platform == "CPU":
        try:
            replicable_terms(system)
            return "replicated"
        except ValueError:
            pass
    return "pool" if usable_cores() > 1 else "single"


class OpenMMEnergy(torch.nn.Module):
    r"""Reduced potential energies :math:`u(x) = U(x)/k_BT` of a system, from OpenMM, as a torch module.

    Positions [batch, n_atoms, 3] in nm (any float dtype, CPU or CUDA tensor) go in; energies u [batch] come
    out in the same dtype and device, differentiable: the gradient is :math:`-F/k_BT` with the forces OpenMM
    returned in the same call (computed in float64). Put a force field inside any torch loss, e.g. the
    reverse Kullback-Leibler loss of a Boltzmann generator (Noé et al., Science 365, 2019).

    The bridge evaluates the given positions as they are: the system's constraints are not applied, and a
    periodic system keeps the box of its spec. One exception: on a single-precision platform (CPU, or a GPU
    without ``Precision=double``) each sample of a non-periodic, translation-invariant system is moved to put
    its centroid at the origin first (:func:`~cvplug.bridge.context.recentre`; same energy and forces, without
    the float32 rounding of far-away coordinates); :attr:`recentre` says whether it does. Bad samples follow
    :class:`~cvplug.bridge.policy.SamplePolicy` (an empty batch and NaN positions raise; huge energies are
    lin-log capped; NaN/inf results are masked and reported in :attr:`last_masked`).

    Parameters
    ----------
    system : a :class:`cvplug.systems.SystemSpec` (its System, positions, box and temperature are used).
    platform : OpenMM platform name ("CPU", "Reference", "CUDA", ...).
    batch_strategy : "single" (one Context, loop over the batch), "pool" (worker processes, each with a
        Context) or "replicated" (one Context holding ``copies`` copies of a vacuum molecule); default from
        :func:`default_strategy`.
    workers : worker processes, each with its own Context (default: the usable cores for "pool", else 1, i.e.
        in this process); "replicated" with workers > 1 runs one replicated Context in each worker.
    threads : CPU-platform threads per Context (default: 1 for "replicated", whose custom forces OpenMM evaluates
        on one thread anyway; otherwise the usable cores divided among the workers). A one-thread CPU Context
        shares its caller's core (:func:`~cvplug.bridge.context.shared_core`).
    copies : samples per OpenMM call of the replicated strategy.
    properties : further platform properties, e.g. ``{"Precision": "double"}`` on CUDA.
    policy : handling of high and non-finite energies.

    Example
    -------
    >>> from cvplug import systems
    >>> spec = systems.load("double-well")
    >>> energy = OpenMMEnergy(spec, platform="Reference", batch_strategy="single")
    >>> x = torch.zeros(2, 1, 3, dtype=torch.float64, requires_grad=True)
    >>> energy(x).sum().backward()
    >>> x.grad[:, 0, 0]   # du/dx1 = x1^3 - 6 x1 + 1 at x1 = 0
    tensor([1., 1.], dtype=torch.float64)
    """

    def __init__(self, system: "SystemSpec", platform: str = "CPU", batch_strategy: Optional[str] = None,
                 workers: Optional[int] = None, threads: Optional[int] = None, copies: int = 16,
                 properties: Optional[Mapping[str, str]] = None, policy: SamplePolicy = SamplePolicy()):
        super().__init__()
        get_platform(platform)
        self.batch_strategy = batch_strategy or default_strategy(platform, system.system)
        if self.batch_strategy not in STRATEGIES:
            raise ValueError(f"batch_strategy must be one of {STRATEGIES}, not {self.batch_strategy!r}")
        if self.batch_strategy == "replicated":
            replicable_terms(system.system)  # refuse unsupported systems here, not in a worker
        for name, value in (("workers", workers), ("threads", threads), ("copies", copies)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.workers = int(workers or (usable_cores() if self.batch_strategy == "pool" else 1))
        replicated = self.batch_strategy == "replicated"
        self.threads = int(threads or (1 if replicated else max(1, usable_cores() // self.workers)))
        self.n_atoms = system.n_atoms
        self.platform = platform
        self.policy = policy
        self.temperature = system.temperature
        self.recentre = single_precision(platform, properties) and translation_invariant(system.system)
        self.last_masked = torch.zeros(0, dtype=torch.bool)
        if replicated:
            make = partial(ReplicatedContext, system.system, system.positions, copies, platform, self.threads,
                           properties)
        else:
            make = partial(SingleContext, system.system, platform, self.threads, properties, system.box_vectors)
        pooled = self.batch_strategy == "pool" or self.workers > 1
        self.evaluator: Optional[Evaluator] = WorkerPool(make, self.workers) if pooled else make()

    @property
    def temperature(self) -> float:
        """Temperature in K; set it to change kT between calls (e.g. for tempering)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if hasattr(value, "value_in_unit"):
            value = value.value_in_unit(unit.kelvin)
        if not value > 0:
            raise ValueError(f"temperature must be positive (K), got {value}")
        self._temperature = float(value)

    @property
    def kT(self) -> float:
        """Thermal energy in kJ/mol (setting it sets the temperature)."""
        return MOLAR_GAS_CONSTANT * self._temperature

    @kT.setter
    def kT(self, value: float) -> None:
        self.temperature = value / MOLAR_GAS_CONSTANT

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Reduced energies [batch] of positions [batch, n_atoms, 3] (nm)."""
        if self.evaluator is None:
            raise RuntimeError("this OpenMMEnergy was closed; create a new one")
        check_positions(positions, self.n_atoms)
        u, self.last_masked = ReducedEnergy.apply(positions, self.evaluator, self.kT, self.policy, self.recentre)
        return u

    def close(self) -> None:
        """Release the Context or stop the worker processes; the module cannot evaluate afterwards."""
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None

    def __enter__(self) -> "OpenMMEnergy":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def extra_repr(self) -> str:
        return f"n_atoms={self.n_atoms}, platform={self.platform!r}, batch_strategy={self.batch_strategy!r}, " \
               f"temperature={self.temperature:g} K"
