"""Per-dimension densities of the decoders: Gaussian for linear coordinates, von Mises for periodic ones.

A coordinate is described by a location ``loc`` and a log-scale ``log_scale``: Normal(loc, exp(log_scale)) for
a linear coordinate and von Mises(loc, κ = exp(−2·log_scale)) for an angle (radians), so that κ = 1/σ² and
both agree for narrow distributions. Angles are handled on [−π, π).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["wrap", "log_prob", "sample", "LOG_SCALE_RANGE"]

LOG_SCALE_RANGE = (-9.0, 4.0)  # clamp of the log-scales the networks predict (standardised units)
_LOG_2PI = math.log(2 * math.pi)


def wrap(angle: Tensor) -> Tensor:
    """Angles (radians) mapped to [−π, π)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def _von_mises_log_prob(x: Tensor, loc: Tensor, concentration: Tensor) -> Tensor:
    # log I0(κ) = log i0e(κ) + κ, so κ cos(x − μ) − log I0(κ) = κ (cos(x − μ) − 1) − log i0e(κ)
    return concentration * (torch.cos(x - loc) - 1) - _LOG_2PI - torch.log(torch.special.i0e(concentration))


def log_prob(x: Tensor, loc: Tensor, log_scale: Tensor, periodic: Tensor) -> Tensor:
    """Elementwise log-density [..., D] of ``x`` [..., D]; ``periodic`` [D] bool selects von Mises columns."""
    log_scale = log_scale.clamp(*LOG_SCALE_RANGE)
    gaussian = -0.5 * ((x - loc) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * _LOG_2PI
    if not bool(periodic.any()):
        return gaussian
    von_mises = _von_mises_log_prob(x, loc, torch.exp(-2 * log_scale))
    return torch.where(periodic, von_mises, gaussian)


def sample(loc: Tensor, log_scale: Tensor, periodic: Tensor) -> Tensor:
    """One draw per element; periodic columns come out wrapped to [−π, π)."""
    log_scale = log_scale.clamp(*LOG_SCALE_RANGE)
    draw = loc + torch.exp(log_scale) * torch.randn_like(loc)
    if not bool(periodic.any()):
        return draw
    angles = torch.distributions.VonMises(loc.double(), torch.exp(-2 * log_scale).double()).sample().to(loc.dtype)
    return torch.where(periodic, wrap(angles), draw)
