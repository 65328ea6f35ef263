"""The settings of well-tempered metadynamics, defined and checked in one place (:class:`WellTempered`).

Every entry point that biases a run — :func:`cvplug.metad.run_metadynamics`, :func:`cvplug.metad.build_metadynamics`,
the learn loop's :class:`cvplug.learn.LearnSettings`, the continuous mode and the ``cvplug`` command — takes one
:class:`WellTempered`, so its defaults (hill height, bias factor, deposition frequency) exist once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional, Sequence

from ..runs import positive_int, positive_number

__all__ = ["WellTempered", "ENGINES"]

ENGINES = ("hills", "openmm")


@dataclass(frozen=True)
class WellTempered:
    """Well-tempered metadynamics (Barducci, Bussi & Parrinello, PRL 100, 020603, 2008): Gaussians of height
    ``height · exp(−V(s)/(k_B ΔT))`` every ``frequency`` MD steps along the CV s, ΔT = T(γ − 1) for the bias
    factor γ; the free energy is F(s) = −γ/(γ − 1) V(s).

    The defaults (2 kJ/mol hills every 100 steps, γ = 10) take alanine dipeptide out of its starting basin within
    the first biased rounds of ``cvplug learn`` (README, "Your own system").

    Parameters
    ----------
    height : initial Gaussian height, kJ/mol.
    bias_factor : γ > 1 (dimensionless).
    frequency : MD steps between depositions; a multiple of ``stride``.
    widths : Gaussian standard deviation per CV component, CV units; None: the CV's suggestion (5 % of its range).
    ranges : (lower, upper) per component, CV units: the grid of the FES (and of the bias for ``"openmm"``);
        None: the CV's calibrated suggestion, or its period.
    engine : ``"hills"`` (CV and bias in one ``openmm.PythonForce``) or ``"openmm"`` (``openmm.app.Metadynamics``
        with one TorchForce per component).
    stride : apply the bias every ``stride`` MD steps (multiple-time-step Langevin), like PLUMED's stride.

    Examples
    --------
    Bad values raise a ValueError naming the setting:

    >>> WellTempered(bias_factor=1.0)
    Traceback (most recent call last):
    ...
    ValueError: bias_factor must be a finite number > 1, got 1.0
    >>> WellTempered(height=1.2, frequency=500).bias_factor
    10.0
    """

    height: float = 2.0
    bias_factor: float = 10.0
    frequency: int = 100
    widths: Optional[tuple] = None
    ranges: Optional[tuple] = None
    engine: str = "hills"
    stride: int = 1

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {self.engine!r}")
        positive_int("frequency", self.frequency)
        positive_int("stride", self.stride)
        if self.frequency % self.stride:
            raise ValueError(f"frequency ({self.frequency}) must be a multiple of stride ({self.stride})")
        object.__setattr__(self, "bias_factor", positive_number("bias_factor", self.bias_factor, above=1.0))
        object.__setattr__(self, "height", positive_number("height (kJ/mol)", self.height))
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(positive_number("a Gaussian width", w) for w in self.widths))
        if self.ranges is not None:
            object.__setattr__(self, "ranges", tuple(_checked_ranges(self.ranges)))

    @classmethod
    def from_options(cls, base: Optional["WellTempered"] = None, **options) -> "WellTempered":
        """``base`` (default: the defaults) with the given fields replaced; None values are left out."""
        values = asdict(base) if base is not None else {}
        values.update({k: v for k, v in options.items() if v is not None})
        return cls(**values)

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """The names of the settings, e.g. to pick them out of a wider set of options."""
        return tuple(f.name for f in fields(WellTempered))

    def for_cv(self, cv) -> "WellTempered":
        """These settings with the ranges and widths for ``cv`` filled in (see :meth:`grid`): what the engines
        take."""
        ranges, widths = self.grid(cv)
        return replace(self, ranges=tuple(ranges), widths=tuple(widths))

    def grid(self, cv) -> tuple[list[tuple[float, float]], list[float]]:
        """Ranges (CV units) and Gaussian widths (CV units) per component for ``cv``: these settings', or the
        suggestions in the CV's metadata (calibrated range, its period; widths 5 % of the range)."""
        meta = cv.metadata
        d = meta["n_components"]
        ranges = self.ranges or meta["info"].get("bias_range") or [p for p in meta["periodic"] if p is not None]
        if not ranges or len(ranges) != d:
            raise ValueError(f"give a bias range (lower, upper) for each of the {d} CV components; this CV's file "
                             "suggests none (CollectiveVariable.calibrate records suggestions)")
        ranges = _checked_ranges(ranges)
        widths = self.widths or meta["info"].get("bias_width") or [0.05 * (hi - lo) for lo, hi in ranges]
        if len(widths) != d:
            raise ValueError(f"give a positive Gaussian width for each of the {d} components, got {widths}")
        return ranges, [positive_number("a Gaussian width", w) for w in widths]


def _checked_ranges(ranges: Sequence) -> list[tuple[float, float]]:
    """Ranges as (lower, upper) float pairs; ValueError unless each is finite with upper > lower."""
    try:
        ranges = [tuple(float(v) for v in r) for r in ranges]
    except (TypeError, ValueError):
        raise ValueError(f"a bias range is a pair (lower, upper) of numbers per component, got {ranges}") from None
    if any(len(r) != 2 or not (math.isfinite(r[0]) and math.isfinite(r[1])) or r[1] <= r[0] for r in ranges):
        raise ValueError(f"each bias range must be finite (lower, upper) with upper > lower, got {ranges}")
    return ranges
