"""Throughput of the OpenMM ↔ torch bridge (issue 3): energy + force evaluations per second.

For alanine dipeptide in vacuum and in OBC2 implicit solvent, batch 256 (default), measured in one run: a bare
OpenMM loop (setPositions + getState(energy, forces) per sample, one thread, the baseline), then every bridge
strategy through torch (forward and backward). Rounds interleave the methods, so a machine that gets busier
slows them alike; the table gives the median round. Worker start-up (spawn, imports) is excluded and printed.

The CPU platform hands each evaluation to a worker thread. In the plain bare loop the caller and that thread run
on different cores, and on an idle virtual machine waking a core costs more than evaluating a small molecule.
The bridge puts both on one core (:func:`cvplug.bridge.context.shared_core`). The row "bare loop, CPU, 1 thread,
one core" gives the bare loop the same treatment (the best case for the baseline); its column gives each
method's ratio to it.

    python benchmarks/bridge.py [--batch 256] [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import platform as host
import time

import torch  # before openmm
import numpy as np
import openmm

from cvplug import systems
from cvplug.bridge import OpenMMEnergy
from cvplug.bridge.context import make_context, on_cores, shared_core, usable_cores

SYSTEMS = ("ala2-vacuum", "ala2-implicit")
BASELINE = "bare loop, CPU, 1 thread"
ONE_CORE = "bare loop, CPU, 1 thread, one core"
# (label, OpenMMEnergy keyword arguments); threads=1 where the baseline is compared like for like
STRATEGIES = (
    ("single, CPU, 1 thread", dict(platform="CPU", batch_strategy="single", threads=1)),
    ("pool, CPU, 2 workers × 1 thread", dict(platform="CPU", batch_strategy="pool", workers=2, threads=1)),
    ("replicated, CPU, 16 copies", dict(platform="CPU", batch_strategy="replicated", copies=16)),
    ("replicated, CPU, 16 copies × 2 workers", dict(platform="CPU", batch_strategy="replicated", copies=16,
                                                    workers=2, threads=1)),
    ("single, Reference", dict(platform="Reference", batch_strategy="single")),
    ("pool, Reference, 2 workers", dict(platform="Reference", batch_strategy="pool", workers=2)),
    ("replicated, Reference, 16 copies", dict(platform="Reference", batch_strategy="replicated", copies=16)),
    ("replicated, Reference, 16 copies × 2 workers", dict(platform="Reference", batch_strategy="replicated",
                                                          copies=16, workers=2)),
)


def bare_loop(spec, platform: str, positions: np.ndarray, cores=None):
    """The baseline: one Context (one thread), setPositions + getState(energy, forces) for each sample; with
    ``cores``, the caller and OpenMM's worker thread run on those cores."""
    context = make_context(spec.system, platform, threads=1, cores=cores)

    def run():
        with on_cores(cores):
            for x in positions:
                context.setPositions(x)
                state = context.getState(energy=True, forces=True)
                state.getPotentialEnergy(), state.getForces(asNumpy=True)
    return run


def bridge_step(energy: OpenMMEnergy, positions: np.ndarray):
    x = torch.tensor(positions, requires_grad=True)

    def run():
        x.grad = None
        energy(x).sum().backward()
    return run


def measure(spec, batch: int, rounds: int) -> dict[str, float]:
    """Evaluations per second of every method on ``spec`` (median over interleaved rounds); None if refused."""
    rng = np.random.default_rng(0)
    positions = spec.positions[None] + 0.005 * rng.standard_normal((batch, spec.n_atoms, 3))
    methods = {BASELINE: bare_loop(spec, "CPU", positions),
               ONE_CORE: bare_loop(spec, "CPU", positions, shared_core("CPU", 1)),
               "bare loop, Reference": bare_loop(spec, "Reference", positions)}
    energies, rates = [], {}
    for label, options in STRATEGIES:
        try:
            energy = OpenMMEnergy(spec, **options)
        except ValueError as refused:
            rates[label] = None
            print(f"  {spec.name}: {label}: refused ({str(refused).split(' (')[0]})")
            continue
        start = time.perf_counter()
        methods[label] = bridge_step(energy, positions)
        methods[label]()  # warm-up; starts the workers of a pool
        print(f"  {spec.name}: {label}: first call {time.perf_counter() - start:.2f} s")
        energies.append(energy)
    times = {label: [] for label in methods}
    for _ in range(rounds):
        for label, run in methods.items():
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    for energy in energies:
        energy.close()
    rates.update({label: batch / float(np.median(t)) for label, t in times.items()})
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{host.node()}: {usable_cores()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"openmm {openmm.__version__}, torch {torch.__version__}, batch {args.batch}")
    results = {name: measure(systems.load(name), args.batch, args.rounds) for name in SYSTEMS}
    labels = [BASELINE, ONE_CORE, "bare loop, Reference"] + [label for label, _ in STRATEGIES]
    print(f"load average {os.getloadavg()[0]:.2f} at end\n")
    print("| method | " + " | ".join(f"{name} eval/s | × bare | × one-core bare" for name in SYSTEMS) + " |")
    print("|---|" + "---:|---:|---:|" * len(SYSTEMS))
    for label in labels:
        cells = []
        for name in SYSTEMS:
            rate, bare, best = results[name][label], results[name][BASELINE], results[name][ONE_CORE]
            cells += ["refused", "–", "–"] if rate is None else [f"{rate:,.0f}", f"{rate / bare:.2f}",
                                                                   f"{rate / best:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
