"""Learn a CV while sampling: simulate → learn → bias with the new CV → learn again, round after round.

Round 0 is unbiased MD from the system's initial positions; round k ≥ 1 is well-tempered metadynamics along the
CV learned after round k − 1, started from the last frame of round k − 1. After every round the method's
``fit_trajectories`` is trained on all frames gathered so far (fine-tuning the previous CV where the method
supports it):

- time-lagged methods (DynAE, TICA) take lag pairs *within* each round's trajectory, never across rounds. In a
  biased round the pairs follow biased dynamics: the bias changes along the CV only, so short-lag pairs still
  show which way the system can move, which is what these methods need to find the slow directions;
- methods that need equilibrium averages receive per-frame weights w ∝ exp(V(s)/kT) with V the final bias of
  that round (the static-bias reweighting of well-tempered metadynamics); unbiased frames have weight 1.

The bias is carried from round to round: the hills of the earlier rounds are deposited again, in their order, at
the *new* CV values of the configurations where they were deposited, with the well-tempered heights this replay
gives (:meth:`cvplug.hills.HillsBias.redeposit`), and start round k as ``hills/hills.inherited.npy``, so
exploration accumulates instead of restarting with each new CV. (Keeping the old heights stacked hills wherever
the new CV maps many old configurations together and trapped the demo in a pocket of the β basin.)

Each round writes ``round_<k>/``: the trajectory, ``colvar.dat``, the bias, ``cv.pt`` (the CV learned after
it), ``fes.npz``/``fes.png`` along the CV and ``summary.json``. ``progress.json`` lists finished rounds: an
interrupted run resumes at the round it was in (the MD itself resumes from its checkpoint).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from cvplug import systems
from .bias import bias_grid, reweighting_factors, run_metadynamics
from .hills import HillsBias
from .cv import load_cv
from .methods import TrajectoryMethod, get
from .simulate import load_trajectory, simulate, trajectory_positions

__all__ = ["LearnSettings", "learn", "round_frames"]


@dataclass
class LearnSettings:
    """Settings of a learn run (steps are MD steps of the system's timestep)."""

    method: str = "dynae"
    rounds: int = 4
    steps_per_round: int = 50_000
    report_every: int = 50               # MD steps between frames used for training
    latent_dim: int = 2
    lag: int = 1                         # frames between the two members of a training pair
    bias_factor: float = 8.0
    height: float = 1.2                  # kJ/mol
    frequency: int = 200                 # MD steps between hills
    stride: int = 1                      # MD steps between bias force evaluations
    seed: int = 0
    platform: str = "CPU"
    method_options: dict = field(default_factory=dict)


def round_frames(round_dir: Path, spec) -> tuple[np.ndarray, np.ndarray]:
    """Positions [frames, n_atoms, 3] (nm) of one round, and their reweighting factors (sum 1)."""
    path = round_dir / ("trajectory.npz" if spec.toy is not None else "trajectory.dcd")
    positions = trajectory_positions(load_trajectory(path), spec)
    if not (round_dir / "metadynamics.json").exists():
        return positions, np.full(len(positions), 1.0 / len(positions))
    weights = reweighting_factors(round_dir)
    if len(weights) != len(positions):
        raise ValueError(f"{round_dir}: {len(weights)} colvar lines but {len(positions)} frames; the run was "
                         "interrupted between writing them — rerun the same command to complete it")
    return positions, weights


def _inherit_hills(out_dir: Path, k: int, cv, spec, settings: LearnSettings) -> None:
    """Write the hills of rounds 1 … k − 1, deposited again in order at ``cv``'s values of their configurations
    (well-tempered heights recomputed, :meth:`HillsBias.redeposit`), for round k."""
    centers = []
    for j in range(1, k):
        round_dir = out_dir / f"round_{j}"
        frequency = json.loads((round_dir / "metadynamics.json").read_text())["frequency"]
        n_hills = len(np.load(round_dir / "hills" / "hills.0.npy"))
        positions, _ = round_frames(round_dir, spec)
        frames = (np.arange(1, n_hills + 1) * frequency) // settings.report_every - 1  # frame of each deposition
        with torch.no_grad():
            centers.append(cv(torch.as_tensor(positions[frames[frames < len(positions)]])).double().numpy())
    if centers:
        ranges, widths = bias_grid(cv, None, None)
        bias = HillsBias(widths, [tuple(p) if p is not None else None for p in cv.metadata["periodic"]],
                         spec.temperature, settings.bias_factor, settings.height)
        bias.use_grid(ranges)
        bias.redeposit(np.concatenate(centers))
        folder = out_dir / f"round_{k}" / "hills"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "hills.inherited.npy", np.column_stack([bias.centers, bias.heights]))


def _analyse(spec, cv, positions: np.ndarray, weights: np.ndarray) -> dict:
    """Correlations of the CV with φ/ψ and basin populations (alanine dipeptide), else CV statistics."""
    with torch.no_grad():
        values = cv(torch.as_tensor(positions)).double().numpy()
    report = {"cv_mean": values.mean(0).tolist(), "cv_std": values.std(0).tolist(), "frames": len(positions)}
    if "phi_atoms" in spec.extras:
        from .analysis import ala2_basins
        from .features import Dihedrals
        from .metrics import circular_linear_correlation

        angles = Dihedrals([spec.extras["phi_atoms"], spec.extras["psi_atoms"]])(torch.as_tensor(positions)).numpy()
        report["basins"] = ala2_basins(angles[:, 0], angles[:, 1])
        report["basins_reweighted"] = ala2_basins(angles[:, 0], angles[:, 1], weights)
        report["correlation"] = {f"{name}~cv{k}": circular_linear_correlation(angles[:, a], values[:, k])
                                 for a, name in enumerate(["phi", "psi"]) for k in range(values.shape[1])}
    return report


def learn(system: str, out_dir, settings: Optional[LearnSettings] = None, progress: bool = True) -> list[dict]:
    """Run (or resume) the learn loop on ``system``; returns one summary dict per round."""
    settings = settings or LearnSettings()
    method = get(settings.method)
    if not isinstance(method, TrajectoryMethod):
        raise ValueError(f"method {settings.method!r} cannot learn from trajectories (no fit_trajectories)")
    if settings.rounds < 1 or settings.steps_per_round % settings.report_every or \
            settings.frequency % settings.report_every:
        raise ValueError("rounds must be ≥ 1, steps_per_round and frequency multiples of report_every")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    state_file = out_dir / "progress.json"
    summaries = json.loads(state_file.read_text()) if state_file.exists() else []
    for k in range(len(summaries), settings.rounds):
        start = time.perf_counter()
        round_dir = out_dir / f"round_{k}"
        spec = systems.load(system)
        if k > 0:
            previous_positions, _ = round_frames(out_dir / f"round_{k - 1}", spec)
            spec.positions = previous_positions[-1]
        seed = settings.seed * 1000 + k
        if k == 0:
            round_dir.mkdir(parents=True, exist_ok=True)
            simulate(spec, settings.steps_per_round, round_dir / "trajectory", settings.report_every, seed,
                     settings.platform, progress=progress)
        else:
            cv = load_cv(out_dir / f"round_{k - 1}" / "cv.pt")
            _inherit_hills(out_dir, k, cv, spec, settings)
            run_metadynamics(spec, cv, settings.steps_per_round, round_dir, bias_factor=settings.bias_factor,
                             height=settings.height, frequency=settings.frequency,
                             report_every=settings.report_every, stride=settings.stride, seed=seed,
                             platform=settings.platform, progress=progress)
        md_seconds = time.perf_counter() - start
        rounds = [round_frames(out_dir / f"round_{j}", spec) for j in range(k + 1)]
        previous = load_cv(out_dir / f"round_{k - 1}" / "cv.pt") if k > 0 else None
        cv = method.fit_trajectories([p for p, _ in rounds], spec, latent_dim=settings.latent_dim,
                                     lag=settings.lag, weights=[w for _, w in rounds], seed=seed,
                                     previous=previous, work_dir=round_dir / "train", progress=progress,
                                     **settings.method_options)
        positions = np.concatenate([p for p, _ in rounds])
        cv.calibrate(torch.as_tensor(positions, dtype=torch.float32))
        cv.export(round_dir / "cv.pt")
        biased = [r for j, r in enumerate(rounds) if j > 0] or rounds
        summary = {"round": k, "md_seconds": md_seconds, "train_seconds": time.perf_counter() - start - md_seconds,
                   "this_round": _analyse(spec, cv, *rounds[k]),
                   "biased_rounds": _analyse(spec, cv, np.concatenate([p for p, _ in biased]),
                                             np.concatenate([w for _, w in biased]) / len(biased))}
        (round_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        summaries.append(summary)
        state_file.write_text(json.dumps(summaries, indent=2))
    return summaries

