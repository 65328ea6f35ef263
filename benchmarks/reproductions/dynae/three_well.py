"""DynAE on the three-well potential seen through (x, y) → (x, y + x²) (Wang et al., JCTC 2024, Fig. 2, Table 2).

Brownian dynamics of cvplug's "three-well" system (kT = 1, D = 1 nm²/ps, 1 fs steps), one frame every 10 steps
(0.01 ps), pairs at a lag of one frame. DynAE, a plain autoencoder and a β-VAE (same encoder and decoder) are
trained for each seed; each latent is scored against the true (x, y) with the relative isometry error
    L_z = min over rotation/reflection Q, shift b, scale s of E‖s Q z + b − (x, y)‖² / Var(x, y)
(0 = recovered up to a similarity, 1 = no information).

    python benchmarks/reproductions/dynae/three_well.py --out runs/dynae-three-well            # simulates, then trains 3×3 models
    python benchmarks/reproductions/dynae/three_well.py --trajectory tw.npz --out runs/tw       # reuse a trajectory (.npz)

Writes results.json (every number, mean ± std), dynae-seed*.pt (exported CVs), latent_*.png (latent coloured by
x and y), force_field.png (the learned latent force per lag). Re-running resumes from the checkpoints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.features import Cartesians
from cvplug.metrics import isometry_mse
from cvplug.plugins import dynae
from cvplug.plugins.dynae.plots import plot_force_field, plot_latent
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory

FRAME_EVERY = 10  # steps of 1 fs between frames: 0.01 ps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/dynae-three-well", help="output folder")
    parser.add_argument("--trajectory", help="an existing three-well .npz trajectory (default: simulate one)")
    parser.add_argument("--frames", type=int, default=150_001, help="frames used (pairs = frames − lag)")
    parser.add_argument("--lag", type=int, default=1, help="lag in frames")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(dynae.MODELS), choices=dynae.MODELS)
    parser.add_argument("--vae-beta", type=float, default=0.1,
                        help="KL weight of the β-VAE baseline (best of 1, 0.1, 0.01, 0.001 here)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the plugin's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    path = Path(args.trajectory) if args.trajectory else simulate(
        systems.load("three-well"), args.frames * FRAME_EVERY, out / "three_well.npz", report_every=FRAME_EVERY,
        seed=1, progress=not args.quiet)
    trajectory = load_trajectory(path)
    if len(trajectory) < args.frames:
        raise SystemExit(f"{path} has {len(trajectory)} frames, fewer than --frames {args.frames}")
    trajectory.x, trajectory.time = trajectory.x[:args.frames], trajectory.time[:args.frames]
    truth = trajectory.x
    positions = np.zeros((len(truth), 1, 3))
    positions[:, 0, :2] = truth
    features = dynae.Observed(Cartesians([0], components=(0, 1)), dynae.ParabolicWarp())
    print(f"{len(truth) - args.lag} pairs at lag {args.lag} frames "
          f"({args.lag * FRAME_EVERY * 1e-3:g} ps) from {path}")

    runs = []
    for model in args.models:
        for seed in args.seeds:
            options = {"beta": args.vae_beta} if model == "vae" else {}
            if args.epochs:
                options["epochs"] = args.epochs
            result = dynae.train(trajectory, 2, args.lag, features=features, model=model, seed=seed,
                                 checkpoint=out / f"{model}-seed{seed}.ckpt", progress=not args.quiet,
                                 **options)
            z = result.encode(positions)
            error = isometry_mse(z, truth, scale=True, relative=True)
            runs.append({"model": model, "seed": seed, "relative_L_z": error, "train_wall_s": result.seconds,
                         "train_cpu_s": result.cpu_seconds, "final_losses": result.history[-1]})
            print(f"{model:12s} seed {seed}: relative L_z = {error:.4f}   training {result.seconds:.0f} s wall, "
                  f"{result.cpu_seconds:.0f} s CPU")
            if seed == args.seeds[0]:
                plot_latent(z, {"x (nm)": truth[:, 0], "y (nm)": truth[:, 1]}, out / f"latent_{model}.png",
                            title=f"{model}, seed {seed}: relative L_z = {error:.4f}")
            if model == "dynae":
                result.cv.export(out / f"dynae-seed{seed}.pt")
                if seed == args.seeds[0]:
                    plot_force_field(result, z, out / "force_field.png", colour=truth[:, 0], colour_name="x (nm)")

    summary = {}
    for model in args.models:
        errors = np.array([r["relative_L_z"] for r in runs if r["model"] == model])
        wall = np.array([r["train_wall_s"] for r in runs if r["model"] == model])
        cpu = np.array([r["train_cpu_s"] for r in runs if r["model"] == model])
        summary[model] = {"relative_L_z_mean": errors.mean(), "relative_L_z_std": errors.std(ddof=0),
                          "train_wall_s_mean": wall.mean(), "train_cpu_s_mean": cpu.mean()}
        print(f"{model:12s} relative L_z = {errors.mean():.4f} ± {errors.std():.4f} over seeds {args.seeds}; "
              f"training {wall.mean():.0f} s wall / {cpu.mean():.0f} s CPU per run")
    if "dynae" in summary:
        for model in set(summary) - {"dynae"}:
            ratio = summary[model]["relative_L_z_mean"] / summary["dynae"]["relative_L_z_mean"]
            print(f"{model} / dynae error ratio: {ratio:.1f}")
    (out / "results.json").write_text(json.dumps({"runs": runs, "summary": summary, "frames": len(truth),
                                                  "lag_frames": args.lag, "trajectory": str(path)}, indent=1))
    print(f"results, CVs and pictures are in {out}")


if __name__ == "__main__":
    main()
