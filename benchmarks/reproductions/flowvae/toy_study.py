"""A small experiment runner for the 2D toys: several data sets ("cases") × decoders, trained, scored, plotted.

Used by ``gaussians.py`` and ``beltway.py`` beside it (not installed with cvplug). Training is resumable (one
checkpoint per case and decoder); rerunning a finished study only re-scores and re-plots.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cvplug.plugins.flowvae import DECODERS, fit_vae, score

from scoring import latent_map, markdown_table  # beside this script

__all__ = ["ToyCase", "run_toy_study", "study_parser", "run_from_arguments"]


@dataclass
class ToyCase:
    """One data set of a 2D toy: Cartesian samples ``xy`` [N, 2] and how the VAE sees them.

    ``observation`` maps Cartesian points to the VAE's data (default: identity), ``periodic`` marks angle columns
    of that data, ``reduced_energy`` is u of the VAE's data (with the Jacobian of the observation map),
    ``bounds`` the plotting box ((x_lo, y_lo), (x_hi, y_hi)).
    """

    name: str
    xy: Tensor
    reduced_energy: Callable[[Tensor], Tensor]
    bounds: tuple
    periodic: Sequence[bool] = (False, False)
    observation: Optional[nn.Module] = None
    to_cartesian: Optional[Callable[[Tensor], Tensor]] = None
    info: dict = field(default_factory=dict)

    def data(self) -> Tensor:
        with torch.no_grad():
            return self.observation(self.xy) if self.observation is not None else self.xy


def run_toy_study(cases: Sequence[ToyCase], decoders: Sequence[str], out: Path, n_components: int = 2,
                  n_test: int = 5000, seed: int = 0, progress: bool = True, **training) -> list[dict]:
    """Train one FlowVAE per case and decoder (the last ``n_test`` points of each case are held out), score it
    with :func:`cvplug.plugins.flowvae.score`, and write ``results.json``, ``table.md`` and ``study.png`` to ``out``.

    ``training`` goes to :func:`fit_vae` (beta, epochs, anneal_epochs, lr, hidden sizes …). Returns the rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = []
    fig, axes = plt.subplots(len(cases), len(decoders) + 1, figsize=(3.3 * (len(decoders) + 1), 3.1 * len(cases)),
                             squeeze=False)
    for row_axes, case in zip(axes, cases):
        x = case.data()
        x_train, x_test = x[:-n_test], x[-n_test:]
        row_axes[0].scatter(*case.xy[-n_test:][:3000].T, s=1, alpha=0.3)
        row_axes[0].set(title=f"{case.name}: data", xlim=(case.bounds[0][0], case.bounds[1][0]),
                        ylim=(case.bounds[0][1], case.bounds[1][1]))
        for ax, decoder in zip(row_axes[1:], decoders):
            vae, history = fit_vae(x_train, case.periodic, n_components, decoder, seed=seed,
                                   checkpoint=out / "ckpt" / f"{case.name}_{decoder}.ckpt",
                                   progress=progress, **training)
            metrics = score(vae, x_test, case.reduced_energy, seed=seed)
            rows.append({"case": case.name, "decoder": decoder, **case.info, **metrics, "final": history[-1]})
            gx, gy, values = latent_map(vae, *case.bounds, observation=case.observation)
            image = ax.contourf(gx, gy, values, levels=30, cmap="viridis")
            with torch.no_grad():
                generated = vae.decoder.sample(vae.prior.sample(2000))
            if case.to_cartesian is not None:
                generated = case.to_cartesian(generated)
            ax.scatter(*generated.T, s=1, c="w", alpha=0.4)
            ax.set(title=f"{decoder}: z0 (colour), VAE samples", xlim=(case.bounds[0][0], case.bounds[1][0]),
                   ylim=(case.bounds[0][1], case.bounds[1][1]))
            fig.colorbar(image, ax=ax)
            print(f"{case.name} {decoder}: JD_encode {np.round(metrics['jd_encode'], 3).tolist()}, "
                  f"f_acc {metrics['f_acc']:.3g}, TC {metrics['total_correlation']:.3g}", flush=True)
    fig.tight_layout()
    fig.savefig(out / "study.png", dpi=110)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    table = markdown_table(rows, ["case", "decoder"])
    (out / "table.md").write_text(table + "\n")
    print(table)
    return rows


def study_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The command-line options shared by the toy-study examples."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--anneal", type=int, default=20, help="epochs of β annealing (paper: 20 for 2D)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_from_arguments(cases: Sequence[ToyCase], args: argparse.Namespace, n_components: int) -> list[dict]:
    """:func:`run_toy_study` with the options of :func:`study_parser` (50 hidden units, as in the paper)."""
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    return run_toy_study(cases, args.decoders, args.out, n_components=n_components, n_test=args.n_test, seed=args.seed,
                         progress=not args.quiet, beta=args.beta, epochs=args.epochs,
                         anneal_epochs=args.anneal, lr=args.lr, encoder_hidden=(50, 50), decoder_hidden=(50, 50))
