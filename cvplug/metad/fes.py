"""What a metadynamics run yields: its free energy surface (saved as ``fes.npz`` and pictured in ``fes.png``) and
per-frame reweighting factors.

The reweighting factors are the static final-bias estimator of well-tempered metadynamics: w ∝ exp(V_final(s)/kT)
at each colvar line, exact once the bias has converged, otherwise biased towards the last-filled regions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import MOLAR_GAS_CONSTANT
from ..runs import read_json, walker_name, write_atomic
from .colvar import read_colvar
from .hills import HillsBias

__all__ = ["fes_axes", "save_fes", "shared_free_energy", "final_bias_weights", "reweighting_factors",
           "shared_reweighting_factors"]


def fes_axes(ranges, widths) -> list[np.ndarray]:
    """The FES grid: per component, points from its lower to its upper range (CV units), five per width."""
    return [np.linspace(lo, hi, int(np.ceil(5 * (hi - lo) / w))) for (lo, hi), w in zip(ranges, widths)]


def save_fes(path: Path, axes: Sequence[np.ndarray], free_energy: np.ndarray, names: Sequence[str],
             kT: float) -> None:
    """Write the FES (kJ/mol, indexed [axis 0, axis 1, …]) to ``path`` (``.npz``: ``free_energy``, ``names``,
    ``axis<k>`` in CV units) and its picture in kT (up to 25 kT) beside it (``.png``)."""
    from ..plots import plot_fes

    path = Path(path)
    write_atomic(path, lambda handle: np.savez(handle, free_energy=free_energy, names=np.array(names),
                                               **{f"axis{k}": a for k, a in enumerate(axes)}))
    plot_fes(axes, free_energy / kT, names, path.with_suffix(".png"), units="kT", vmax=25.0)


def final_bias_weights(bias: HillsBias, values: np.ndarray, kT: float) -> np.ndarray:
    """Per-frame weights (sum 1) w ∝ exp(V(s)/kT) of CV values ``values`` [frames, d] under the final ``bias``
    (its exact sum of hills, kJ/mol); ``kT`` in kJ/mol."""
    energies = bias.exact(values)
    weights = np.exp((energies - energies.max()) / kT)
    return weights / weights.sum()


def _bias_on_disk(out_dir: Path, walker: int) -> tuple[HillsBias, dict]:
    """The bias of every walker's hills (and the inherited ones) in ``out_dir``, as ``walker`` recorded its
    settings (``metadynamics.json``), read only: the run may still be going."""
    settings = read_json(out_dir / walker_name("metadynamics.json", walker))
    if settings is None:
        raise FileNotFoundError(f"no metadynamics settings of walker {walker} in {out_dir}")
    folder = out_dir / ("hills" if settings["engine"] == "hills" else "bias")
    bias = HillsBias(settings["widths"], settings["periods"], settings["temperature"], settings["bias_factor"],
                     settings["height"], folder=folder, walker=settings["walker"], readonly=True)
    return bias, settings


def shared_free_energy(out_dir) -> tuple[list[np.ndarray], np.ndarray, list[str], float]:
    """The FES of a run's shared bias from its files: the hills of all its walkers (either engine) summed exactly
    on :func:`fes_axes`. Returns (axes in CV units, F [axis 0, axis 1, …] in kJ/mol with minimum 0, the CV's
    component names, kT in kJ/mol)."""
    bias, settings = _bias_on_disk(Path(out_dir), 0)
    axes = fes_axes(settings["ranges"], settings["widths"])
    return axes, bias.free_energy(axes), settings["names"], MOLAR_GAS_CONSTANT * settings["temperature"]


def reweighting_factors(out_dir, walker: int = 0) -> np.ndarray:
    """Per-frame weights (sum 1) of a ``"hills"`` run read from its files: w ∝ exp(V_final(s)/kT) at each colvar
    line of ``walker``, V_final the bias of all walkers' hills (and the inherited ones) in ``out_dir``.
    Reads only: the run may still be going."""
    return _weights(Path(out_dir), [walker])[0]


def shared_reweighting_factors(out_dir, walkers: int) -> list[np.ndarray]:
    """As :func:`reweighting_factors` for walkers 0 … ``walkers`` − 1 together: one array per walker, all of them
    summing to 1, so that frames of different walkers weigh as their shared final bias says."""
    return _weights(Path(out_dir), list(range(walkers)))


def _weights(out_dir: Path, walkers: Sequence[int]) -> list[np.ndarray]:
    bias, settings = _bias_on_disk(out_dir, walkers[0])
    if settings["engine"] != "hills":
        raise ValueError(f"reweighting needs a run with engine='hills'; {out_dir} used {settings['engine']!r}")
    colvars = [read_colvar(out_dir / walker_name("colvar.dat", walker))[:, 1:-1] for walker in walkers]
    weights = final_bias_weights(bias, np.concatenate(colvars), MOLAR_GAS_CONSTANT * settings["temperature"])
    return np.split(weights, np.cumsum([len(c) for c in colvars])[:-1])
