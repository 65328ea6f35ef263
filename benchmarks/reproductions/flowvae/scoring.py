"""Pictures and tables of the flowvae reproductions: the latent map of a 2D toy and a markdown table of scores.

Helpers of the scripts in this folder (not installed with cvplug); the scores come from
:func:`cvplug.plugins.flowvae.score`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from cvplug.plugins.flowvae import FlowVAE

__all__ = ["latent_map", "markdown_table"]


def latent_map(vae: FlowVAE, lower: Sequence[float], upper: Sequence[float], n: int = 200,
               observation: Optional[Callable[[Tensor], Tensor]] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first latent (encoder mean) on an n × n grid of a 2D toy: (x axis, y axis, values [n, n] indexed [y, x]).

    ``observation`` maps the Cartesian grid points to the VAE's inputs (e.g. polar coordinates)."""
    xs, ys = np.linspace(lower[0], upper[0], n), np.linspace(lower[1], upper[1], n)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), dtype=torch.get_default_dtype())
    with torch.no_grad():
        inputs = observation(grid) if observation is not None else grid
        values = vae.encode(inputs)[0][:, 0].reshape(n, n).numpy()
    return xs, ys, values


def markdown_table(rows: Sequence[dict], labels: Sequence[str]) -> str:
    """A markdown table of :func:`cvplug.plugins.flowvae.score` results, one row each, led by the columns ``labels`` of the rows."""
    head = list(labels) + ["JD_encode per dim", "active dims", "JD_prior", "total corr.", "f_acc", "−ELBO (nats)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[label]) for label in labels] + [
            ", ".join(f"{v:.3g}" for v in row["jd_encode"]), str(row["active_dimensions"]), f"{row['jd_prior']:.3g}",
            f"{row['total_correlation']:.3g}", f"{row['f_acc']:.3g}" if "f_acc" in row else "—",
            f"{row['nll'] + row['kl']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
