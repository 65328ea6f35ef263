"""Adaptive tempering (Schöberl et al., Algorithm 1): β rises from ≈ 0 to the target in steps that keep the
relative increase of the KL estimate below c_max.

After the model has been trained at β, the next inverse temperature is β' = β + Δβ with Δβ starting at Δβ_max and
multiplied by ``shrink`` (0.6) until

    (KL̂(β') − KL̂(β)) / KL̂(β) ≤ c_max,

where both KL̂ come from the same samples of q drawn at β, KL̂(β') through the importance-sampled log Z ratio
(:func:`.objective.kl_estimate`). Steps never jump over a ``milestone`` (a β at which the caller wants the model,
e.g. β = 0.5 to compare with exact statistics) nor over the target, and are never smaller than ``min_step``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["AdaptiveTempering"]


@dataclass(frozen=True)
class AdaptiveTempering:
    """The β schedule of Algorithm 1; see the module docstring.

    Parameters
    ----------
    start : first inverse temperature (relative to the target's, so dimensionless), > 0.
    target : final inverse temperature (1 = the system's temperature).
    max_step : Δβ_max.
    c_max : largest accepted relative increase of the KL estimate.
    shrink : factor applied to a rejected step (the paper's 0.6).
    min_step : smallest step; accepted whatever the KL increase.
    milestones : inverse temperatures the schedule must stop at.
    """

    start: float = 1e-3
    target: float = 1.0
    max_step: float = 0.1
    c_max: float = 1.0
    shrink: float = 0.6
    min_step: float = 1e-5
    milestones: Sequence[float] = ()

    def __post_init__(self):
        if not 0 < self.start <= self.target:
            raise ValueError(f"need 0 < start ≤ target, got start={self.start}, target={self.target}")
        if not (self.max_step > 0 and self.c_max > 0 and 0 < self.shrink < 1 and 0 < self.min_step <= self.max_step):
            raise ValueError("need max_step > 0, c_max > 0, 0 < shrink < 1 and 0 < min_step ≤ max_step, got "
                             f"{self.max_step}, {self.c_max}, {self.shrink}, {self.min_step}")
        if any(not self.start < m < self.target for m in self.milestones):
            raise ValueError(f"milestones must lie strictly between start and target, got {tuple(self.milestones)}")

    def done(self, beta: float) -> bool:
        return beta >= self.target

    def next(self, beta: float, kl: Callable[[float], float]) -> float:
        """The next β after ``beta``; ``kl(b)`` is the KL estimate at inverse temperature b (from samples at β)."""
        if self.done(beta):
            return self.target
        ceiling = min([m for m in self.milestones if m > beta] + [self.target])
        kl_now = max(kl(beta), 1e-12)
        step = self.max_step
        while step > self.min_step:
            proposal = _snap(beta + step, ceiling)
            if (kl(proposal) - kl_now) / kl_now <= self.c_max:
                return proposal
            step *= self.shrink
        return _snap(beta + self.min_step, ceiling)


def _snap(beta: float, ceiling: float) -> float:
    """min(beta, ceiling), with rounding errors of summed steps (0.9 + 0.1 < 1.0) snapped onto the ceiling."""
    return ceiling if beta >= ceiling - 1e-9 * ceiling else beta
