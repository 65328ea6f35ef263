"""Do `cvplug learn`'s defaults take a new system out of its first basin? Alanine dipeptide built from its PDB
with amber14-all.xml (vacuum, 300 K, minimised), every learn setting at its default (DynAE on the backbone
torsions, 4 rounds × 100 ps, 2 kJ/mol hills every 0.2 ps, γ = 10), one run per seed; prints per round the
percentage of frames with φ > 0 (the α_L/C7ax side, unvisited by unbiased MD from β at 300 K in 100 ps).

Run: `python benchmarks/learn_defaults.py --seeds 0 1 2 --out runs/learn-defaults [--method dynae]`.
"""
from __future__ import annotations

import argparse
import time

import torch

from cvplug import systems
from cvplug.learn import LearnSettings, learn
from cvplug.systems.alanine import data_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default=LearnSettings.method)
    parser.add_argument("--out", default="runs/learn-defaults")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        spec = systems.from_files(data_file("alanine-dipeptide", "pdb"), forcefield=["amber14-all.xml"])
        start = time.perf_counter()
        summaries = learn(spec, f"{args.out}/{args.method}-seed{seed}", LearnSettings(method=args.method, seed=seed),
                          progress=False)
        phi = [100 * s["phi_positive_fraction"][0] for s in summaries]
        rows.append((seed, phi, time.perf_counter() - start))
        print(f"seed {seed}: φ > 0 in {' / '.join(f'{p:.1f}' for p in phi)} % of frames (rounds 0–3), "
              f"{rows[-1][2]:.0f} s", flush=True)
    print(f"\n| seed | φ > 0 per round (%) | wall time |\n|---:|---|---:|")
    for seed, phi, seconds in rows:
        print(f"| {seed} | {' / '.join(f'{p:.1f}' for p in phi)} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
