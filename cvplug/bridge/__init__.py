"""OpenMM ↔ torch autograd bridge: batched energies and forces of a real force field inside torch losses.

>>> from cvplug import systems
>>> from cvplug.bridge import OpenMMEnergy
>>> energy = OpenMMEnergy(systems.load("ala2-vacuum"), batch_strategy="replicated")  # doctest: +SKIP
>>> u = energy(positions)          # [batch] reduced energies U/kT, differentiable  # doctest: +SKIP

Strategies: :mod:`.single` (one Context), :mod:`.pool` (worker processes), :mod:`.replicated` (one Context
holding many copies of a vacuum molecule); bad samples: :mod:`.policy`.
"""
import torch  # noqa: F401  (torch before openmm, so OpenMM's TorchForce kernels load)

from .energy import STRATEGIES, OpenMMEnergy, default_strategy
from .policy import SamplePolicy
from .replicated import SUPPORTED_FORCES, replicate

__all__ = ["OpenMMEnergy", "SamplePolicy", "STRATEGIES", "SUPPORTED_FORCES", "default_strategy", "replicate"]
