"""Neural canonical transformation of a harmonic chain: learned frequencies and normal modes vs the exact ones.

Li, Dong, Zhang & Wang, PRX 10, 021020 (2020), Sec. IV B. The chain of n beads with fixed ends,
H = ½Σ[p_i² + (q_{i+1} − q_i)²], has normal modes v_k(i) ∝ sin(πki/(n+1)) with ω_k = 2 sin(πk/(2n+2)).
Two trainings: variational, from the Hamiltonian (the torch twin of `cvplug.systems.load("harmonic-chain")`),
and maximum likelihood on samples of the exact Boltzmann density (q ~ N(0, kT·Hessian⁻¹), momenta from the
Maxwell–Boltzmann distribution inside the loss). Reported for each: the 4 smallest learned frequencies and their
relative errors, and |cos| between the Jacobian rows ∂Q_k/∂q of the slowest latent coordinates and the exact
modes (averaged over Boltzmann samples, and at q = 0).

    python benchmarks/reproductions/nct/harmonic_chain.py --out runs/nct-chain            # n = 16, both trainings

Writes results.json and chain.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from cvplug.plugins.nct import fit_nct
from normal_modes import chain_normal_modes, mode_cosines  # beside this script


def boltzmann_samples(n: int, count: int, seed: int) -> np.ndarray:
    """Exact samples [count, n] of exp(−u) for the chain, u = ½ qᵀ H q (kT = 1)."""
    hessian = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    return np.random.default_rng(seed).multivariate_normal(np.zeros(n), np.linalg.inv(hessian), size=count)


def evaluate(cv, exact_frequencies, modes, samples) -> dict:
    model = cv.encoder.model
    learned = np.array(cv.info["all_frequencies"])
    x = torch.as_tensor(samples[:2000], dtype=torch.float32)
    return {"learned_frequencies": learned.tolist(),
            "relative_error_4_smallest": ((learned[:4] - exact_frequencies[:4]) / exact_frequencies[:4]).tolist(),
            "cosine_slowest_4_mean_over_samples": mode_cosines(model, x, modes[:4]).tolist(),
            "cosine_slowest_4_at_q0": mode_cosines(model, torch.zeros(1, len(modes)), modes[:4]).tolist(),
            "final_loss": cv.info["final_loss"]}


def plot(out: Path, exact, results: dict, rows: dict, modes) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    k = np.arange(1, len(exact) + 1)
    axes[0].plot(k, exact, "k-", label="exact 2 sin(πk/(2n+2))")
    for name, result in results.items():
        axes[0].plot(k, result["learned_frequencies"], "o", ms=4, label=name)
    axes[0].set(xlabel="k (slowest first)", ylabel="ω_k", title="frequencies")
    axes[0].legend()
    for j, ax in enumerate(axes[1:]):
        ax.plot(k, modes[j], "k-", label=f"exact mode {j + 1}")
        for name, row in rows.items():
            r = row[j] / np.linalg.norm(row[j]) * np.sign(row[j] @ modes[j])
            ax.plot(k, r, "o", ms=4, label=f"{name} ∂Q{j + 1}/∂q at q = 0")
        ax.set(xlabel="bead i", title=f"slowest mode {j + 1}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "chain.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/nct-chain", help="output folder")
    parser.add_argument("--n", type=int, default=16, help="beads")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per training")
    parser.add_argument("--samples", type=int, default=20_000, help="Boltzmann samples for the likelihood training")
    parser.add_argument("--trainings", nargs="+", default=["variational", "mle"], choices=["variational", "mle"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = systems.load("harmonic-chain", n=args.n)
    exact, modes = chain_normal_modes(args.n)
    samples = boltzmann_samples(args.n, args.samples, args.seed)
    results, rows = {}, {}
    for training in args.trainings:
        data = None
        if training == "mle":
            data = np.zeros((len(samples), args.n, 3))
            data[..., 0] = samples
        start = time.time()
        cv = fit_nct(data, system=spec, steps=args.steps, seed=args.seed, checkpoint=out / f"{training}.ckpt",
                     progress=not args.quiet)
        result = evaluate(cv, exact, modes, samples)
        result["train_seconds"] = time.time() - start
        results[training] = result
        model = cv.encoder.model
        rows[training] = model.latent_jacobian(torch.zeros(1, args.n))[0][model.slow_order()[:2]].double().numpy()
        print(f"{training}: 4 smallest ω {np.round(result['learned_frequencies'][:4], 4).tolist()} vs exact "
              f"{np.round(exact[:4], 4).tolist()}; relative errors "
              f"{np.round(result['relative_error_4_smallest'], 4).tolist()}; |cos| with the exact modes "
              f"(mean over samples) {np.round(result['cosine_slowest_4_mean_over_samples'], 4).tolist()}; "
              f"final loss {result['final_loss']:.4f}; {result['train_seconds']:.0f} s")
    reference = {"exact_frequencies": exact.tolist(),
                 "exact_free_energy_kT": float(-np.log(2 * np.pi / exact).sum()),
                 "exact_phase_space_entropy": float(np.log(2 * np.pi * np.e / exact).sum())}
    print(f"exact: variational loss optimum {reference['exact_free_energy_kT']:.4f}, likelihood loss optimum "
          f"{reference['exact_phase_space_entropy']:.4f}")
    plot(out, exact, results, rows, modes)
    (out / "results.json").write_text(json.dumps({"n": args.n, "steps": args.steps, **reference,
                                                  "trainings": results}, indent=1))
    print(f"results and chain.png are in {out}")


if __name__ == "__main__":
    main()
