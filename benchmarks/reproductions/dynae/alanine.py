"""DynAE on alanine dipeptide (OBC2 implicit solvent, 300 K): a 2D latent from heavy-atom Cartesians.

Wang, Wang, Evans & Tiwary, JCTC 2024, Section 3.2. Input: the 10 heavy atoms' Cartesians (30 numbers),
Kabsch-aligned to the reference structure; pairs at a lag of one frame (0.2 ps). Trained on the first 80 % of an
unbiased trajectory and scored on the last 20 %: R² of a 10-nearest-neighbour regressor from z to (sin φ, cos φ)
and to (sin ψ, cos ψ), and the circular-linear correlation of each latent with φ and ψ. Whether the learned
latent force field separates the α_R and β basins is checked by following the deterministic drift
z ← z + f(z) from every test frame: each frame ends at an attractor of the force field, and we report how
purely the attractors sort α_R frames from β frames.

    python benchmarks/reproductions/dynae/alanine.py --out runs/dynae-ala2                    # simulates 1 ns first (≈ 5 min)
    python benchmarks/reproductions/dynae/alanine.py --trajectory ala2.dcd --out runs/ala2    # reuse a DCD (+ .pdb beside it)

Finally the seed-0 CV is exported and biased for a short well-tempered metadynamics run through
`cvplug bias` (``--bias-steps``, 0 to skip). Writes results.json, dynae-seed*.pt, latent.png,
force_field.png and bias/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.analysis import ALA2_BASINS
from cvplug.features import Cartesians
from cvplug.metrics import circular_linear_correlation, knn_r2
from cvplug.plugins import dynae
from cvplug.plugins.dynae.plots import plot_force_field, plot_latent
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory

SETTINGS = dict(epochs=150, groups=8, batch=64)  # ~4000 pairs: many short epochs


def sincos(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)


def best_direction_correlation(angle: np.ndarray, z: np.ndarray, directions: int = 360) -> float:
    """Largest circular-linear correlation of ``angle`` with a projection u·z over unit vectors u (2D z).

    Unlike the per-component numbers it does not depend on how the latent happens to be rotated.
    """
    turns = np.linspace(0, np.pi, directions, endpoint=False)
    return max(circular_linear_correlation(angle, z @ np.array([np.cos(t), np.sin(t)])) for t in turns)


def attractors(result, z: np.ndarray, steps: int = 3000) -> np.ndarray:
    """End points of the deterministic drift z ← z + f(z) after ``steps`` lags, from every point of ``z``."""
    current = torch.as_tensor(z, dtype=torch.float32)
    with torch.no_grad():
        for _ in range(steps):
            current = current + result.prior.force(current)
    return current.double().numpy()


def basin_separation(ends: np.ndarray, alpha: np.ndarray, beta: np.ndarray, tolerance: float) -> dict:
    """Group drift end points closer than ``tolerance`` into attractors; how purely they split α_R from β."""
    labels = dynae.assign(ends, dynae.regular_space(ends, tolerance))
    majority_alpha = np.bincount(labels[alpha]).argmax()
    majority_beta = np.bincount(labels[beta]).argmax()
    return {"attractors": int(labels.max() + 1),
            "alpha_R_to_its_attractor": float((labels[alpha] == majority_alpha).mean()),
            "beta_to_its_attractor": float((labels[beta] == majority_beta).mean()),
            "separated": bool(majority_alpha != majority_beta)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/dynae-ala2", help="output folder")
    parser.add_argument("--trajectory", help="an unbiased ala2-implicit DCD with its .pdb beside it, frames "
                                             "every 0.2 ps (default: simulate 1 ns)")
    parser.add_argument("--lag", type=int, default=1, help="lag in frames")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    parser.add_argument("--d-min", type=float, default=1.0, help="latent bin distance (latent units)")
    parser.add_argument("--bias-steps", type=int, default=20_000, help="metadynamics steps with the seed-0 CV")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = systems.load("ala2-implicit")
    path = Path(args.trajectory) if args.trajectory else simulate(
        spec, 500_000, out / "ala2-1ns.dcd", report_every=100, seed=1, progress=not args.quiet)
    trajectory = load_trajectory(path)
    split = int(args.train_fraction * len(trajectory))
    train_frames, test_frames = trajectory[:split], trajectory[split:]
    heavy = list(spec.extras["heavy_atoms"])
    features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))
    import mdtraj

    phi = mdtraj.compute_dihedrals(trajectory, [spec.extras["phi_atoms"]])[:, 0]
    psi = mdtraj.compute_dihedrals(trajectory, [spec.extras["psi_atoms"]])[:, 0]
    degrees = np.degrees(phi[split:]), np.degrees(psi[split:])
    alpha, beta = ALA2_BASINS["alpha_R"](*degrees), ALA2_BASINS["beta (C7eq/C5)"](*degrees)
    print(f"{len(trajectory)} frames from {path}; training on the first {split}, testing on {len(test_frames)} "
          f"(α_R {alpha.mean():.2f}, β {beta.mean():.2f} of the test frames)")

    runs = []
    for seed in args.seeds:
        result = dynae.train(train_frames, 2, args.lag, features=features, seed=seed, d_min=args.d_min,
                             checkpoint=out / f"dynae-seed{seed}.ckpt", progress=not args.quiet,
                             **{**SETTINGS, "epochs": args.epochs})
        z_train, z_test = result.encode(train_frames.xyz), result.encode(test_frames.xyz)
        ends = attractors(result, z_test)
        angles = {"phi": phi, "psi": psi}
        run = {"seed": seed,
               "knn_r2_phi": knn_r2(z_train, sincos(phi[:split]), z_test, sincos(phi[split:]), k=10),
               "knn_r2_psi": knn_r2(z_train, sincos(psi[:split]), z_test, sincos(psi[split:]), k=10),
               "circular_linear": {f"z{j}_{name}": circular_linear_correlation(angle[split:], z_test[:, j])
                                   for j in range(2) for name, angle in angles.items()},
               "circular_linear_best_direction": {name: best_direction_correlation(angle[split:], z_test)
                                                  for name, angle in angles.items()},
               "force_field": basin_separation(ends, alpha, beta, tolerance=1.0),
               "train_wall_s": result.seconds, "train_cpu_s": result.cpu_seconds,
               "final_losses": result.history[-1]}
        runs.append(run)
        rounded = {key: {k: round(v, 3) for k, v in run[key].items()}
                   for key in ("circular_linear", "circular_linear_best_direction")}
        print(f"seed {seed}: kNN R² (sin, cos) φ {run['knn_r2_phi']:.3f}, ψ {run['knn_r2_psi']:.3f}; "
              f"{rounded}; force field {run['force_field']}; "
              f"training {result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU")
        result.cv.export(out / f"dynae-seed{seed}.pt")
        if seed == args.seeds[0]:
            z_all = np.concatenate([z_train, z_test])
            plot_latent(z_all, {"φ (rad)": phi, "ψ (rad)": psi}, out / "latent.png", cmaps=["twilight"] * 2,
                        title=f"DynAE latent of alanine dipeptide, seed {seed}")
            plot_force_field(result, z_all, out / "force_field.png", colour=psi, colour_name="ψ (rad)",
                             cmap="twilight")

    summary = {}
    for key in ("knn_r2_phi", "knn_r2_psi", "train_wall_s", "train_cpu_s"):
        values = np.array([r[key] for r in runs])
        summary[key] = {"mean": values.mean(), "std": values.std()}
        print(f"{key}: {values.mean():.3f} ± {values.std():.3f}")
    for group in ("circular_linear", "circular_linear_best_direction"):
        for key in runs[0][group]:
            values = np.array([r[group][key] for r in runs])
            summary[f"{group}_{key}"] = {"mean": values.mean(), "std": values.std()}
            print(f"{group} {key}: {values.mean():.3f} ± {values.std():.3f}")
    summary["force_field_separates_alpha_R_and_beta"] = [r["force_field"]["separated"] for r in runs]

    if args.bias_steps:
        cv_file = out / f"dynae-seed{args.seeds[0]}.pt"
        command = [sys.executable, "-m", "cvplug.cli", "bias", "--system", "ala2-implicit", "--cv", str(cv_file),
                   "--steps", str(args.bias_steps), "--out", str(out / "bias"), "--report-every", "500"]
        print("biasing:", " ".join(command))
        subprocess.run(command, check=True)
        colvar = np.loadtxt(out / "bias" / "colvar.dat", ndmin=2)
        summary["bias_run"] = {"steps": args.bias_steps, "final_bias_kJmol": float(colvar[-1, -1]),
                               "cv_range_visited": [[float(colvar[:, 1 + j].min()), float(colvar[:, 1 + j].max())]
                                                    for j in range(2)]}
        print(f"metadynamics along the DynAE CV: {summary['bias_run']}")
    (out / "results.json").write_text(json.dumps({"runs": runs, "summary": summary, "trajectory": str(path),
                                                  "train_frames": split}, indent=1))
    print(f"results, CVs and pictures are in {out}")


if __name__ == "__main__":
    main()
