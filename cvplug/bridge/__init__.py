"""OpenMM ↔ torch autograd bridge: batched energies and forces of a real force field inside torch losses.

>>> import torch
>>> from cvplug import systems
>>> from cvplug.bridge import OpenMMEnergy
>>> spec = systems.load("ala2-vacuum")
>>> energy = OpenMMEnergy(spec, batch_strategy="replicated", copies=4)
>>> x = torch.tensor(spec.positions).expand(4, -1, -1).clone().requires_grad_()
>>> u = energy(x)                  # reduced energies U/kT, shape [4]
>>> u.sum().backward()             # x.grad = -F/kT from the same OpenMM call
>>> round(u[0].item() * energy.kT, 2)   # kJ/mol
-88.09

Strategies: :mod:`.single` (one Context), :mod:`.pool` (worker processes), :mod:`.replicated` (one Context
holding many copies of a vacuum molecule); bad samples: :mod:`.policy`.
"""
import torch  # noqa: F401  (torch before openmm, so OpenMM's TorchForce kernels load)

from .energy import STRATEGIES, OpenMMEnergy, default_strategy
from .policy import SamplePolicy
from .replicated import SUPPORTED_FORCES, replicate

__all__ = ["OpenMMEnergy", "SamplePolicy", "STRATEGIES", "SUPPORTED_FORCES", "default_strategy", "replicate"]
