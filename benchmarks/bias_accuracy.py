"""Accuracy of the fast metadynamics variants: double-well FES error against the exact F(x1), over seeds.

F(x1) = x1⁴/4 − 3x1² + x1 (kT = 1; x2 integrates out). Each variant runs well-tempered metadynamics along x1
(γ = 6, h0 = 0.3 kJ/mol, σ = 0.15, deposition every 100 steps, 300k or 1.2M steps of 1 fs); the error is the RMS of
F_metad − F_exact (after removing the mean offset) where F_exact < 8 kT. Printed: mean ± standard deviation
over seeds (the statistical error bar), per variant, and the error of the seeds' mean F; with ``--subsets n``
also the median and 99.9th percentile of the error of the mean F of 20,000 random n-seed subsets (what a test
averaging n seeds can expect). The x1 CV runs as a native OpenMM force in the openmm engine
(:func:`cvplug.native_forces`). Run: `python benchmarks/bias_accuracy.py [--seeds 3] [--only "stride 4"]
[--subsets 8]`.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from cvplug import CollectiveVariable, systems
from cvplug.analysis import fes_rms_error
from cvplug.metad import run_metadynamics
from cvplug.features import Cartesians

VARIANTS = {  # name: (engine, stride, dynamics, steps)
    "openmm grid, Brownian, 300k": ("openmm", 1, "brownian", 300_000),
    "hills, Brownian, 300k": ("hills", 1, "brownian", 300_000),
    "openmm grid, Langevin, 300k": ("openmm", 1, "langevin", 300_000),
    "hills, Langevin, 300k": ("hills", 1, "langevin", 300_000),
    "hills, Langevin, 1.2M": ("hills", 1, "langevin", 1_200_000),
    "hills, Langevin MTS stride 4, 1.2M": ("hills", 4, "langevin", 1_200_000),
}


def x1_cv() -> CollectiveVariable:
    return CollectiveVariable(Cartesians([0], components=(0,)), torch.nn.Identity(), n_atoms=1, names=["x1"],
                              method="analytic").double()


def fes(engine: str, stride: int, dynamics: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x1 grid and F(x1) (kT) of one run."""
    with tempfile.TemporaryDirectory() as out:
        result = run_metadynamics(systems.load("double-well"), x1_cv(), steps, out, ranges=[(-4.0, 4.0)],
                                  widths=[0.15], bias_factor=6.0, height=0.3, frequency=100, report_every=1000,
                                  engine=engine, stride=stride, dynamics=dynamics, seed=seed,
                                  platform="Reference", progress=False)
    return result.axes[0], result.free_energy


def fes_error(x: np.ndarray, free_energy: np.ndarray) -> float:
    exact = x**4 / 4 - 3 * x**2 + x
    return fes_rms_error(free_energy, exact - exact.min(), 8.0)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="run the variants whose name contains this text")
    parser.add_argument("--subsets", type=int, default=0, help="also resample n-seed subsets (0: no)")
    args = parser.parse_args()
    print(f"double-well FES RMS error vs exact (kT), over {args.seeds} seeds; last column: error of their mean F")
    for name, variant in VARIANTS.items():
        if args.only not in name:
            continue
        runs = [fes(*variant, seed) for seed in range(args.seeds)]
        errors = [fes_error(x, free_energy) for x, free_energy in runs]
        pooled = fes_error(runs[0][0], np.mean([free_energy for _, free_energy in runs], axis=0))
        print(f"{name:45s} {np.mean(errors):.3f} ± {np.std(errors, ddof=1):.3f}   "
              f"({', '.join(f'{e:.3f}' for e in errors)})   mean F: {pooled:.3f}", flush=True)
        if args.subsets:
            picks = np.random.default_rng(0).random((20_000, args.seeds)).argsort(1)[:, :args.subsets]
            subset = [fes_error(runs[0][0], np.mean([runs[i][1] for i in pick], axis=0)) for pick in picks]
            print(f"{'':45s} mean F of {args.subsets} seeds: median {np.median(subset):.3f}, 99.9th percentile "
                  f"{np.percentile(subset, 99.9):.3f}, above 0.5 kT in {np.mean(np.array(subset) > 0.5):.2%}",
                  flush=True)


if __name__ == "__main__":
    main()
