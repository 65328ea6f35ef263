"""Müller–Brown (× 0.1, kT = 1), 1D latent: how decoder power and β_reg shape the latent space (flowvae).

Reproduces the Müller–Brown study of Monroe & Shen (J. Chem. Phys. 157, 094116, 2022): for every decoder
("mse", "condind", "autoregressive", "flow"), seed and β_reg ∈ {0, 1, 2, 5, 10}, train a flow-prior VAE and
measure JD_encode (is the latent used?), JD_prior, −ELBO and f_acc (acceptance of VAE-based Monte Carlo moves,
with the exact energy). β = 0 and β = 1 start from scratch; β = 2, 5, 10 carry the parameters over from the
previous β, as in the paper.

Data: exact Boltzmann samples of the potential (grid sampler, :func:`cvplug.plugins.flowvae.toys.grid_sample`),
or a trajectory written by ``cvplug simulate mueller-brown`` (``--trajectory runs/mb.npz``; frames should be
decorrelated and cover both basins). Everything is resumable: rerun the same command after an interruption.

    python benchmarks/reproductions/flowvae/mueller_brown.py --out runs/flowvae-mb --seeds 0 1 2
    python benchmarks/reproductions/flowvae/mueller_brown.py --out runs/flowvae-mb --betas 0 1     # only the acceptance table
    python benchmarks/reproductions/flowvae/mueller_brown.py --out runs/flowvae-mb --report-only   # tables and plots

The acceptance table (``acceptance.md``, printed first): JD_encode and f_acc per decoder at β_reg = 0 and 1,
mean ± std over seeds, and the paper's three findings checked seed by seed: at β_reg = 1 condind and
autoregressive keep JD_encode > 0.1 while mse falls below; the flow decoder has the highest f_acc; at β_reg = 0
f_acc < 0.1 for every decoder (memorisation).

Outputs in ``--out``: ``results_seed<k>.json`` (metrics per decoder and β), ``models/`` (state dicts),
``ckpt/`` (training checkpoints), ``acceptance.md``, ``table.md`` (every β and metric), ``metrics_vs_beta.png``,
``latent_maps.png``, ``cv_flow_beta1.pt``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.features import Cartesians
from cvplug.plugins.flowvae import DECODERS, build_vae, fit_vae, make_cv
from cvplug.plugins.flowvae import score
from scoring import latent_map  # beside this script
from cvplug.plugins.flowvae.toys import grid_sample
from cvplug.trajectory import load_trajectory

BOUNDS = ((-2.0, -1.0), (1.5, 2.5))  # nm; exp(−u) is negligible outside
PERIODIC = [False, False]


def data(args, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) Boltzmann samples [N, 2] of Müller–Brown for this seed."""
    spec = systems.load("mueller-brown")
    if args.trajectory:
        x = torch.tensor(load_trajectory(args.trajectory).x, dtype=torch.float32)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x = x[order[: args.n_train + args.n_test]]
    else:
        x = grid_sample(spec.toy.u, *BOUNDS, args.n_train + args.n_test, seed=seed)
    return x[: args.n_train], x[args.n_train:]


def train_one(args, x_train, decoder: str, seed: int, beta: float, start=None, beta_start: float = 0.0):
    fresh = start is None
    return fit_vae(x_train, PERIODIC, 1, decoder, beta=beta, epochs=args.epochs if fresh else args.continue_epochs,
                   anneal_epochs=args.anneal, start=start, beta_start=beta_start, lr=args.lr,
                   batch_size=args.batch_size, seed=seed, progress=not args.quiet,
                   checkpoint=args.out / "ckpt" / f"{decoder}_s{seed}_b{beta:g}.ckpt",
                   encoder_hidden=(50, 50), decoder_hidden=(50, 50))


def run_seed(args, seed: int) -> None:
    spec = systems.load("mueller-brown")
    path = args.out / f"results_seed{seed}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    x_train, x_test = data(args, seed)
    (args.out / "models").mkdir(parents=True, exist_ok=True)
    for decoder in args.decoders:
        previous = None
        for beta in args.betas:
            key = f"{decoder}/{beta:g}"
            model_path = args.out / "models" / f"{decoder}_s{seed}_b{beta:g}.pt"
            carry = beta >= 1 and previous is not None
            if key in results and model_path.exists():
                vae = build_vae(x_train, PERIODIC, 1, decoder, encoder_hidden=(50, 50), decoder_hidden=(50, 50))
                vae.load_state_dict(torch.load(model_path))
            else:
                started = time.time()
                vae, history = train_one(args, x_train, decoder, seed, beta, previous[1] if carry else None,
                                         previous[0] if carry else 0.0)
                metrics = score(vae, x_test, spec.toy.u, seed=seed)
                results[key] = {"decoder": decoder, "seed": seed, "beta": beta, **metrics,
                                "final": history[-1], "train_seconds": time.time() - started}
                torch.save(vae.state_dict(), model_path)
                path.write_text(json.dumps(results, indent=1))
                print(f"seed {seed} {key}: JD_encode {metrics['jd_encode'][0]:.3g}, f_acc {metrics['f_acc']:.3g}, "
                      f"-ELBO {metrics['nll'] + metrics['kl']:.3f}", flush=True)
            if beta >= 1:
                previous = (beta, vae)


def _summary(rows: list[dict], key) -> str:
    values = np.array([key(r) for r in rows])
    if len(values) == 0:
        return "—"
    return f"{values.mean():.3g} ± {values.std():.2g}" if len(values) > 1 else f"{values[0]:.3g}"


def acceptance(rows: list[dict]) -> str:
    """The β_reg = 0 / 1 table of JD_encode and f_acc per decoder and the paper's findings, checked per seed."""
    def cell(decoder, beta, key):
        return _summary([r for r in rows if r["decoder"] == decoder and r["beta"] == beta], key)

    def per_seed(decoder, beta, key):
        return {r["seed"]: key(r) for r in rows if r["decoder"] == decoder and r["beta"] == beta}

    jd, fa = (lambda r: r["jd_encode"][0]), (lambda r: r["f_acc"])
    decoders = [d for d in DECODERS if any(r["decoder"] == d and r["beta"] in (0, 1) for r in rows)]
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"Müller–Brown × 0.1, 1D latent, seeds {seeds}: mean ± std over seeds (JD_encode in nats).", "",
             "| decoder | JD_encode, β=0 | JD_encode, β=1 | f_acc, β=0 | f_acc, β=1 |", "|---|---|---|---|---|"]
    lines += [f"| {d} | {cell(d, 0, jd)} | {cell(d, 1, jd)} | {cell(d, 0, fa)} | {cell(d, 1, fa)} |" for d in decoders]
    if not {"mse", "condind", "autoregressive", "flow"} <= set(decoders):
        return "\n".join(lines)
    used = {d: per_seed(d, 1, jd) for d in ("mse", "condind", "autoregressive")}
    latent_ok = all(v > 0.1 for d in ("condind", "autoregressive") for v in used[d].values()) and \
        all(v < 0.1 for v in used["mse"].values())
    f_one = {d: per_seed(d, 1, fa) for d in decoders}
    flow_wins = [s for s in seeds if f_one["flow"][s] == max(f_one[d][s] for d in decoders)]
    means = {d: np.mean(list(f_one[d].values())) for d in decoders}
    f_zero = max(v for d in decoders for v in per_seed(d, 0, fa).values())
    flow_best = max(means, key=means.get) == "flow"
    lines += ["", "Paper's findings (Monroe & Shen 2022), checked on every seed:",
              f"- β=1, condind and autoregressive JD_encode > 0.1, mse < 0.1: {'yes' if latent_ok else 'NO'} "
              f"(per seed: {json.dumps({d: [round(v, 4) for v in used[d].values()] for d in used})})",
              f"- β=1, flow has the highest f_acc: highest mean {'yes' if flow_best else 'NO'}"
              f", highest in {len(flow_wins)} of {len(seeds)} seeds "
              f"(per seed: {json.dumps({d: [round(v, 3) for v in f_one[d].values()] for d in decoders})})",
              f"- β=0, f_acc < 0.1 for every decoder: {'yes' if f_zero < 0.1 else 'NO'} (largest {f_zero:.3g})"]
    return "\n".join(lines)


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for path in sorted(args.out.glob("results_seed*.json")) for r in json.loads(path.read_text()).values()]
    if not rows:
        print("no results yet")
        return
    summary = acceptance(rows)
    (args.out / "acceptance.md").write_text(summary + "\n")
    print(summary, end="\n\n")
    spec = systems.load("mueller-brown")
    xs = np.arange(BOUNDS[0][0], BOUNDS[1][0], 0.005)
    ys = np.arange(BOUNDS[0][1], BOUNDS[1][1], 0.005)
    u = spec.toy.u(torch.tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2))).numpy()
    p = np.exp(-(u - u.min()))
    p /= p.sum() * 0.005**2
    entropy = float(-(p * np.log(np.maximum(p, 1e-300))).sum() * 0.005**2)
    lines = [f"Müller–Brown × 0.1, 1D latent; seeds {sorted({r['seed'] for r in rows})}; mean ± std over seeds. "
             f"Exact entropy of the Boltzmann density (the best possible −ELBO): {entropy:.3f} nats.", "",
             "| decoder | β | JD_encode | log10 JD_encode | JD_prior | f_acc | −ELBO (nats) |", "|---|---|---|---|---|---|---|"]
    decoders = [d for d in DECODERS if any(r["decoder"] == d for r in rows)]
    betas = sorted({r["beta"] for r in rows})
    for decoder in decoders:
        for beta in betas:
            sel = [r for r in rows if r["decoder"] == decoder and r["beta"] == beta]
            if sel:
                lines.append(f"| {decoder} | {beta:g} | {_summary(sel, lambda r: r['jd_encode'][0])} | "
                             f"{_summary(sel, lambda r: np.log10(max(r['jd_encode'][0], 1e-12)))} | "
                             f"{_summary(sel, lambda r: r['jd_prior'])} | {_summary(sel, lambda r: r['f_acc'])} | "
                             f"{_summary(sel, lambda r: r['nll'] + r['kl'])} |")
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    print(table)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for decoder in decoders:
        for ax, metric in zip(axes, [lambda r: r["jd_encode"][0], lambda r: r["f_acc"],
                                     lambda r: r["nll"] + r["kl"]]):
            sel = [[metric(r) for r in rows if r["decoder"] == decoder and r["beta"] == b] for b in betas]
            ax.errorbar(betas, [np.mean(s) for s in sel], [np.std(s) for s in sel], marker="o", capsize=3,
                        label=decoder)
    axes[0].set(yscale="log", ylabel="JD_encode (nats)")
    axes[0].axhline(0.1, color="grey", ls="--", lw=1)
    axes[1].set(ylabel="f_acc")
    axes[2].set(ylabel="−ELBO (nats)")
    axes[2].axhline(entropy, color="grey", ls=":", lw=1)
    for ax in axes:
        ax.set(xlabel="β_reg", xscale="symlog")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.out / "metrics_vs_beta.png", dpi=120)

    x_train, x_test = data(args, 0)
    fig, axes = plt.subplots(1, len(decoders), figsize=(3.6 * len(decoders), 3.4), squeeze=False)
    for ax, decoder in zip(axes[0], decoders):
        model_path = args.out / "models" / f"{decoder}_s0_b1.pt"
        if not model_path.exists():
            continue
        vae = build_vae(x_train, PERIODIC, 1, decoder, encoder_hidden=(50, 50), decoder_hidden=(50, 50))
        vae.load_state_dict(torch.load(model_path))
        gx, gy, values = latent_map(vae, *BOUNDS)
        image = ax.contourf(gx, gy, values, levels=30, cmap="viridis")
        ax.scatter(*x_test[:1000].T, s=1, c="w", alpha=0.3)
        ax.set(title=f"{decoder}, β = 1", xlabel="x (nm)", ylabel="y (nm)")
        fig.colorbar(image, ax=ax, label="z (encoder mean)")
        if decoder == "flow":
            positions = torch.zeros(len(x_test), 1, 3)
            positions[:, 0, :2] = x_test
            make_cv(vae, Cartesians([0], components=(0, 1)), 1, positions=positions,
                    info={"beta": 1.0, "system": "mueller-brown"}).export(args.out / "cv_flow_beta1.pt")
    fig.tight_layout()
    fig.savefig(args.out / "latent_maps.png", dpi=120)
    print(f"wrote {args.out}/table.md, metrics_vs_beta.png, latent_maps.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/flowvae-mueller-brown"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 5.0, 10.0])
    parser.add_argument("--n-train", type=int, default=10000, help="training samples (10%% held out for validation)")
    parser.add_argument("--n-test", type=int, default=5000, help="held-out samples for the metrics")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of a model trained from scratch")
    parser.add_argument("--continue-epochs", type=int, default=12, help="epochs when carrying over to a larger β")
    parser.add_argument("--anneal", type=int, default=10, help="epochs of linear β annealing (paper: 20)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-4)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--trajectory", type=Path, help="a cvplug toy trajectory (.npz) instead of exact samples")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.report_only:
        for seed in args.seeds:
            run_seed(args, seed)
    report(args)


if __name__ == "__main__":
    main()
