"""Reverse-KL coarse-graining of alanine dipeptide (AMBER ff96, OBC2, 330 K; Schöberl et al., Sec. 4.2): 2-d CVs.

All 22 atoms in a body-fixed frame (60 coordinates), energies and forces from OpenMM through the bridge. One
command per configuration (:data:`CONFIGS`); each prints the acceptance table of issue 23 for every seed:

* generated α_R and β weights (≥ 5,000 samples at β = 1) against the metadynamics reference
  (``ala2_reference.json``, :mod:`ala2_reference`), and whether each lies within a factor of 2;
* held-out accuracy of a logistic classifier α_R vs β on the encoder mean z of a plain MD run (not used for
  training; compare with its majority-class fraction);
* mean absolute deviation of the mean bond lengths, difference of the mean radius of gyration (generated − MD);
* the fraction of generated samples with D-alanine (CA's chirality inverted);
* the circular mean (φ, ψ) of the generated α_R configurations beside the MD's (is it the same basin?);
* training force calls and wall time;
* with a mixture prior, per component: π, its draws' basins and their log importance weights
  (:func:`component_weights`: why the reverse KL weighs the basins as it does).

It also writes ``figure10.png`` (the (φ, ψ) of the decoder means μθ(z) on a grid of z, coloured by z1 and z2, as
in the paper's Figure 10) and ``ramachandran.png`` (generated histogram beside the reference free energy).

    python benchmarks/reproductions/rkl/alanine.py --config plain --seeds 0 1 2     # the paper's model
    python benchmarks/reproductions/rkl/alanine.py --config mixture-data --seeds 0 1 2
    python benchmarks/reproductions/rkl/alanine.py --config mixture-biased --seeds 0 1 2
    python benchmarks/reproductions/rkl/alanine.py --config mixture-warm --seeds 0 1 2    # the best configuration

``--set KEY=VALUE`` overrides a configuration's option (e.g. ``--set final_steps=1000`` for a reduced budget).
Writes results.json, the CV (rkl_cv.pt) and the plots in ``--out``/<config or --name>/seed<k>; training resumes from its
checkpoint there. The plain MD runs (classifier check and the eq.-39 data frames) and the biased runs of
``mixture-biased`` are kept in ``--out``/md.
"""
from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.analysis import ALA2_BASINS
from cvplug.features import dihedral_angles
from cvplug.metad import reweighting_factors, run_metadynamics
from cvplug.metrics import bond_length_deviation, logistic_accuracy, radius_of_gyration
from cvplug.plugins.rkl import AdaptiveTempering, fit_model, reverse_kl
from cvplug.runs import write_json
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory, trajectory_positions

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "ala2_reference.json"
TEMPERATURE = 330.0
BASINS = {"alpha_R": "alpha_R", "beta": "beta (C7eq/C5)", "phi>0": "phi>0 (alpha_L/C7ax)"}

PAPER = dict(steps_per_stage=200, final_steps=1000, batch_size=128, extra_latents=0, kappa=3.0, max_step=0.1,
             start=1e-3, stage_lr_floor=1.0, energy_cap=1e4, init_std=0.01)
CONFIGS = {
    # The paper's model and training (eq. 16 bound, κ = 3, Δβ_max = 0.1), our frame and energy cap.
    "plain": dict(PAPER),
    # The double well's settings: tightened bound, looser cap, small tempering steps, learning-rate decay.
    "tuned": dict(PAPER, extra_latents=16, kappa=10.0, max_step=0.025, stage_lr_floor=0.01, final_steps=3000),
    # Options of ours: a 3-component mixture prior, started from 50 frames of a plain MD run (forward bound,
    # 2000 steps), then the eq.-39 mixed objective (γ = 0.5) at β = 1 with the tightened bound.
    "mixture-data": dict(PAPER, mixture=3, data_frames=50, pretrain_steps=2000, gamma=0.5, start=1.0,
                         final_steps=3000, extra_latents=16, kappa=10.0),
    # `mixture-data` with one decoder and one σθ per mixture component (a mixture decoder, an option of ours).
    "mixture-decoder": dict(PAPER, mixture=3, mixture_decoder=True, data_frames=50, pretrain_steps=2000, gamma=0.5,
                            start=1.0, final_steps=3000, extra_latents=16, kappa=10.0),
    # `mixture-decoder` whose 50 frames come from 1 ns of metadynamics along the `plain` model's CV (its run for the
    # same seed), drawn by their reweighting factors, and whose weights π follow those frames only (options of ours).
    "mixture-biased": dict(PAPER, mixture=3, mixture_decoder=True, data_frames=50, data_source="biased",
                           data_steps=500_000, weights_from_data=True, pretrain_steps=2000, gamma=0.5, start=1.0,
                           final_steps=3000, extra_latents=16, kappa=10.0),
    # `mixture-biased` started from the `plain` model instead of from scratch: its encoder, and its decoder for
    # every component, with the components placed where its encoder puts the 50 frames; π held at the shares of
    # those clusters and the encoder (the CV) held as the plain model's (options of ours; `--set hold=...` holds
    # less, see `warm_start`).
    "mixture-warm": dict(PAPER, mixture=3, mixture_decoder=True, data_frames=50, data_source="biased",
                         data_steps=500_000, warm_start=True, hold=("weights", "encoder"), pretrain_steps=2000,
                         gamma=0.5, start=1.0, final_steps=3000, extra_latents=16, kappa=10.0),
    # The same start from data, without the mixture prior (the paper's N(0, I)).
    "data": dict(PAPER, data_frames=50, pretrain_steps=2000, gamma=0.5, start=1.0, final_steps=3000,
                 extra_latents=16, kappa=10.0),
}


def backbone_angles(spec, positions) -> tuple[np.ndarray, np.ndarray]:
    """φ, ψ (degrees) of positions [N, 22, 3] (nm)."""
    xyz = torch.as_tensor(np.asarray(positions))
    return tuple(np.degrees(dihedral_angles(*(xyz[:, i] for i in spec.extras[name])).numpy())
                 for name in ("phi_atoms", "psi_atoms"))


def basin_fractions(spec, positions, weights=None) -> dict:
    """Fractions of configurations in α_R, β and φ > 0 (:data:`cvplug.analysis.ALA2_BASINS`), weighted by
    ``weights`` [N] if given."""
    phi, psi = backbone_angles(spec, positions)
    return {short: float(np.average(ALA2_BASINS[name](phi, psi), weights=weights)) for short, name in BASINS.items()}


def alpha_centre(spec, positions) -> list[float]:
    """Circular mean (φ, ψ) in degrees of the configurations in α_R (nan when there are none)."""
    phi, psi = backbone_angles(spec, positions)
    inside = ALA2_BASINS["alpha_R"](phi, psi)
    if not inside.any():
        return [float("nan"), float("nan")]
    return [float(np.degrees(np.angle(np.exp(1j * np.radians(a[inside])).mean()))) for a in (phi, psi)]


def chirality(spec, positions) -> np.ndarray:
    """Sign of the triple product (N − CA) · ((C − CA) × (CB − CA)) of the alanine residue [N]."""
    names = {a.name: a.index for a in spec.topology.atoms() if a.residue.name == "ALA"}
    xyz = np.asarray(positions)
    ca = xyz[:, names["CA"]]
    vectors = [xyz[:, names[n]] - ca for n in ("N", "C", "CB")]
    return np.sign(np.einsum("ij,ij->i", vectors[0], np.cross(vectors[1], vectors[2])))


def md_positions(spec, out: Path, steps: int, every: int, seed: int) -> np.ndarray:
    """Positions [N, 22, 3] (nm) of a plain MD run at 330 K (2 fs steps, a frame every ``every``), kept in ``out``."""
    path = simulate(spec, steps, out, report_every=every, seed=seed, progress=False)
    return trajectory_positions(load_trajectory(path), spec)


def biased_frames(spec, cv, out: Path, frames: int, steps: int, seed: int) -> tuple[np.ndarray, dict]:
    """``frames`` positions [frames, 22, 3] (nm) drawn by their reweighting factors exp(V_final(s)/kT) from a
    well-tempered metadynamics run of ``steps`` 2 fs steps along ``cv`` (``cvplug.metad`` defaults, a frame every
    100 steps, kept in ``out``; resumes), by systematic resampling: an unweighted sample of the unbiased ensemble.
    Also returns the run's reweighted basin weights (all its frames)."""
    run_metadynamics(spec, cv, steps, out, report_every=100, seed=seed, threads=1, progress=False)
    weights = reweighting_factors(out)
    positions = trajectory_positions(load_trajectory(out / "trajectory.dcd"), spec)
    if len(positions) != len(weights):
        raise RuntimeError(f"{out}: {len(positions)} frames but {len(weights)} colvar lines")
    points = (np.random.default_rng(seed).random() + np.arange(frames)) / frames
    drawn = positions[np.minimum(np.searchsorted(np.cumsum(weights), points), len(weights) - 1)]
    return drawn, basin_fractions(spec, positions, weights)


def reference_weights() -> dict | None:
    """Mean and standard error of the reference basin weights (from ``ala2_reference.json``), or None."""
    if not REFERENCE.exists():
        return None
    summary = json.loads(REFERENCE.read_text())["summary"]
    if summary is None:
        return None
    summary = summary["fes"]
    return {short: summary[name] for short, name in BASINS.items()}


def train(spec, options: dict, seed: int, out: Path, md_dir: Path, data_steps: int, progress: bool):
    """Fit one configuration; returns the :class:`~cvplug.plugins.rkl.RklFit` and what the data frames hold
    (their basin fractions; for biased frames also the biased run's reweighted basin weights). Data frames, if any:
    evenly spaced over ``data_steps`` MD steps (the configuration's ``data_steps`` if it has one) of a plain run
    seeded 1000 + seed, or with ``data_source="biased"`` drawn from that many steps of metadynamics along the CV of
    the ``plain`` configuration for this seed (fitted first in ``out``/../../plain/seed<k>, or resumed) by
    :func:`biased_frames`; ``warm_start`` (biased frames only) starts the mixture from that ``plain`` model
    (:func:`~cvplug.plugins.rkl.warm_start`)."""
    options = dict(options)
    schedule = AdaptiveTempering(start=options.pop("start"), max_step=options.pop("max_step"))
    frames, gamma = options.pop("data_frames", 0), options.pop("gamma", None)
    source, data_steps = options.pop("data_source", "md"), options.pop("data_steps", data_steps)
    warm, plain = options.pop("warm_start", False), None
    if warm and not (frames and source == "biased"):
        raise ValueError("warm_start needs data_source='biased' (it starts from that run's plain model)")
    data, about = None, {}
    if frames and source == "biased":
        plain, _ = train(spec, CONFIGS["plain"], seed, out.parent.parent / "plain" / f"seed{seed}", md_dir,
                         data_steps, progress)
        plain.target.close()
        data, about["biased_run_reweighted"] = biased_frames(
            spec, plain.cv, md_dir / f"biased-{data_steps // 500}ps-seed{seed}", frames, data_steps, seed=1000 + seed)
    elif frames:
        every = data_steps // frames
        data = md_positions(spec, md_dir / f"data-seed{seed}", every * frames, every, seed=1000 + seed)
    if data is not None:
        about["data_frames"] = basin_fractions(spec, data)
    fitted = fit_model(spec, 2, target_options={"threads": 1, "workers": 1}, schedule=schedule, data=data,
                       gamma=gamma if data is not None else None, base=plain.model if warm else None, seed=seed,
                       work_dir=out, progress=progress, **options)
    return fitted, about


def evaluate(spec, fitted, reference_md: np.ndarray, samples: int = 20_000) -> dict:
    """The acceptance numbers of one fitted model (see the module docstring)."""
    with torch.no_grad():
        generated = fitted.target.positions(fitted.model.sample(samples, torch.Generator().manual_seed(0)).x)
        generated = generated.double().numpy()
        z = fitted.cv(torch.as_tensor(reference_md, dtype=torch.get_default_dtype())).numpy()
    phi, psi = backbone_angles(spec, reference_md)
    alpha, beta = ALA2_BASINS["alpha_R"](phi, psi), ALA2_BASINS["beta (C7eq/C5)"](phi, psi)
    either = alpha | beta
    bonds = [(bond.atom1.index, bond.atom2.index) for bond in spec.topology.bonds()]
    reference_sign = chirality(spec, spec.positions[None])[0]
    return {"generated": basin_fractions(spec, generated), "md": basin_fractions(spec, reference_md),
            "alpha_centre_generated_deg": alpha_centre(spec, generated),
            "alpha_centre_md_deg": alpha_centre(spec, reference_md),
            "classifier_alpha_vs_beta": (logistic_accuracy(z[either], alpha[either])
                                         if alpha.any() and beta.any() else float("nan")),
            "majority_class": float(max(alpha[either].mean(), beta[either].mean())),
            "bond_length_mad_nm": bond_length_deviation(generated, reference_md, bonds),
            "rg_difference_nm": float(radius_of_gyration(generated).mean() - radius_of_gyration(reference_md).mean()),
            "d_alanine_fraction": float(np.mean(chirality(spec, generated) != reference_sign)),
            "beta_near_alpha": beta_near_alpha(z, alpha, beta, phi, psi),
            "samples": samples, "force_calls": fitted.result.force_calls, "wall_s": fitted.result.wall_s,
            "stages": len(fitted.result.history)}


def beta_near_alpha(z: np.ndarray, alpha: np.ndarray, beta: np.ndarray, phi: np.ndarray, psi: np.ndarray) -> dict:
    """Which MD β frames the CV puts on α_R's side: those whose z [N, d], projected on the line from β's mean z to
    α_R's, lie past the midpoint; their number and median (φ, ψ) in degrees (why the classifier misses)."""
    towards = z[alpha].mean(0) - z[beta].mean(0)
    near = beta & ((z - z[beta].mean(0)) @ towards > 0.5 * towards @ towards)
    median = [float(np.median(a[near])) if near.any() else float("nan") for a in (phi, psi)]
    return {"frames": int(near.sum()), "of": int(beta.sum()), "median_phi_psi_deg": median}


def component_weights(spec, fitted, samples: int = 4000, latents: int = 64) -> list[dict]:
    """Per prior component k (mixture priors only): its weight π_k, its draws' basins, and the log importance
    weights log w = −β u + log J − log q(x) of its draws at β = 1 (:func:`~cvplug.plugins.rkl.reverse_kl`, log q(x)
    bounded with ``latents`` encoder draws): mean, standard deviation, the effective sample size of w, and log ⟨w⟩ −
    ⟨log w⟩, a lower bound on the component's KL(q_k ‖ p) up to the error of the estimate (nats). Under the reverse
    KL a component's weight goes as exp(−its variational free energy −⟨log w⟩), so two basins are weighed right only
    if these gaps agree to within ln 2 nats."""
    model, target = fitted.model, fitted.target
    torch.manual_seed(1)
    with torch.no_grad():
        terms = reverse_kl(model, target, 1.0, samples, None, latents, estimate=True)
        drawn, log_w = terms.drawn, terms.log_weights.double().numpy()
        positions = target.positions(drawn.x).double().numpy()
        pi = model.prior.weights().tolist()
    phi, psi = backbone_angles(spec, positions)
    rows = []
    for k, weight in enumerate(pi):
        picked = drawn.component.numpy() == k
        if picked.sum() < 2:
            rows.append({"pi": weight, "draws": int(picked.sum())})
            continue
        lw = log_w[picked]
        log_mean = float(np.logaddexp.reduce(lw) - np.log(len(lw)))
        w = np.exp(lw - lw.max())
        rows.append({"pi": weight, "draws": int(picked.sum()),
                     **{short: float(ALA2_BASINS[name](phi[picked], psi[picked]).mean())
                        for short, name in BASINS.items()},
                     "mean_log_w": float(lw.mean()), "sd_log_w": float(lw.std()),
                     "kl_lower_bound": log_mean - float(lw.mean()),
                     "ess": float(w.sum() ** 2 / (w ** 2).sum())})
    return rows


def plot(spec, fitted, out: Path) -> None:
    """figure10.png: (φ, ψ) of μθ(z) on a grid of z; ramachandran.png: generated vs reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = fitted.model
    with torch.no_grad():
        if model.prior is None:
            low, high = np.full(2, -2.5), np.full(2, 2.5)
        else:
            spread = 2.5 * torch.exp(model.prior.log_std).numpy()
            low = (model.prior.means.numpy() - spread).min(0)
            high = (model.prior.means.numpy() + spread).max(0)
        axes = [np.linspace(lo, hi, 41) for lo, hi in zip(low, high)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        means = fitted.target.positions(model.decode(torch.as_tensor(grid, dtype=model.offset.dtype))).double()
        generated = fitted.target.positions(model.sample(20_000, torch.Generator().manual_seed(0)).x).double()
    phi, psi = backbone_angles(spec, means.numpy())
    fig, panels = plt.subplots(1, 2, figsize=(10, 4.5))
    for k, panel in enumerate(panels):
        shown = panel.scatter(phi, psi, c=grid[:, k], s=6, cmap="viridis")
        panel.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="φ (deg)", ylabel="ψ (deg)",
                  title=f"μθ(z) on a grid of z, coloured by z{k + 1}")
        fig.colorbar(shown, ax=panel)
    fig.tight_layout()
    fig.savefig(out / "figure10.png", dpi=120)
    plt.close(fig)
    fig, panels = plt.subplots(1, 2, figsize=(10, 4.5))
    gen_phi, gen_psi = backbone_angles(spec, generated.numpy())
    panels[0].hist2d(gen_phi, gen_psi, bins=72, range=[[-180, 180], [-180, 180]], cmin=1, cmap="viridis")
    panels[0].set(title="generated (20,000 samples, β = 1)")
    if REFERENCE.exists():
        free = np.array(json.loads(REFERENCE.read_text())["mean_free_energy_kJ_mol"])      # [psi, phi]
        kT = 0.0083144626 * TEMPERATURE
        axis = np.degrees(np.linspace(-np.pi, np.pi, free.shape[0] + 1)[:-1])
        shown = panels[1].contourf(axis, axis, np.minimum(free / kT, 12), levels=13, cmap="viridis_r")
        fig.colorbar(shown, ax=panels[1], label="F / kT")
        panels[1].set(title="reference (metadynamics), F / kT")
    for panel in panels:
        panel.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="φ (deg)", ylabel="ψ (deg)")
    fig.tight_layout()
    fig.savefig(out / "ramachandran.png", dpi=120)
    plt.close(fig)


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def table(results: dict, reference: dict | None) -> list[str]:
    """The acceptance table, one column per seed."""
    seeds = list(results)
    lines = [f"{'':<34}{'reference':>16}" + "".join(f"{'seed ' + str(s):>11}" for s in seeds)]
    for short in BASINS:
        ref = f"{reference[short]['mean']:.3f} ± {reference[short]['stderr']:.3f}" if reference else "n/a"
        lines.append(f"{short + ' weight (generated)':<34}{ref:>16}"
                     + "".join(f"{r['generated'][short]:>11.4f}" for r in results.values()))
    if reference:
        for short in ("alpha_R", "beta"):
            ok = ["yes" if 0.5 <= r["generated"][short] / reference[short]["mean"] <= 2 else "no"
                  for r in results.values()]
            lines.append(f"{short + ' within ×2 of reference':<34}{'':>16}" + "".join(f"{v:>11}" for v in ok))
    for key, label in (("data_frames", "data frames"), ("biased_run_reweighted", "biased run, reweighted")):
        if all(key in r for r in results.values()):
            lines.append(f"{'α_R / β, ' + label:<34}{'':>16}"
                         + "".join(f"{r[key]['alpha_R']:>5.2f} /{r[key]['beta']:>4.2f}" for r in results.values()))
    for k, angle in enumerate(("φ", "ψ")):
        lines.append(f"{'α_R centre ' + angle + ', generated (MD)':<34}{'':>16}" + "".join(
            f"{r['alpha_centre_generated_deg'][k]:>5.0f} ({r['alpha_centre_md_deg'][k]:>3.0f})"
            for r in results.values()))
    rows = [("classifier α_R vs β (≥ 0.9)", "classifier_alpha_vs_beta", ".3f"),
            ("  majority class of the MD", "majority_class", ".3f"),
            ("bond-length MAD, nm (< 0.005)", "bond_length_mad_nm", ".5f"),
            ("Rg mean difference, nm (|.| < 0.01)", "rg_difference_nm", ".4f"),
            ("D-alanine fraction (0)", "d_alanine_fraction", ".4f"),
            ("force calls", "force_calls", ".3g"), ("wall time, s", "wall_s", ".0f"), ("stages", "stages", "d")]
    for label, key, fmt in rows:
        lines.append(f"{label:<34}{'':>16}" + "".join(f"{r[key]:>11{fmt}}" for r in results.values()))
    for seed, r in results.items():
        near = r["beta_near_alpha"]
        lines.append(f"seed {seed}: {near['frames']} of the MD's {near['of']} β frames lie on α_R's side of z, median "
                     f"(φ, ψ) ({near['median_phi_psi_deg'][0]:.0f}°, {near['median_phi_psi_deg'][1]:.0f}°)")
    for seed, r in results.items():
        for k, c in enumerate(r.get("components", [])):
            if "mean_log_w" in c:
                lines.append(f"seed {seed} component {k}: π {c['pi']:.4f}, α_R {c['alpha_R']:.2f}, β {c['beta']:.2f}, "
                             f"⟨log w⟩ {c['mean_log_w']:.1f} ± {c['sd_log_w']:.1f}, KL ≥ {c['kl_lower_bound']:.1f} "
                             f"nats, ESS {c['ess']:.1f} of {c['draws']}")
    return lines


def main() -> None:
    """Train the chosen configuration for each seed and print the acceptance table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="plain", choices=sorted(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option of the configuration (repeat)")
    parser.add_argument("--out", type=Path, default=Path("runs/rkl-ala2"))
    parser.add_argument("--name", help="subfolder of --out for this run (default: the configuration's name)")
    parser.add_argument("--md-steps", type=int, default=500_000, help="2 fs steps of the plain MD for the classifier")
    parser.add_argument("--data-steps", type=int, default=250_000,
                        help="2 fs MD steps the data frames span (unless the configuration sets data_steps)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = dict(CONFIGS[args.config])
    for item in args.set:
        key, _, value = item.partition("=")
        options[key] = _value(value)
    spec = systems.load("ala2-implicit", temperature=TEMPERATURE)
    md = md_positions(spec, args.out / "md" / "classifier", args.md_steps, 500, seed=999)
    results, name = {}, args.name or args.config
    for seed in args.seeds:
        out = args.out / name / f"seed{seed}"
        started = time.perf_counter()
        fitted, about = train(spec, options, seed, out, args.out / "md", args.data_steps, not args.quiet)
        fitted.cv.export(out / "rkl_cv.pt")
        results[seed] = {**evaluate(spec, fitted, md), **about, "options": options,
                         "script_wall_s": time.perf_counter() - started}
        if fitted.model.prior is not None:
            results[seed]["components"] = component_weights(spec, fitted)
        plot(spec, fitted, out)
        fitted.target.close()
        write_json(out / "results.json", results[seed])
    reference = reference_weights()
    lines = [f"configuration {args.config}: {json.dumps(options)}"] + table(results, reference)
    print("\n".join(lines))
    (args.out / name / f"table-seeds{'-'.join(map(str, args.seeds))}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
