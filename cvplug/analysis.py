"""Free-energy and conformational analysis: projections of a FES, alanine-dipeptide basin populations."""
from __future__ import annotations

import numpy as np

__all__ = ["project_fes", "ala2_basins", "ALA2_BASINS", "reference_fes_phi", "histogram_fes", "fes_rms_error"]

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


def reference_fes_phi() -> tuple[np.ndarray, np.ndarray, float]:
    """The shipped reference FES of alanine dipeptide (OBC2, 300 K) along φ: (φ grid in rad, F in kJ/mol, kT).

    Made by ``benchmarks/ala2_reference_fes.py``: 4 ns of well-tempered metadynamics on the true (φ, ψ) with
    OpenMM's engine and native torsions; the FES along φ changed by 0.20 kT RMS between 2 and 4 ns.
    """
    from importlib import resources

    data = np.load(resources.files("cvplug.systems") / "data" / "ala2-implicit-fes-reference.npz")
    return data["phi"], data["fes_phi"], float(data["kT"])


def histogram_fes(angles: np.ndarray, weights: np.ndarray, grid: np.ndarray, kT: float) -> np.ndarray:
    """Weighted free energy (units of kT) of periodic ``angles`` (rad) at ``grid`` points (rad), minimum 0;
    empty bins are +inf. Bins are centred on the grid points."""
    width = grid[1] - grid[0]
    index = np.round((np.asarray(angles) - grid[0]) / width).astype(int) % (len(grid) - 1)
    counts = np.bincount(index, weights=weights, minlength=len(grid) - 1)
    counts = np.append(counts, counts[0])  # the periodic end point equals the first
    with np.errstate(divide="ignore"):
        free = -kT * np.log(counts)
    return free - free[np.isfinite(free)].min()


def fes_rms_error(free: np.ndarray, reference: np.ndarray, below: float) -> tuple[float, float]:
    """RMS of free − reference over the points where the reference is below ``below`` (same units) and ``free``
    is finite, after removing the mean offset; and the fraction of those reference points ``free`` covers."""
    inside = reference < below
    covered = inside & np.isfinite(free)
    difference = free[covered] - reference[covered]
    rms = float(np.sqrt(np.mean((difference - difference.mean()) ** 2))) if covered.any() else float("inf")
    return rms, float(covered.sum() / inside.sum())
