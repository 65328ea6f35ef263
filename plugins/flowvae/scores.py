"""Scores of a trained FlowVAE on held-out data: the latent-space metrics of :mod:`cvplug.metrics.vae` at once."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from cvplug.metrics.vae import active_dimensions, f_acc, jd_encode, jd_prior, total_correlation
from cvplug.training import seed_everything

from .model import FlowVAE

__all__ = ["score"]


def score(vae: FlowVAE, x: Tensor, reduced_energy: Optional[Callable[[Tensor], Tensor]] = None,
          seed: int = 0, batch_size: int = 1000) -> dict:
    """Metrics on held-out data x [N, D] (ideally Boltzmann samples); JSON-able.

    ``jd_encode`` (per latent dimension, nats), ``active_dimensions`` (JD_encode ≥ 0.1), ``jd_prior`` and
    ``total_correlation`` of the aggregate posterior (density model: the trained flow prior), ``nll`` and ``kl``
    (the two parts of −ELBO, nats per sample) and, with ``reduced_energy``, ``f_acc``.
    """
    seed_everything(seed)
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
