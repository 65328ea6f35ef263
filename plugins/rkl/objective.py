"""The objectives: the data-free reverse-KL bound (Schöberl et al., eq. 16), its KL estimate, and the mixed option.

For the target p_β(x) = exp(−β u(x)) J(x) / Z_β and samples (x, z) ~ q(x, z), the log importance weights

    log w = −β u(x) + log J(x) + log r(z | x) − log q(z) − log q(x | z)

give everything:

* the bound  F = −⟨log w⟩ ≥ KL(q(x) ‖ p_β) − log Z_β  (= −L of eq. 16); minimised by :func:`reverse_kl`;
  its gradient in θ flows through x = μθ(z) + σθ ⊙ ε and the forces −∂u/∂x from the target;
* log Z_β ≈ log ⟨w⟩ (Appendix B), hence the KL estimate  KL̂ = log ⟨w⟩ − ⟨log w⟩ ≥ 0 (Jensen);
* the same samples at another β' by w' = w · exp(−(β' − β) u): log Z_β'/Z_β = log ⟨w'⟩/⟨w⟩, which is what the
  tempering schedule needs (:func:`kl_estimate`).

The mixed objective of the outlook (eq. 39) adds data: γ · F + (1 − γ) · (−ELBO on data points), the second term a
bound on KL(p ‖ q) up to a constant (:func:`mixed`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .gradnorm import normalize_sample_gradients
from .model import LOG_2PI, CoarseGrainedModel, gaussian_log_density
from .targets import Target

__all__ = ["ReverseKL", "reverse_kl", "forward_kl", "mixed", "kl_estimate"]


class ReverseKL(NamedTuple):
    """``loss``: the bound F (scalar, differentiable); ``log_weights`` [B] and ``energy`` u [B], detached."""

    loss: Tensor
    log_weights: Tensor
    energy: Tensor


def reverse_kl(model: CoarseGrainedModel, target: Target, beta: float, batch_size: int,
               kappa: float | None = 3.0) -> ReverseKL:
    """The data-free bound F = −⟨log w⟩ on ``batch_size`` fresh samples of q(x, z) at inverse temperature β.

    ``kappa``: per-sample gradient normalisation (:mod:`.gradnorm`); None switches it off.
    """
    z, x, eps = model.sample(batch_size)
    if kappa is not None:
        x = normalize_sample_gradients(x, kappa)
    u = target.energy(x)
    # log q(x|z) at x = μ + σ ε is exactly −Σ log σ − ½|ε|² − D/2 log 2π; written so, θ enters only via log σ.
    log_likelihood = -model.log_std.sum() - 0.5 * (eps ** 2).sum(-1) - 0.5 * model.data_dim * LOG_2PI
    log_w = (-beta * u + target.log_jacobian(x) + model.log_posterior(z, x)
             - model.log_prior(z) - log_likelihood)
    return ReverseKL(-log_w.mean(), log_w.detach(), u.detach())


def forward_kl(model: CoarseGrainedModel, data: Tensor) -> Tensor:
    """−ELBO of data points x [N, D] (one reparametrised z ~ r(z | x) each): KL(p ‖ q) up to a constant."""
    mean, log_std = model.encode(data)
    z = mean + torch.exp(log_std) * torch.randn_like(mean)
    elbo = model.log_likelihood(data, z) + model.log_prior(z) - gaussian_log_density(z, mean, log_std)
    return -elbo.mean()


def mixed(reverse: Tensor, forward: Tensor, gamma: float) -> Tensor:
    """γ · reverse + (1 − γ) · forward, γ in [0, 1]."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma * reverse + (1.0 - gamma) * forward


def kl_estimate(log_weights: Tensor, energy: Tensor, delta_beta: float = 0.0) -> float:
    """KL̂(q ‖ p_{β+Δβ}) = log ⟨w'⟩ − ⟨log w'⟩ from samples drawn at β, with log w' = log w − Δβ · u."""
    log_w = log_weights - delta_beta * energy
    return float(torch.logsumexp(log_w, 0) - math.log(len(log_w)) - log_w.mean())
