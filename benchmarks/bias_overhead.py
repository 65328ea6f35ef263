"""Wall-time cost of biasing alanine dipeptide along a CV, as a ratio to plain MD, measured in one run.

Variants (all well-tempered metadynamics through OpenMM's Metadynamics, deposition every 500 steps):
  torch-mlp      a 2-layer MLP on aligned heavy-atom Cartesians (2 components), TorchForces in a CustomCVForce
  torch-phipsi   the analytic (phi, psi) CV exported through TorchScript (what `cvplug demo` runs)
  native-torsion (phi, psi) as OpenMM CustomTorsionForces

Timings are interleaved (plain, variants, plain, …) and each ratio is the median over repeats, so machine
noise shifts absolute times but not the ratios much. Run: `python benchmarks/bias_overhead.py [--steps N]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import CollectiveVariable, Normalization, systems
from cvplug.attach import cv_forces
from cvplug.demo import phi_psi_cv
from cvplug.features import Cartesians
from cvplug.simulate import make_simulation

HEAVY = [1, 4, 5, 6, 8, 10, 14, 15, 16, 18]


def mlp_cv(spec) -> CollectiveVariable:
    torch.manual_seed(0)
    features = Cartesians(HEAVY, reference=torch.tensor(spec.positions[HEAVY], dtype=torch.float32))
    encoder = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                  torch.nn.Tanh(), torch.nn.Linear(64, 2))
    return CollectiveVariable(features, encoder, spec.n_atoms, Normalization.identity(30), method="benchmark")


def torsion_forces(spec) -> list[openmm.Force]:
    forces = []
    for atoms in (spec.extras["phi_atoms"], spec.extras["psi_atoms"]):
        force = openmm.CustomTorsionForce("theta")
        force.addTorsion(*atoms, [])
        forces.append(force)
    return forces


def biased(spec, forces, periodic: bool):
    lo, hi, width = (-3.141592653589793, 3.141592653589793, 0.35) if periodic else (-20.0, 20.0, 0.5)
    variables = [app.BiasVariable(f, lo, hi, width, periodic) for f in forces]
    meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, 8.0,
                            1.2 * unit.kilojoule_per_mole, 500)
    simulation = make_simulation(spec, threads=1)
    return lambda n: meta.step(simulation, n)


def variants():
    plain_spec = systems.load("ala2-implicit")
    plain = make_simulation(plain_spec, threads=1)
    builders = {"plain": lambda: plain.step}
    spec = systems.load("ala2-implicit")
    builders["torch-mlp"] = lambda: biased(spec, cv_forces(mlp_cv(spec)), periodic=False)
    spec2 = systems.load("ala2-implicit")
    builders["torch-phipsi"] = lambda: biased(spec2, cv_forces(phi_psi_cv(spec2)), periodic=True)
    spec3 = systems.load("ala2-implicit")
    builders["native-torsion"] = lambda: biased(spec3, torsion_forces(spec3), periodic=True)
    return {name: build() for name, build in builders.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per timing (default 3000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = variants()
    for advance in runs.values():
        advance(500)  # warm-up: TorchScript profiling runs, context set-up
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, advance in runs.items():
            start = time.perf_counter()
            advance(args.steps)
            seconds[name].append(time.perf_counter() - start)
    plain = seconds["plain"]
    print(f"ala2-implicit, CPU platform, 1 OpenMM thread, 1 torch thread, {args.steps} steps x {args.repeats}")
    print(f"{'variant':16s} {'steps/s':>9s} {'ratio to plain MD':>18s}")
    for name, times in seconds.items():
        ratio = statistics.median(t / p for t, p in zip(times, plain))
        print(f"{name:16s} {args.steps / statistics.median(times):9.0f} {ratio:18.2f}")


if __name__ == "__main__":
    main()
