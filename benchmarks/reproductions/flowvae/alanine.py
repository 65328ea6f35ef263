"""Alanine dipeptide (OBC2, 300 K), 2 latents (flowvae): bond-angle-torsion and Cartesian inputs, VAE-MC with
OpenMM energies, and metadynamics along the best model's CV.

BAT inputs: a Z-matrix rooted at the alanine N (48 coordinates: 9 free bond lengths — the 12 X–H bonds are
constrained in the simulation and left out —, 20 angles, 19 dihedrals, periodic, among them φ and ψ; a later
sibling's dihedral is an offset from the first sibling's, see ZMatrix, so a methyl rotation is one coordinate). Each
decoder is trained at β_reg = 1 and scored by JD_encode per latent, JD_prior, total correlation, −ELBO, the
circular-linear correlation of each latent with φ and ψ, and f_acc: the VAE-MC acceptance rate, with energies
from OpenMM (the BAT density carries the Jacobian Π b² sin θ). Cartesian inputs: the 10 heavy atoms,
Kabsch-aligned to the first frame (no f_acc: aligned Cartesians have no density of their own in 3N dimensions).
Each model keeps the parameters of its best validation epoch at β_reg (the flow decoder overfits otherwise).
The CV of the BAT model with the highest f_acc is exported (encoder mean, built from cvplug.features plus
the plugin's Angles feature, so it reads OpenMM positions) and biased with well-tempered metadynamics.

    python benchmarks/reproductions/flowvae/alanine.py --out runs/flowvae-ala2            # simulates 5 ns first
    python benchmarks/reproductions/flowvae/alanine.py --out runs/flowvae-ala2 --trajectory md.dcd --topology md.pdb

Outputs in ``--out``: ``table.md``, ``results.json``, ``latents.png`` (latents coloured by φ and ψ),
``cv_best.pt``, ``metadynamics/`` (colvar, FES, trajectory), ``ckpt/``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import mdtraj
import numpy as np
import torch

from cvplug import cli, systems
from cvplug.analysis import ala2_basins
from cvplug.features import Cartesians
from cvplug.metrics import circular_linear_correlation
from cvplug.plugins.flowvae import DECODERS, BATEnergy, ZMatrix, fit_vae, make_cv
from cvplug.plugins.flowvae import score
from scoring import markdown_table  # beside this script
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory

SYSTEM = "ala2-implicit"


def trajectory(args, spec) -> mdtraj.Trajectory:
    if args.trajectory:
        return mdtraj.load(str(args.trajectory), top=str(args.topology or args.trajectory.with_suffix(".pdb")))
    path = simulate(spec, args.md_steps, args.out / "md", report_every=100, seed=args.seed,
                    progress=not args.quiet)
    return load_trajectory(path)


def constraints(spec) -> dict:
    return {tuple(spec.system.getConstraintParameters(i)[:2]): spec.system.getConstraintParameters(i)[2]._value
            for i in range(spec.system.getNumConstraints())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/flowvae-ala2"))
    parser.add_argument("--trajectory", type=Path, help="an ala2-implicit trajectory (DCD); default: simulate")
    parser.add_argument("--topology", type=Path, help="its PDB (default: the DCD path with .pdb)")
    parser.add_argument("--md-steps", type=int, default=2_500_000, help="steps (2 fs) to simulate without --trajectory")
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--cartesian-decoders", nargs="*", default=["condind", "flow"], choices=list(DECODERS),
                        help="decoders for aligned Cartesian inputs (none: BAT only)")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--anneal", type=int, default=20, help="epochs of β annealing (paper: 40 for molecules)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-4)")
    parser.add_argument("--hidden", type=int, default=300, help="hidden units (paper: 300 for molecules)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--meta-steps", type=int, default=250_000, help="metadynamics steps (2 fs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads (torch uses 1)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = systems.load(SYSTEM)
    traj = trajectory(args, spec)
    xyz = torch.tensor(traj.xyz, dtype=torch.float32)
    phi = mdtraj.compute_dihedrals(traj, [spec.extras["phi_atoms"]])[:, 0]
    psi = mdtraj.compute_dihedrals(traj, [spec.extras["psi_atoms"]])[:, 0]
    order = torch.randperm(len(xyz), generator=torch.Generator().manual_seed(args.seed))
    n_test = int(args.test_fraction * len(xyz))
    test, train = order[:n_test], order[n_test:]

    zmatrix = ZMatrix.from_topology(traj.topology, root=spec.extras["phi_atoms"][1], constraints=constraints(spec))
    heavy = list(spec.extras["heavy_atoms"])
    representations = {
        "BAT": (zmatrix.feature(), zmatrix.periodic, args.decoders),
        "Cartesian": (Cartesians(heavy, reference=xyz[0, heavy]), [False] * 3 * len(heavy), args.cartesian_decoders),
    }
    energy = BATEnergy(spec, zmatrix, threads=args.threads)
    hidden = (args.hidden, args.hidden)
    rows, models = [], {}
    for name, (features, periodic, decoders) in representations.items():
        with torch.no_grad():
            x = features(xyz)
        for decoder in decoders:
            vae, history = fit_vae(x[train], periodic, 2, decoder, beta=args.beta, epochs=args.epochs,
                                   anneal_epochs=args.anneal, lr=args.lr, seed=args.seed, keep_best=True,
                                   checkpoint=args.out / "ckpt" / f"{name}_{decoder}.ckpt",
                                   progress=not args.quiet, encoder_hidden=hidden, decoder_hidden=hidden)
            metrics = score(vae, x[test], energy if name == "BAT" else None, seed=args.seed)
            with torch.no_grad():
                z = vae.encode(x[test])[0].numpy()
            correlation = {f"R(z{k}, {angle})": circular_linear_correlation(values[test.numpy()], z[:, k])
                           for k in range(2) for angle, values in (("phi", phi), ("psi", psi))}
            rows.append({"input": name, "decoder": decoder, **metrics, **correlation, "final": history[-1]})
            models[(name, decoder)] = (vae, features, z)
            print(f"{name} {decoder}: f_acc {metrics.get('f_acc', float('nan')):.3g}, JD {metrics['jd_encode']}, "
                  f"{correlation}", flush=True)
    energy.close()
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    table = markdown_table(rows, ["input", "decoder"])
    correlations = ["| input | decoder | " + " | ".join(k for k in rows[0] if k.startswith("R(")) + " |",
                    "|---|---|" + "---|" * 4] + [
        f"| {r['input']} | {r['decoder']} | " + " | ".join(f"{r[k]:.2f}" for k in r if k.startswith("R(")) + " |"
        for r in rows]
    plot_latents(models, phi[test.numpy()], psi[test.numpy()], args.out / "latents.png")

    best = max((r for r in rows if "f_acc" in r), key=lambda r: r["f_acc"])
    vae, features, _ = models[("BAT", best["decoder"])]
    cv = make_cv(vae, features, spec.n_atoms, positions=xyz[train],
                 info={"input": "BAT", "beta": args.beta, "f_acc": best["f_acc"]})
    cv_file = cv.export(args.out / "cv_best.pt")
    bias_out = args.out / "metadynamics"
    cli.main(["bias", "--system", SYSTEM, "--cv", str(cv_file), "--steps", str(args.meta_steps), "--out", str(bias_out),
              "--seed", str(args.seed)])
    biased = mdtraj.load(str(bias_out / "trajectory.dcd"), top=str(bias_out / "trajectory.pdb"))
    basins = ala2_basins(mdtraj.compute_dihedrals(biased, [spec.extras["phi_atoms"]])[:, 0],
                         mdtraj.compute_dihedrals(biased, [spec.extras["psi_atoms"]])[:, 0])
    unbiased = ala2_basins(phi, psi)
    summary = "\n".join([table, "", *correlations, "",
                         f"Metadynamics along the CV of the BAT/{best['decoder']} model ({args.meta_steps} steps): "
                         f"basin fractions {json.dumps({k: round(v, 3) for k, v in basins.items()})}; "
                         f"unbiased training data: {json.dumps({k: round(v, 3) for k, v in unbiased.items()})}"])
    (args.out / "table.md").write_text(summary + "\n")
    print(summary)


def plot_latents(models: dict, phi: np.ndarray, psi: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(models), figsize=(3.2 * len(models), 6), squeeze=False)
    for column, ((name, decoder), (_, _, z)) in enumerate(models.items()):
        for row, (angle, label) in enumerate(((phi, "φ"), (psi, "ψ"))):
            ax = axes[row, column]
            image = ax.scatter(z[:, 0], z[:, 1], c=np.degrees(angle), cmap="twilight", s=2, vmin=-180, vmax=180)
            ax.set(title=f"{name} {decoder}: colour {label}", xlabel="z0", ylabel="z1")
    fig.colorbar(image, ax=axes.ravel().tolist(), label="degrees")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
