"""All latent-space metrics of a trained FlowVAE on held-out data, and the latent map of a 2D toy."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from cvplug.metrics.vae import active_dimensions, f_acc, jd_encode, jd_prior, total_correlation

from .model import FlowVAE

__all__ = ["evaluate", "latent_map", "markdown_table"]


def evaluate(vae: FlowVAE, x: Tensor, reduced_energy: Optional[Callable[[Tensor], Tensor]] = None,
             seed: int = 0, batch_size: int = 1000) -> dict:
    """Metrics on held-out data x [N, D] (ideally Boltzmann samples); JSON-able.

    ``jd_encode`` (per latent dimension, nats), ``active_dimensions`` (JD_encode ≥ 0.1), ``jd_prior`` and
    ``total_correlation`` of the aggregate posterior (density model: the trained flow prior), ``nll`` and ``kl``
    (the two parts of −ELBO, nats per sample) and, with ``reduced_energy``, ``f_acc``.
    """
    torch.manual_seed(seed)
    vae.eval()
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    with torch.no_grad():
        parts = [vae.encode(chunk) for chunk in x.split(batch_size)]
        mean, log_var = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        losses = [vae.loss(chunk, 1.0) for chunk in x.split(batch_size)]
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    jd = jd_encode(mean, log_var, seed=seed)
    weights = np.array([len(chunk) for chunk in x.split(batch_size)]) / len(x)
    result = {
        "jd_encode": jd.tolist(),
        "active_dimensions": active_dimensions(jd),
        "jd_prior": jd_prior(z, vae.prior.log_prob, seed=seed),
        "total_correlation": total_correlation(z, vae.prior.log_prob),
        "nll": float(sum(w * float(loss.nll) for w, loss in zip(weights, losses))),
        "kl": float(sum(w * float(loss.kl) for w, loss in zip(weights, losses))),
    }
    if reduced_energy is not None:
        result["f_acc"] = f_acc(vae.encoder, vae.prior, vae.decoder, reduced_energy, x, batch_size)
    return result


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
    """A markdown table of :func:`evaluate` results, one row each, led by the columns ``labels`` of the rows."""
    head = list(labels) + ["JD_encode per dim", "active dims", "JD_prior", "total corr.", "f_acc", "−ELBO (nats)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[label]) for label in labels] + [
            ", ".join(f"{v:.3g}" for v in row["jd_encode"]), str(row["active_dimensions"]), f"{row['jd_prior']:.3g}",
            f"{row['total_correlation']:.3g}", f"{row['f_acc']:.3g}" if "f_acc" in row else "—",
            f"{row['nll'] + row['kl']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
