"""Neural canonical transformation of alanine dipeptide (OBC2 implicit solvent, 300 K) from unbiased MD.

Li, Dong, Zhang & Wang, PRX 10, 021020 (2020), Sec. V A. Input: the 10 heavy atoms' Cartesians (30 numbers),
Kabsch-aligned to the reference structure, mass-weighted; the six rigid-body directions the alignment removes
leave 24 coordinates. The NCT is trained by maximum likelihood on phase-space samples (frames + Maxwell–Boltzmann
momenta). Reported: the learned frequencies; the mutual information (KSG estimator, scikit-learn) of every
latent coordinate Q_k, slowest first, with φ and ψ; a latent interpolation from α_R to β drawn on the
Ramachandran plot; and a short well-tempered metadynamics run along (Q1, Q2) through `cvplug bias`.

    python benchmarks/reproductions/nct/alanine.py --out runs/nct-ala2                    # simulates 1 ns first (≈ 5 min)
    python benchmarks/reproductions/nct/alanine.py --trajectory ala2.dcd --out runs/ala2  # reuse a DCD (+ .pdb beside it)

Writes results.json, nct.pt (the CV), interpolation.png (Ramachandran path, latent maps) and bias/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.analysis import ala2_basins
from cvplug.features import dihedral_angles
from cvplug.metrics import mutual_information_table
from cvplug.plugins.nct import fit_nct
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory


def backbone_dihedrals(spec, features_x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """φ, ψ (radians) of heavy-atom feature rows [N, 30] (all four atoms of each dihedral are heavy)."""
    heavy = list(spec.extras["heavy_atoms"])
    xyz = features_x.reshape(len(features_x), len(heavy), 3).double()
    angles = []
    for quad in (spec.extras["phi_atoms"], spec.extras["psi_atoms"]):
        p = [xyz[:, heavy.index(i)] for i in quad]
        angles.append(dihedral_angles(*p).numpy())
    return angles[0], angles[1]


def nearest_frame(phi, psi, target_deg) -> int:
    """Index of the frame closest to (φ, ψ) = target (degrees) on the torus."""
    d = np.angle(np.exp(1j * (np.stack([phi, psi], 1) - np.radians(target_deg))))
    return int(np.argmin((d ** 2).sum(1)))


def plot(out: Path, phi, psi, path_phi, path_psi, linear_phi, linear_psi, Q, frequencies) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    ax.hist2d(np.degrees(phi), np.degrees(psi), bins=72, range=[[-180, 180], [-180, 180]], cmap="Greys",
              norm=LogNorm())
    ax.plot(np.degrees(linear_phi), np.degrees(linear_psi), "o--", color="tab:blue", ms=3,
            label="straight line in aligned Cartesians")
    ax.plot(np.degrees(path_phi), np.degrees(path_psi), "o-", color="tab:red", ms=4, label="straight line in NCT latent")
    ax.set(xlabel="φ (deg)", ylabel="ψ (deg)", title="α_R → β: interpolated conformations",
           xlim=(-180, 180), ylim=(-180, 180))
    ax.legend(loc="lower right", fontsize=8)
    for ax, angle, name in ((axes[1], phi, "φ"), (axes[2], psi, "ψ")):
        image = ax.scatter(Q[:, 0], Q[:, 1], c=np.degrees(angle), s=2, cmap="twilight", vmin=-180, vmax=180)
        fig.colorbar(image, ax=ax, label=f"{name} (deg)")
        ax.set(xlabel=f"Q1 (ω = {frequencies[0]:.2f}/ps), nm·√amu", ylabel=f"Q2 (ω = {frequencies[1]:.2f}/ps)",
               title=f"two slowest latent coordinates, coloured by {name}")
    fig.tight_layout()
    fig.savefig(out / "interpolation.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/nct-ala2", help="output folder")
    parser.add_argument("--trajectory", help="an unbiased ala2-implicit DCD with its .pdb beside it "
                                             "(default: simulate 1 ns, frames every 0.2 ps)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (batches of 256 frames)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bias-steps", type=int, default=20_000, help="metadynamics steps along (Q1, Q2); 0 skips")
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
    print(f"{len(trajectory)} frames from {path}")

    start = time.time()
    cv = fit_nct(trajectory, system=spec, steps=args.steps, seed=args.seed, checkpoint=out / "nct.ckpt",
                 progress=not args.quiet)
    seconds = time.time() - start
    model = cv.encoder.model
    frequencies = np.array(cv.info["all_frequencies"])
    print(f"trained in {seconds:.0f} s; frequencies (1/ps), slowest first: {np.round(frequencies, 2).tolist()}")

    x = cv.features(torch.as_tensor(trajectory.xyz, dtype=torch.float32))
    with torch.no_grad():
        Q = model.latent_coordinates(x)[:, model.slow_order()].double().numpy()
    phi, psi = backbone_dihedrals(spec, x)
    table = mutual_information_table(Q, {"phi": phi, "psi": psi}, seed=args.seed)
    print("mutual information (nats) of Q_k with φ and ψ, slowest first:")
    for k in range(len(frequencies)):
        print(f"  Q{k + 1:<2d} ω = {frequencies[k]:7.2f}/ps   I(Q;φ) = {table['phi'][k]:.3f}   "
              f"I(Q;ψ) = {table['psi'][k]:.3f}")
    best = np.maximum(table["phi"], table["psi"])
    criteria = {
        "best_slow_beats_every_fast_for_phi": bool(table["phi"][:2].max() > table["phi"][2:].max()),
        "best_slow_beats_every_fast_for_psi": bool(table["psi"][:2].max() > table["psi"][2:].max()),
        "each_slow_beats_every_fast (max over φ, ψ)": bool(best[:2].min() > best[2:].max()),
    }
    print(f"criteria: {criteria}")

    alpha = nearest_frame(phi, psi, (-75, -40))
    beta = nearest_frame(phi, psi, (-80, 150))
    steps = 25
    path_x = model.interpolate(x[alpha], x[beta], steps=steps)
    path_phi, path_psi = backbone_dihedrals(spec, path_x)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    linear_phi, linear_psi = backbone_dihedrals(spec, (1 - t) * x[alpha] + t * x[beta])
    plot(out, phi, psi, path_phi, path_psi, linear_phi, linear_psi, Q, frequencies)
    interpolation = {"from_frame": alpha, "to_frame": beta,
                     "phi_deg": np.round(np.degrees(path_phi), 1).tolist(),
                     "psi_deg": np.round(np.degrees(path_psi), 1).tolist()}
    print(f"latent path α_R → β: φ {interpolation['phi_deg']}\n                   ψ {interpolation['psi_deg']}")

    cv_file = cv.export(out / "nct.pt")
    results = {"trajectory": str(path), "frames": len(trajectory), "train_seconds": seconds,
               "frequencies_per_ps": frequencies.tolist(), "final_loss": cv.info["final_loss"],
               "mutual_information_nats": {k: v.tolist() for k, v in table.items()}, "criteria": criteria,
               "interpolation": interpolation, "unbiased_basins": ala2_basins(phi, psi)}
    if args.bias_steps:
        command = [sys.executable, "-m", "cvplug.cli", "bias", "--system", "ala2-implicit", "--cv", str(cv_file),
                   "--steps", str(args.bias_steps), "--out", str(out / "bias"), "--report-every", "500"]
        print("biasing:", " ".join(command))
        subprocess.run(command, check=True)
        biased = load_trajectory(out / "bias" / "trajectory.dcd")
        bx = cv.features(torch.as_tensor(biased.xyz, dtype=torch.float32))
        bphi, bpsi = backbone_dihedrals(spec, bx)
        colvar = np.loadtxt(out / "bias" / "colvar.dat", ndmin=2)
        results["bias_run"] = {"steps": args.bias_steps, "final_bias_kJmol": float(colvar[-1, -1]),
                               "basins": ala2_basins(bphi, bpsi),
                               "cv_range_visited": [[float(colvar[:, 1 + j].min()), float(colvar[:, 1 + j].max())]
                                                    for j in range(2)]}
        print(f"metadynamics along (Q1, Q2): {results['bias_run']}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results, CV and pictures are in {out}")


if __name__ == "__main__":
    main()
