"""Walkers on Dask: throughput of N walkers against one, and the cost of cutting work into segments.

    python benchmarks/walkers.py                       # both measurements, ratios from this one run
    python benchmarks/walkers.py --only throughput --steps 20000

1. Throughput: ala2-implicit with a (φ, ψ) CV, hills engine, one walker on a LocalCluster of one worker, then
   two walkers on a LocalCluster of two workers (one OpenMM thread each): total ns/day of the two against one.
2. Scheduling overhead: 64 walkers of the double well on a LocalCluster sized to the machine, each cut into
   segments. Overhead per segment = the task's wall time on its worker minus the MD it did (at the rate of one
   long segment), plus the time between one segment finishing and the next starting on that walker's worker;
   reported as a fraction of a 10 s segment.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch  # noqa: F401  (before openmm)

from cvplug import systems
from cvplug.demo import phi_psi_cv
from cvplug.walkers import open_client, run_walkers


def throughput(walkers: int, steps: int, folder: Path) -> float:
    """Total ns/day of ``walkers`` ala2-implicit walkers of ``steps`` steps, one worker each."""
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
    from cvplug.features import Cartesians
    from cvplug import CollectiveVariable

    spec = systems.load("double-well")
    cv = CollectiveVariable(Cartesians([0], components=(0,)), torch.nn.Identity().double(), n_atoms=1,
                            names=["x1"], method="analytic").double()
    cv_path = cv.export(folder / "x1.pt")
    options = dict(report_every=100, frequency=100, height=0.5, bias_factor=10.0, widths=[0.15],
                   ranges=[(-4.0, 4.0)], platform="Reference")
    client = open_client(None, walkers)
    try:
        started = time.perf_counter()
        run_walkers(spec, cv_path, segment * 20, folder / "long", walkers=1, client=client, segment=segment * 20,
                    **options)
        md_rate = segment * 20 / (time.perf_counter() - started)   # steps/s of one walker, one task
        started = time.perf_counter()
        run_walkers(spec, cv_path, segment * segments, folder / "many", walkers=walkers, client=client,
                    segment=segment, **options)
        wall = time.perf_counter() - started
        workers = len(client.scheduler_info()["workers"])
    finally:
        client.close()
    ideal = walkers * segments * segment / md_rate / workers
    per_segment = (wall - ideal) * workers / (walkers * segments)
    return {"workers": workers, "md_steps_per_s": md_rate, "wall_s": wall, "ideal_s": ideal,
            "overhead_per_segment_s": per_segment, "of_a_10s_segment": per_segment / 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "overhead"])
    parser.add_argument("--steps", type=int, default=40_000, help="MD steps per ala2 walker")
    parser.add_argument("--tiny-walkers", type=int, default=64)
    parser.add_argument("--segment", type=int, default=2000, help="MD steps per tiny segment")
    parser.add_argument("--segments", type=int, default=4, help="segments per tiny walker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.only in (None, "throughput"):
            one, two = throughput(1, args.steps, folder), throughput(2, args.steps, folder)
            print(f"ala2-implicit, {args.steps} steps per walker: 1 walker {one:.1f} ns/day, 2 walkers {two:.1f} "
                  f"ns/day in total: {two / one:.2f}x")
        if args.only in (None, "overhead"):
            numbers = overhead(args.tiny_walkers, args.segment, args.segments, folder)
            print(f"{args.tiny_walkers} double-well walkers x {args.segments} segments of {args.segment} steps on "
                  f"{numbers['workers']} workers: wall {numbers['wall_s']:.1f} s, MD alone {numbers['ideal_s']:.1f} s; "
                  f"overhead {numbers['overhead_per_segment_s']:.3f} s per segment = "
                  f"{100 * numbers['of_a_10s_segment']:.1f} % of a 10 s segment")


if __name__ == "__main__":
    main()
