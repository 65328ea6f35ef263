"""Free-energy and conformational analysis: projections of a FES, alanine-dipeptide basin populations."""
from __future__ import annotations

import numpy as np

__all__ = ["project_fes", "ala2_basins", "ALA2_BASINS"]

# Backbone regions (degrees), as used throughout cvplug's acceptance tests.
ALA2_BASINS = {
    "beta (C7eq/C5)": lambda phi, psi: (phi < 0) & ((psi > 120) | (psi < -150)),
    "alpha_R": lambda phi, psi: (phi < 0) & (psi > -120) & (psi < 50),
    "phi>0 (alpha_L/C7ax)": lambda phi, psi: (phi > 0) & (phi < 120),
}


def ala2_basins(phi: np.ndarray, psi: np.ndarray, weights=None) -> dict[str, float]:
    """Fraction of frames (optionally weighted) in each backbone basin; angles in radians."""
    phi, psi = np.degrees(phi), np.degrees(psi)
    weights = np.ones_like(phi) if weights is None else np.asarray(weights, dtype=float)
    return {name: float(weights[inside(phi, psi)].sum() / weights.sum()) for name, inside in ALA2_BASINS.items()}


def project_fes(free_energy: np.ndarray, kT: float, keep: int = 0) -> np.ndarray:
    """Free energy along axis ``keep`` of a grid FES (same energy units as ``kT``): −kT log Σ exp(−F/kT).

    The result has its minimum at 0.
    """
    other = tuple(a for a in range(free_energy.ndim) if a != keep)
    shifted = -(free_energy - free_energy.min()) / kT
    projected = -kT * np.log(np.exp(shifted).sum(axis=other)) if other else free_energy - free_energy.min()
    return projected - projected.min()
