"""What the bridge does with bad inputs and bad samples: the documented policy.

1. Positions that contain NaN or inf, and an empty batch, raise a ``ValueError`` before anything reaches OpenMM.
2. A reduced energy above ``cap`` (in kT) is replaced by a lin-log cap, ``u' = cap + log(1 + u - cap)``, whose
   gradient is the true gradient times ``1 / (1 + u - cap)``: continuous in value and slope at ``u = cap``, so one
   sample with an exploding energy cannot dominate a batch's loss or gradient (Noé et al., Science 365, 2019,
   Boltzmann generators, use the same cut).
3. A sample whose energy or any force is NaN or inf (e.g. two atoms at the same place) is *masked*: its energy
   becomes the ceiling ``cap + log(1 + f_max)`` (``f_max`` the largest float64, so u' ≈ cap + 709.8, above every
   finite sample) and its gradient zero; the bridge records which samples were masked and warns. With
   ``nonfinite="raise"`` such a batch raises a ``ValueError`` naming the samples instead. Values are computed per
   sample: a bad sample never borrows another sample's (or an earlier call's) values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = ["SamplePolicy", "check_positions"]

_NONFINITE_CHOICES = ("mask", "raise")


def check_positions(positions: torch.Tensor, n_atoms: int) -> None:
    """Raise a ``ValueError`` unless ``positions`` is a finite float tensor of shape [batch, n_atoms, 3] (nm) with
    batch ≥ 1."""
    if not torch.is_floating_point(positions):
        raise ValueError(f"positions must be a floating-point tensor (nm), got dtype {positions.dtype}")
    if positions.dim() != 3 or positions.shape[1:] != (n_atoms, 3):
        raise ValueError(f"positions must have shape [batch, {n_atoms}, 3] (nm), got {tuple(positions.shape)}")
    if positions.shape[0] == 0:
        raise ValueError(f"the batch is empty (positions of shape {tuple(positions.shape)}); give at least one "
                         "sample")
    finite = torch.isfinite(positions.detach()).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"positions contain NaN or inf in samples {bad}; fix them before asking OpenMM for energies")


@dataclass(frozen=True)
class SamplePolicy:
    """Per-sample handling of high and non-finite energies (see the module docstring).

    Parameters
    ----------
    cap : reduced energy (units of kT) above which the lin-log cap applies; ``None`` returns raw energies.
    nonfinite : ``"mask"`` (ceiling energy, zero gradient, warning) or ``"raise"`` (ValueError).
    """

    cap: Optional[float] = 1e4
    nonfinite: str = "mask"

    def __post_init__(self):
        if self.nonfinite not in _NONFINITE_CHOICES:
            raise ValueError(f"nonfinite must be one of {_NONFINITE_CHOICES}, not {self.nonfinite!r}")
        if self.cap is not None and not np.isfinite(self.cap):
            raise ValueError(f"cap must be a finite reduced energy (kT) or None, not {self.cap!r}")

    @property
    def ceiling(self) -> float:
        """The reduced energy given to a masked sample: the capped value of the largest float64."""
        if self.cap is None:
            return float("inf")
        return self.cap + float(np.log1p(np.finfo(np.float64).max))

    def apply(self, u: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply the policy to reduced energies ``u`` [B] and their gradients ``grad`` [B, n, 3] (1/nm).

        Returns new arrays (capped energies, gradients, boolean mask of the masked samples); the inputs are
        not modified.
        """
        bad = ~(np.isfinite(u) & np.isfinite(grad).reshape(len(u), -1).all(axis=1))
        if bad.any() and self.nonfinite == "raise":
            raise ValueError(f"OpenMM returned NaN or inf energies or forces for samples {np.flatnonzero(bad).tolist()}"
                             " (overlapping atoms?); use SamplePolicy(nonfinite='mask') to mask them")
        u = np.where(bad, self.ceiling, u)
        grad = np.where(bad[:, None, None], 0.0, grad)
        if self.cap is not None:
            excess = np.maximum(u - self.cap, 0.0)
            high = (excess > 0) & ~bad
            u = np.where(high, self.cap + np.log1p(excess), u)
            grad = grad / np.where(high, 1.0 + excess, 1.0)[:, None, None]
        if bad.any():
            warnings.warn(f"OpenMM returned NaN or inf for {int(bad.sum())} of {len(u)} samples; masked them "
                          f"(reduced energy {self.ceiling:.6g}, zero gradient)", RuntimeWarning, stacklevel=2)
        return u, grad, bad
