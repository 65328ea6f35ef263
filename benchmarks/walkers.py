"""Walkers on Dask: accuracy of N walkers against one, throughput, and the cost of cutting work into segments.

    python benchmarks/walkers.py                       # all three measurements, ratios from this one run
    python benchmarks/walkers.py --only accuracy --seeds 8
    python benchmarks/walkers.py --only throughput --steps 20000

1. Accuracy: the double-well FES (hills engine, Langevin, stride 4, γ = 6, h0 = 0.3 kJ/mol, σ = 0.15) of one
   walker of 1.2M steps against 4 walkers of 300k steps sharing their bias (segments of 100k steps), per seed:
   the RMS of F − F_exact where F_exact < 8 kT, as in tests/metad/test_run.py. Printed: mean ± standard
   deviation over seeds, and the error of the seeds' mean F. Seed s gives the 4 walkers seeds 4s … 4s + 3.
2. Throughput: ala2-implicit with a (φ, ψ) CV, hills engine, one walker on a LocalCluster of one worker, then
   two walkers on a LocalCluster of two workers (one OpenMM thread each): total ns/day of the two against one.
   The one walker is measured twice, the second time with a process spinning on the other core: on the 2-vCPU
   development VM one walker alone runs 2.5x slower than beside a busy core (10,000 steps: 21.5 s against 8.4 s,
   in-process, no Dask), apparently the cost of waking an idle vCPU at each of OpenMM's thread hand-offs, so the
   idle-machine ratio overstates what a second walker adds.
3. Scheduling overhead: 64 walkers of the double well on a LocalCluster sized to the machine, each cut into
   segments. Overhead per segment = the task's wall time on its worker minus the MD it did (at the rate of one
   long segment), plus the time between one segment finishing and the next starting on that walker's worker;
   reported as a fraction of a 10 s segment.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # before openmm

from cvplug import CollectiveVariable, load_cv, systems
from cvplug.analysis import fes_rms_error
from cvplug.demo import phi_psi_cv
from cvplug.features import Cartesians
from cvplug.metad import WellTempered, run_metadynamics
from cvplug.metad.fes import shared_free_energy
from cvplug.bridge.context import usable_cores
from cvplug.walkers import open_client, run_walkers

DOUBLE_WELL_BIAS = WellTempered(height=0.3, bias_factor=6.0, frequency=100, widths=(0.15,), ranges=((-4.0, 4.0),),
                                stride=4)


def x1_cv(folder: Path) -> Path:
    """The double well's x1 as a CV file."""
    cv = CollectiveVariable(Cartesians([0], components=(0,)), torch.nn.Identity().double(), n_atoms=1,
                            names=["x1"], method="analytic").double()
    return cv.export(folder / "x1.pt")


def shared_fes(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """x1 grid and the run's shared F(x1) in kT."""
    (x,), free_energy, _, kT = shared_free_energy(out)
    return x, free_energy / kT


def fes_error(x: np.ndarray, free_energy: np.ndarray) -> float:
    """RMS (kT) of F(x1) against the exact x1⁴/4 − 3x1² + x1 where that is below 8 kT."""
    exact = x**4 / 4 - 3 * x**2 + x
    return fes_rms_error(free_energy, exact - exact.min(), 8.0)[0]


def accuracy(seeds: int, steps: int, walkers: int, folder: Path) -> dict[str, list]:
    """Per seed, the F(x1) (x1 grid, F in kT) of one walker of ``steps`` and of ``walkers`` walkers of
    ``steps / walkers`` each."""
    spec, cv_path = systems.load("double-well"), x1_cv(folder)
    options = dict(settings=DOUBLE_WELL_BIAS, report_every=1000, dynamics="langevin", platform="Reference")
    runs: dict[str, list] = {"1 walker": [], f"{walkers} walkers": []}
    client = open_client(None, walkers)
    try:
        for seed in range(seeds):
            out = folder / f"one-{seed}"
            run_metadynamics(spec, load_cv(cv_path), steps, out, seed=seed, progress=False, **options)
            runs["1 walker"].append(shared_fes(out))
            out = folder / f"many-{seed}"
            run_walkers(spec, cv_path, steps // walkers, out, walkers=walkers, client=client, segment=100_000,
                        seed=walkers * seed, **options)
            runs[f"{walkers} walkers"].append(shared_fes(out))
            print(f"  seed {seed}: " + ", ".join(f"{name} {fes_error(*fes[-1]):.3f} kT" for name, fes in runs.items()),
                  flush=True)
    finally:
        client.close()
    return runs


def _spin() -> None:
    while True:
        pass


def throughput(walkers: int, steps: int, folder: Path, busy: bool = False) -> float:
    """Total ns/day of ``walkers`` ala2-implicit walkers of ``steps`` steps, one worker each; with ``busy`` a
    process spins on another core meanwhile (see the module docstring)."""
    import multiprocessing

    spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) if busy else None
    if spinner is not None:
        spinner.start()
    try:
        return _throughput(walkers, steps, folder / ("busy" if busy else "idle"))
    finally:
        if spinner is not None:
            spinner.kill()


def _throughput(walkers: int, steps: int, folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    spec = systems.load("ala2-implicit")
    cv_path = phi_psi_cv(spec).double().export(folder / "phi_psi.pt")
    client = open_client(None, walkers)
    try:
        client.wait_for_workers(walkers)
        started = time.perf_counter()
        run_walkers(spec, cv_path, steps, folder / f"w{walkers}", walkers=walkers, client=client, segment=steps,
                    report_every=500, frequency=500, height=1.2, bias_factor=8.0, widths=[0.35, 0.35],
                    threads=1)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return walkers * steps * spec.timestep * 1e-3 / seconds * 86400.0


def overhead(walkers: int, segment: int, segments: int, folder: Path) -> dict:
    """Per-segment overhead (s) of ``walkers`` double-well walkers, each of ``segments`` segments."""
    spec, cv_path = systems.load("double-well"), x1_cv(folder)
    options = dict(report_every=100, frequency=100, height=0.5, bias_factor=10.0, widths=[0.15],
                   ranges=[(-4.0, 4.0)], platform="Reference")
    client = open_client(None, walkers)
    try:
        client.wait_for_workers(min(walkers, usable_cores()))
        workers = len(client.scheduler_info()["workers"])
        started = time.perf_counter()  # one long task per worker, all workers busy (as in the run measured)
        run_walkers(spec, cv_path, segment * 20, folder / "long", walkers=workers, client=client,
                    segment=segment * 20, **options)
        md_rate = segment * 20 / (time.perf_counter() - started)   # steps/s of one walker, one task
        started = time.perf_counter()
        run_walkers(spec, cv_path, segment * segments, folder / "many", walkers=walkers, client=client,
                    segment=segment, **options)
        wall = time.perf_counter() - started
    finally:
        client.close()
    ideal = walkers * segments * segment / md_rate / workers
    per_segment = (wall - ideal) * workers / (walkers * segments)
    return {"workers": workers, "md_steps_per_s": md_rate, "wall_s": wall, "ideal_s": ideal,
            "overhead_per_segment_s": per_segment, "of_a_10s_segment": per_segment / 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["accuracy", "throughput", "overhead"])
    parser.add_argument("--seeds", type=int, default=8, help="seeds of the accuracy comparison")
    parser.add_argument("--dw-steps", type=int, default=1_200_000, help="double-well MD steps of one walker")
    parser.add_argument("--steps", type=int, default=40_000, help="MD steps per ala2 walker")
    parser.add_argument("--tiny-walkers", type=int, default=64)
    parser.add_argument("--segment", type=int, default=2000, help="MD steps per tiny segment")
    parser.add_argument("--segments", type=int, default=4, help="segments per tiny walker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.only in (None, "accuracy"):
            print(f"double-well FES RMS error vs exact (kT), {args.dw_steps:,} steps in all, seeds 0-{args.seeds - 1}")
            for name, runs in accuracy(args.seeds, args.dw_steps, 4, folder).items():
                errors = [fes_error(*fes) for fes in runs]
                pooled = fes_error(runs[0][0], np.mean([free_energy for _, free_energy in runs], axis=0))
                print(f"{name:10s} {np.mean(errors):.3f} ± {np.std(errors, ddof=1):.3f} kT per run "
                      f"(max {max(errors):.3f}); error of their mean F {pooled:.3f} kT", flush=True)
        if args.only in (None, "throughput"):
            one, busy = throughput(1, args.steps, folder), throughput(1, args.steps, folder, busy=True)
            two = throughput(2, args.steps, folder)
            print(f"ala2-implicit, {args.steps} steps per walker: 2 walkers {two:.1f} ns/day in total; 1 walker "
                  f"{one:.1f} ns/day ({two / one:.2f}x), or {busy:.1f} ns/day with another core busy "
                  f"({two / busy:.2f}x)")
        if args.only in (None, "overhead"):
            numbers = overhead(args.tiny_walkers, args.segment, args.segments, folder)
            print(f"{args.tiny_walkers} double-well walkers x {args.segments} segments of {args.segment} steps on "
                  f"{numbers['workers']} workers: wall {numbers['wall_s']:.1f} s, MD alone {numbers['ideal_s']:.1f} s; "
                  f"overhead {numbers['overhead_per_segment_s']:.3f} s per segment = "
                  f"{100 * numbers['of_a_10s_segment']:.1f} % of a 10 s segment")


if __name__ == "__main__":
    main()
