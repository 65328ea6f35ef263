"""Wall-time cost of biasing alanine dipeptide along a learned-style CV, as a ratio to plain MD, in one run.

The CV: a 2-layer MLP on Kabsch-aligned heavy-atom Cartesians with 2 outputs (the shape of a DynAE CV), or
any CV file given with --cv. Variants, all well-tempered metadynamics with deposition every 400 steps:
  openmm             OpenMM's Metadynamics; one TorchForce per component in its CustomCVForce (the straightforward way)
  openmm stride 4    the same, bias force applied every 4 steps (MTSLangevinIntegrator outer step)
  hills              cvplug's engine: CV + exact hills bias in one PythonForce (one CV call for both components)
  hills stride k     the same, bias applied every k steps
  native torsion     (phi, psi) as CustomTorsionForces under OpenMM's Metadynamics (no torch; for scale)
Timings are interleaved (every variant once per repeat) and each ratio is the median over repeats of
t_variant / t_plain, so machine noise shifts absolute times more than ratios.
Run: `python benchmarks/bias_overhead.py [--systems ala2-implicit ala2-explicit] [--steps N] [--cv FILE]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import CollectiveVariable, Normalization, load_cv, systems
from cvplug.bias import build_metadynamics
from cvplug.features import Cartesians
from cvplug.simulate import make_simulation

VARIANTS = {"openmm": ("openmm", 1), "openmm stride 4": ("openmm", 4), "hills": ("hills", 1),
            "hills stride 2": ("hills", 2), "hills stride 4": ("hills", 4), "hills stride 8": ("hills", 8)}


def mlp_cv(spec) -> CollectiveVariable:
    torch.manual_seed(0)
    heavy = list(spec.extras["heavy_atoms"])
    features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))
    encoder = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                  torch.nn.Tanh(), torch.nn.Linear(64, 2))
    return CollectiveVariable(features, encoder, spec.n_atoms, Normalization.identity(30), method="benchmark",
                              periodic_box=spec.periodic, info={"bias_range": [[-20, 20]] * 2,
                                                                 "bias_width": [0.5, 0.5]})


def native_torsion(spec, threads):
    variables = []
    for atoms in (spec.extras["phi_atoms"], spec.extras["psi_atoms"]):
        force = openmm.CustomTorsionForce("theta")
        force.addTorsion(*atoms, [])
        variables.append(app.BiasVariable(force, -3.141592653589793, 3.141592653589793, 0.35, True))
    meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, 8.0,
                            1.2 * unit.kilojoule_per_mole, 400)
    simulation = make_simulation(spec, threads=threads)
    return lambda n: meta.step(simulation, n)


def variants(name: str, cv_file, threads: int):
    plain = make_simulation(systems.load(name), threads=threads)
    runs = {"plain": plain.step}
    for label, (engine, stride) in VARIANTS.items():
        spec = systems.load(name)
        cv = load_cv(cv_file) if cv_file else mlp_cv(spec)
        runs[label] = build_metadynamics(spec, cv, engine=engine, stride=stride, frequency=400,
                                         threads=threads).step
    runs["native torsion"] = native_torsion(systems.load(name), threads)
    return runs


def measure(name: str, steps: int, repeats: int, cv_file, threads: int) -> None:
    runs = variants(name, cv_file, threads)
    for advance in runs.values():
        advance(200)  # warm-up: TorchScript profiling runs, context set-up
    seconds = {label: [] for label in runs}
    for _ in range(repeats):
        for label, advance in runs.items():
            start = time.perf_counter()
            advance(steps)
            seconds[label].append(time.perf_counter() - start)
    print(f"\n{name}: CPU platform, {threads} OpenMM thread(s), {torch.get_num_threads()} torch thread(s), "
          f"{steps} steps x {repeats} repeats")
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
    parser.add_argument("--cv", help="a CV file to bias instead of the MLP (must match each system)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, steps in zip(args.systems, args.steps * len(args.systems)):
        measure(name, steps, args.repeats, args.cv, args.threads)


if __name__ == "__main__":
    main()
