"""Reverse-KL coarse-graining of alanine dipeptide at 330 K (Schöberl et al., Sec. 4.2): a 2-d CV without data.

All 22 atoms in a body-fixed frame (60 coordinates), energies and forces from OpenMM through the bridge
(`cvplug.bridge.OpenMMEnergy`), β tempered up to 1 (330 K). Checked on a reference MD trajectory made with
`cvplug.simulate` (not used for training): held-out accuracy of a logistic classifier of alpha_R vs beta from z
(regions of `cvplug.analysis.ALA2_BASINS`; compare it with the majority-class fraction); mean absolute deviation
of the mean bond lengths of generated samples from the reference's; difference of the mean radius of gyration;
the fractions of generated samples in alpha_R and beta; training force calls and wall time.

    python benchmarks/reproductions/rkl/alanine.py --out runs/rkl-ala2                     # vacuum, 330 K
    python benchmarks/reproductions/rkl/alanine.py --system ala2-implicit --out runs/rkl-ala2-obc2   # OBC2 (slower bridge)
    python benchmarks/reproductions/rkl/alanine.py --data-frames 50 --gamma 0.5 --out runs/rkl-ala2-eq39   # eq. 39, 50 MD frames

With ``--data-frames N`` the mixed objective of eq. 39 is used: N frames of a separate MD run (another seed, not
the reference) enter as γ · KL(q ‖ p) + (1 − γ) · KL(p ‖ q); both terms have their minimum at q = p.

Writes results.json and the CV (rkl_cv.pt) in --out; training resumes from its checkpoint there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.analysis import ALA2_BASINS
from cvplug.features import dihedral_angles
from cvplug.metrics import bond_length_deviation, logistic_accuracy, radius_of_gyration
from cvplug.plugins.rkl import AdaptiveTempering, fit_model
from cvplug.plugins.rkl.gradnorm import KAPPA
from cvplug.plugins.rkl.objective import ENERGY_CAP
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory, trajectory_positions


def backbone_angles(spec, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ, ψ (degrees) of positions [N, 22, 3] (nm)."""
    xyz = torch.as_tensor(positions)
    return tuple(np.degrees(dihedral_angles(*(xyz[:, i] for i in spec.extras[name])).numpy())
                 for name in ("phi_atoms", "psi_atoms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="ala2-vacuum", choices=["ala2-vacuum", "ala2-implicit"])
    parser.add_argument("--out", type=Path, default=Path("runs/rkl-ala2"))
    parser.add_argument("--reference-steps", type=int, default=250_000, help="2 fs MD steps of the reference")
    parser.add_argument("--steps-per-stage", type=int, default=200)
    parser.add_argument("--final-steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--extra-latents", type=int, default=0,
                        help="K encoder draws tightening the bound (0: the paper's eq. 16)")
    parser.add_argument("--stage-lr-floor", type=float, default=1.0,
                        help="learning rate at the end of each stage, relative to its start (1: constant)")
    parser.add_argument("--kappa", type=lambda text: None if text == "none" else float(text), default=KAPPA,
                        help="per-sample gradient cap, in batch-mean norms ('none': off)")
    parser.add_argument("--max-step", type=float, default=AdaptiveTempering.max_step,
                        help="largest tempering step Δβ_max")
    parser.add_argument("--data-frames", type=int, default=0,
                        help="frames of a separate MD run for the eq.-39 mixed objective (0: no data)")
    parser.add_argument("--data-steps", type=int, default=50_000, help="2 fs MD steps that the data frames span")
    parser.add_argument("--gamma", type=float, default=0.5, help="weight of the reverse KL in eq. 39")
    parser.add_argument("--energy-cap", type=float, default=ENERGY_CAP,
                        help="tempered reduced energy β u (kT) above which the loss caps it (lin-log)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads and OpenMM bridge workers")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = systems.load(args.system, temperature=330.0)
    reference_path = simulate(spec, args.reference_steps, args.out / "reference.dcd", report_every=250,
                              seed=args.seed, progress=not args.quiet)
    reference = trajectory_positions(load_trajectory(reference_path), spec)

    data, gamma = None, None
    if args.data_frames > 0:
        if args.data_steps < args.data_frames:
            raise SystemExit(f"--data-steps ({args.data_steps}) must be at least --data-frames ({args.data_frames})")
        every = args.data_steps // args.data_frames
        data_path = simulate(spec, every * args.data_frames, args.out / "data.dcd", report_every=every,
                             seed=args.seed + 1, progress=not args.quiet)
        data, gamma = trajectory_positions(load_trajectory(data_path), spec), args.gamma
    fitted = fit_model(spec, 2, target_options={"threads": 1, "workers": args.threads}, init_std=0.01,
                       data=data, gamma=gamma,
                       schedule=AdaptiveTempering(max_step=args.max_step), steps_per_stage=args.steps_per_stage,
                       final_steps=args.final_steps, batch_size=args.batch, seed=args.seed,
                       extra_latents=args.extra_latents, kappa=args.kappa, energy_cap=args.energy_cap,
                       stage_lr_floor=args.stage_lr_floor,
                       work_dir=args.out, progress=not args.quiet)
    fitted.cv.export(args.out / "rkl_cv.pt")
    with torch.no_grad():
        z = fitted.cv(torch.as_tensor(reference, dtype=torch.get_default_dtype())).numpy()
        generated = fitted.target.positions(fitted.model.sample(20_000).x).double().numpy()
    fitted.target.close()
    phi, psi = backbone_angles(spec, reference)
    alpha, beta = ALA2_BASINS["alpha_R"](phi, psi), ALA2_BASINS["beta (C7eq/C5)"](phi, psi)
    either = alpha | beta
    bonds = [(bond.atom1.index, bond.atom2.index) for bond in spec.topology.bonds()]
    gen_phi, gen_psi = backbone_angles(spec, generated)
    results = {
        "system": args.system, "temperature_K": 330.0, "reference_frames": len(reference),
        "reference_fraction_alpha_beta": [float(alpha.mean()), float(beta.mean())],
        "generated_fraction_alpha_beta": [float(ALA2_BASINS["alpha_R"](gen_phi, gen_psi).mean()),
                                          float(ALA2_BASINS["beta (C7eq/C5)"](gen_phi, gen_psi).mean())],
        "logistic_accuracy_alpha_vs_beta": logistic_accuracy(z[either], alpha[either]),
        "majority_class_fraction": float(max(alpha[either].mean(), beta[either].mean())),
        "bond_length_mad_nm": bond_length_deviation(generated, reference, bonds),
        "rg_mean_difference_nm": float(radius_of_gyration(generated).mean() - radius_of_gyration(reference).mean()),
        "data_frames": 0 if data is None else len(data), "gamma": gamma,
        "force_calls": fitted.result.force_calls, "training_wall_s": fitted.result.wall_s,
        "stages": len(fitted.result.history), "final_beta": fitted.result.history[-1]["beta"],
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:<36}{value}")


if __name__ == "__main__":
    main()
