"""The main job: alanine dipeptide in implicit solvent, from one basin to its free energy surface with a learned CV.

``cvplug demo`` starts in the extended β basin (φ = ψ = 180°) knowing nothing about φ or ψ and runs the learn
loop (:mod:`cvplug.learn`): unbiased MD, then rounds of well-tempered metadynamics along a CV learned from
aligned heavy-atom Cartesians by the chosen method (DynAE by default), retrained after every round. It ends with
the learned CV's correlation with φ and ψ, the basins visited, and the reweighted FES on (φ, ψ) and along φ,
compared with the shipped reference. ``method="analytic"`` biases the true (φ, ψ) instead (exported and attached
through the same TorchScript path), the first version of the demo.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from cvplug import systems
from .analysis import ala2_basins, fes_rms_error, histogram_fes, project_fes, reference_fes_phi
from .cv import ANGLE, CollectiveVariable
from .features import Dihedrals
from .learn import LearnSettings, prepare
from .metad import run_metadynamics
from .metrics import circular_linear_correlation
from .plots import plot_fes
from .trajectory import load_trajectory

__all__ = ["phi_psi_cv", "run_demo", "DEFAULT", "FULL"]

SYSTEM = "ala2-implicit"
FEATURES = ("positions:not element H",)  # aligned heavy-atom Cartesians: the CV is not told about φ or ψ
# steps of 2 fs; height kJ/mol; frequency = MD steps between hills; stride = MD steps between bias evaluations.
# DEFAULT biases with the defaults of cvplug.metad.WellTempered.
DEFAULT = dict(rounds=4, steps_per_round=50_000, report_every=50, stride=1)       # 0.4 ns in all
FULL = dict(rounds=6, steps_per_round=250_000, report_every=100, stride=1, height=1.5, frequency=200,
            bias_factor=8.0)                                                      # 3 ns in all


def phi_psi_cv(spec: systems.SystemSpec) -> CollectiveVariable:
    """The backbone dihedrals (φ, ψ) of alanine dipeptide, in radians, as a CollectiveVariable."""
    return CollectiveVariable(Dihedrals([spec.extras["phi_atoms"], spec.extras["psi_atoms"]]), torch.nn.Identity(),
                              n_atoms=spec.n_atoms, names=["phi", "psi"], periodic=[ANGLE, ANGLE], units="rad",
                              method="analytic", periodic_box=spec.periodic)


def _frames(out_dir: Path, method: str, spec, settings: dict, seed: int, platform: str, progress: bool):
    """Run the sampling; returns (positions of the biased frames, their weights, the final CV or None)."""
    if method == "analytic":
        steps = settings["rounds"] * settings["steps_per_round"]
        result = run_metadynamics(spec, phi_psi_cv(spec), steps, out_dir / "analytic", widths=[0.35, 0.35],
                                  seed=seed, platform=platform, progress=progress,
                                  **{k: v for k, v in settings.items() if k not in ("rounds", "steps_per_round")})
        positions = load_trajectory(result.trajectory).xyz
        return positions, result.reweighting_factors(), None
    run = prepare(SYSTEM, out_dir / "learn", LearnSettings(method=method, seed=seed, platform=platform,
                                                           features=FEATURES, **settings), progress=progress)
    run.run()
    positions = np.concatenate(run.frames[1:])  # the biased rounds
    weights = np.concatenate(run.weights[1:]) / (len(run.weights) - 1)
    return positions, weights, run.cv


def run_demo(out_dir="demo-output", method: str = "dynae", full: bool = False, seed: int = 0,
             platform: str = "CPU", progress: bool = True, settings: Optional[dict] = None) -> dict:
    """Run the demo; prints a one-screen summary and returns its numbers. ``settings`` (rounds,
    steps_per_round, report_every, stride, height, frequency, bias_factor) override DEFAULT / FULL."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = systems.load(SYSTEM)
    settings = settings or (FULL if full else DEFAULT)
    start = time.perf_counter()
    positions, weights, cv = _frames(out_dir, method, spec, settings, seed, platform, progress)
    seconds = time.perf_counter() - start
    angles = Dihedrals([spec.extras["phi_atoms"], spec.extras["psi_atoms"]])(torch.as_tensor(positions)).numpy()
    phi, psi = angles[:, 0], angles[:, 1]
    grid, reference, kT = reference_fes_phi()
    fes_phi = histogram_fes(phi, weights, grid, kT)
    fes_2d = _histogram_2d(phi, psi, weights, grid, kT)
    np.savez(out_dir / "fes_phi_psi.npz", phi=grid, psi=grid, free_energy=fes_2d)
    np.savez(out_dir / "fes_phi.npz", phi=grid, free_energy=fes_phi, reference=reference)
    plot_fes([grid, grid], np.where(np.isfinite(fes_2d), fes_2d, np.nan), ["phi (rad)", "psi (rad)"],
             out_dir / "fes_phi_psi.png")
    _plot_phi(grid, fes_phi, reference, out_dir / "fes_phi.png")
    rms, coverage = fes_rms_error(fes_phi, reference, 8 * kT)
    basins = ala2_basins(phi, psi)
    result = {"method": method, "seed": seed, "seconds": seconds, "frames": len(phi), "basins_visited": basins,
              "basins_reweighted": ala2_basins(phi, psi, weights), "fes_phi_rms_kT": rms / kT,
              "fes_phi_coverage": coverage,
              "correlation": _correlation(cv, positions, phi, psi) if cv is not None else None}
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2))
    _print_summary(result, out_dir, settings, spec)
    return result


def _correlation(cv, positions: np.ndarray, phi: np.ndarray, psi: np.ndarray) -> dict:
    """Circular-linear correlation of each CV component with φ and ψ over the biased frames."""
    with torch.no_grad():
        values = cv(torch.as_tensor(positions)).double().numpy()
    return {f"{name}~{cv.names[k]}": circular_linear_correlation(angle, values[:, k])
            for name, angle in (("phi", phi), ("psi", psi)) for k in range(values.shape[1])}


def _histogram_2d(phi, psi, weights, grid, kT) -> np.ndarray:
    edges = np.append(grid[:-1] - (grid[1] - grid[0]) / 2, grid[-1] - (grid[1] - grid[0]) / 2)
    wrapped = [(a - edges[0]) % (2 * np.pi) + edges[0] for a in (phi, psi)]
    counts, _, _ = np.histogram2d(*wrapped, bins=[edges, edges], weights=weights)
    counts = np.pad(counts, ((0, 1), (0, 1)), mode="wrap")
    with np.errstate(divide="ignore"):
        free = -kT * np.log(counts)
    return free - free[np.isfinite(free)].min()


def _plot_phi(grid, fes_phi, reference, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(grid, reference, "k--", label="reference (WT-metad on φ, ψ)")
    ax.plot(grid, np.where(np.isfinite(fes_phi), fes_phi, np.nan), label="learned CV, reweighted")
    ax.set_xlabel("φ (rad)")
    ax.set_ylabel("free energy (kJ/mol)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_summary(result: dict, out_dir: Path, settings: dict, spec) -> None:
    simulated = settings["rounds"] * settings["steps_per_round"] * spec.timestep / 1000
    lines = [f"cvplug demo: alanine dipeptide (OBC2, {spec.temperature:.0f} K) from the β basin, "
             f"CV method {result['method']!r}, seed {result['seed']}",
             f"  sampled           {simulated:.2f} ns in {settings['rounds']} rounds, {result['seconds']:.0f} s "
             "wall time (MD + training)",
             "  biased frames     " + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in result["basins_visited"].items()),
             "  reweighted        " + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in result["basins_reweighted"].items()),
             f"  FES along phi     RMS {result['fes_phi_rms_kT']:.2f} kT from the reference, over the "
             f"{100 * result['fes_phi_coverage']:.0f}% of the region where the reference is < 8 kT that was visited"]
    if result["correlation"]:
        lines.append("  CV vs angles      " + ", ".join(f"{k}: {v:.2f}" for k, v in result["correlation"].items())
                     + " (circular-linear correlation)")
    where = out_dir / ("learn" if result["method"] != "analytic" else "analytic")
    lines += [f"  FES (phi, psi)    {out_dir / 'fes_phi_psi.npz'}, {out_dir / 'fes_phi_psi.png'}",
              f"  FES along phi     {out_dir / 'fes_phi.npz'}, {out_dir / 'fes_phi.png'}",
              f"  rounds, CV files  {where}", f"  summary           {out_dir / 'summary.json'}"]
    print("\n".join(lines))
