"""Acceptance of DynAE's default settings on alanine dipeptide: `dynae.fit` with nothing but the features.

1 ns of alanine dipeptide (OBC2, 300 K, frames every 0.2 ps, as benchmarks/reproductions/dynae/alanine.py simulates it), 10
heavy atoms' Cartesians Kabsch-aligned to the reference structure, train on the first 80 % of frames, score on
the last 20 % the R² of a 10-nearest-neighbour regressor from z to (sin φ, cos φ) and to (sin ψ, cos ψ).
Passes when every seed reaches ≥ 0.9 for both; exits 1 otherwise. Training runs on one torch thread.

    python benchmarks/reproductions/dynae/defaults.py                                    # simulates 1 ns first (≈ 1–4 min)
    python benchmarks/reproductions/dynae/defaults.py --trajectory runs/ala2-1ns.dcd     # reuse a DCD (+ .pdb beside it)

Other options of dynae.fit can be tried with --set, e.g. ``--set epochs=12`` (the old default).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.features import Cartesians
from cvplug.metrics import knn_r2
from cvplug.plugins import dynae
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory

THRESHOLD = 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectory", help="an unbiased ala2-implicit DCD, frames every 0.2 ps (default: "
                                             "simulate 1 ns into --out, or reuse it from an earlier run)")
    parser.add_argument("--out", default="runs/dynae-defaults", help="folder for the simulated trajectory")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra dynae.fit options (JSON values), to compare with the defaults")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.set)}

    spec = systems.load("ala2-implicit")
    # simulate() continues an unfinished run from its checkpoint and returns at once after a finished one
    path = Path(args.trajectory) if args.trajectory else simulate(
        spec, 500_000, Path(args.out) / "ala2-1ns.dcd", report_every=100, seed=1)
    trajectory = load_trajectory(path)
    split = int(0.8 * len(trajectory))
    heavy = list(spec.extras["heavy_atoms"])
    features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))
    import mdtraj

    targets = {}
    for name in ("phi", "psi"):
        angle = mdtraj.compute_dihedrals(trajectory, [spec.extras[f"{name}_atoms"]])[:, 0]
        targets[name] = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    print(f"{len(trajectory)} frames from {path}: training on {split}, scoring on {len(trajectory) - split}; "
          f"options {options or 'none (defaults)'}")

    rows = []
    for seed in args.seeds:
        started = time.perf_counter()
        result = dynae.train(trajectory[:split], features=features, seed=seed, progress=False, **options)
        seconds = time.perf_counter() - started
        z_train, z_test = result.encode(trajectory[:split].xyz), result.encode(trajectory[split:].xyz)
        scores = {name: knn_r2(z_train, target[:split], z_test, target[split:], k=10)
                  for name, target in targets.items()}
        rows.append((seed, scores["phi"], scores["psi"], result.settings.epochs, seconds))

    print("\n| seed | kNN R² φ | kNN R² ψ | epochs | fit (s, 1 thread) |\n|---|---|---|---|---|")
    for seed, phi, psi, epochs, seconds in rows:
        print(f"| {seed} | {phi:.3f} | {psi:.3f} | {epochs} | {seconds:.1f} |")
    passed = all(min(phi, psi) >= THRESHOLD for _, phi, psi, _, _ in rows)
    print(f"\n{'PASS' if passed else 'FAIL'}: kNN R² ≥ {THRESHOLD} for φ and ψ at every seed: {passed}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
