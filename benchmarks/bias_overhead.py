"""Wall-time cost of biasing a system along a learned-style CV, as a ratio to plain MD, in one run.

The CV: DynAE's architecture (inputs → 3 ReLU layers of 32 → 2 outputs; the cost does not depend on the
weights) on Kabsch-aligned heavy-atom Cartesians for alanine dipeptide and on the backbone torsions (sin, cos of
every φ and ψ) for other peptides such as trpzip2 in water, or any CV file given with --cv. Variants, all well-tempered metadynamics with
deposition every 400 steps; the "hills" variants start with --hills hills already deposited, as in a long run:
  openmm               OpenMM's Metadynamics; one TorchForce per component in its CustomCVForce (the straightforward way)
  openmm stride 4      the same, bias force applied every 4 steps (MTSLangevinIntegrator outer step)
  hills, TorchScript   cvplug's engine, one PythonForce: CV by TorchScript autograd, bias summed over all hills
  hills                cvplug's engine as it runs: CV in NumPy (cvplug.metad.fastcv), bias from the grid (cvplug.metad.grid)
  hills stride k       the same, bias applied every k steps
  native torsion       (phi, psi) as CustomTorsionForces under OpenMM's Metadynamics (no torch; for scale)
Timings are interleaved (every variant once per repeat) and each ratio is the median over repeats of
t_variant / t_plain, so machine noise shifts absolute times more than ratios.
The native-torsion variant exists for alanine dipeptide only. Run:
`python benchmarks/bias_overhead.py [--systems ala2-implicit ala2-explicit trpzip2-explicit] [--steps N …]
[--platform CUDA] [--cv FILE]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import CollectiveVariable, Normalization, load_cv, systems
from cvplug.metad import WellTempered, build_metadynamics
from cvplug.metad.fastcv import torch_evaluator
from cvplug.features import Cartesians
from cvplug.selection import parse_features
from cvplug.simulate import make_simulation

VARIANTS = {"openmm": ("openmm", 1), "openmm stride 4": ("openmm", 4), "hills, TorchScript": ("hills", 1),
            "hills": ("hills", 1), "hills stride 2": ("hills", 2), "hills stride 4": ("hills", 4)}


def mlp_cv(spec) -> CollectiveVariable:
    torch.manual_seed(0)
    if "heavy_atoms" in spec.extras:
        heavy = list(spec.extras["heavy_atoms"])
        features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))
    else:
        features = parse_features("backbone-torsions", spec.topology)
    n = features.n_out
    encoder = torch.nn.Sequential(torch.nn.Linear(n, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    return CollectiveVariable(features, encoder, spec.n_atoms, Normalization.identity(n), method="benchmark",
                              periodic_box=spec.periodic, info={"bias_range": [[-20, 20]] * 2,
                                                                 "bias_width": [0.5, 0.5]})


def native_torsion(spec, threads, platform):
    variables = []
    for atoms in (spec.extras["phi_atoms"], spec.extras["psi_atoms"]):
        force = openmm.CustomTorsionForce("theta")
        force.addTorsion(*atoms, [])
        variables.append(app.BiasVariable(force, -3.141592653589793, 3.141592653589793, 0.35, True))
    meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, 8.0,
                            1.2 * unit.kilojoule_per_mole, 400)
    simulation = make_simulation(spec, platform, threads=threads)
    return lambda n: meta.step(simulation, n)


def variants(name: str, cv_file, threads: int, hills: int, platform: str):
    plain = make_simulation(systems.load(name), platform, threads=threads)
    runs = {"plain": plain.step}
    for label, (engine, stride) in VARIANTS.items():
        spec = systems.load(name)
        cv = load_cv(cv_file) if cv_file else mlp_cv(spec)
        run = build_metadynamics(spec, cv, engine=engine, stride=stride, frequency=400, threads=threads,
                                 platform=platform)
        if engine == "hills":
            ranges = np.array(WellTempered().grid(cv)[0])
            for center in np.random.default_rng(0).uniform(ranges[:, 0], ranges[:, 1], (hills, len(ranges))):
                run.engine.bias.deposit(center)
        if label == "hills, TorchScript":
            run.engine.evaluate = torch_evaluator(run.engine.module)
            run.engine.bias.use_grid(ranges, max_nodes=0)  # no grid: the exact sum over all hills
        runs[label] = run.step
    spec = systems.load(name)
    if "phi_atoms" in spec.extras:
        runs["native torsion"] = native_torsion(spec, threads, platform)
    return runs


def measure(name: str, steps: int, repeats: int, cv_file, threads: int, hills: int, platform: str) -> None:
    runs = variants(name, cv_file, threads, hills, platform)
    for advance in runs.values():
        advance(200)  # warm-up: TorchScript profiling runs, context set-up
    seconds = {label: [] for label in runs}
    for _ in range(repeats):
        for label, advance in runs.items():
            start = time.perf_counter()
            advance(steps)
            seconds[label].append(time.perf_counter() - start)
    print(f"\n{name}: {platform} platform, {threads} OpenMM thread(s), {torch.get_num_threads()} torch thread(s), "
          f"{steps} steps x {repeats} repeats, {hills} hills before timing")
    print(f"| variant | steps/s | ratio to plain MD |\n|---|---:|---:|")
    for label, times in seconds.items():
        ratio = statistics.median(t / p for t, p in zip(times, seconds["plain"]))
        print(f"| {label} | {steps / statistics.median(times):.0f} | {ratio:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["ala2-implicit", "ala2-explicit"])
    parser.add_argument("--steps", type=int, nargs="+", default=[4000, 800],
                        help="steps per timing, one per system (default 4000 implicit, 800 explicit)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (CPU, CUDA …)")
    parser.add_argument("--cv", help="a CV file to bias instead of the MLP (must match each system)")
    parser.add_argument("--hills", type=int, default=2000, help="hills deposited before timing (hills engine)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, steps in zip(args.systems, args.steps * len(args.systems)):
        measure(name, steps, args.repeats, args.cv, args.threads, args.hills, args.platform)


if __name__ == "__main__":
    main()
