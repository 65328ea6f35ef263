"""Physical constants and the OpenMM conventions every module shares.

One place for them, so that a temperature becomes an energy the same way in the bias, the bridge and the
shipped systems.
"""
from __future__ import annotations

import openmm
import openmm.unit as unit

__all__ = ["MOLAR_GAS_CONSTANT", "get_platform", "openmm_seed"]

MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
"""R in kJ/(mol K): k_B T in kJ/mol is ``MOLAR_GAS_CONSTANT * T``."""


def openmm_seed(seed: int) -> int:
    """The OpenMM random seed for a cvplug ``seed``: an integer in [1, 2**31 − 2], since OpenMM reads 0 as
    "pick one at random".

    >>> openmm_seed(0), openmm_seed(2**31 - 2)
    (1, 1)
    """
    return int(seed) % (2**31 - 2) + 1


def get_platform(name: str) -> openmm.Platform:
    """The OpenMM platform called ``name``; ValueError listing the available ones if there is none.

    >>> get_platform("Reference").getName()
    'Reference'
    """
    try:
        return openmm.Platform.getPlatformByName(name)
    except openmm.OpenMMException:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {name!r} is not available here; choose one of {names}") from None
