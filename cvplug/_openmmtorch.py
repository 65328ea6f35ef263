"""openmm-torch's TorchForce, imported without its stray deprecation line.

openmmtorch 1.5 imports ``simtk.openmm``, whose shim logs "importing 'simtk.openmm' is deprecated" on the root
logger; the message concerns openmmtorch's code, not the user's, so it is silenced for that one import.
"""
import logging

import torch  # noqa: F401  (before openmm)

_root = logging.getLogger()
_level = _root.level
_root.setLevel(logging.ERROR)
try:
    from openmmtorch import TorchForce
finally:
    _root.setLevel(_level)

__all__ = ["TorchForce"]
