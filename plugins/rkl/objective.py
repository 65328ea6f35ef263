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

Both bounds are loose by a KL divergence between the true posterior q(z | x) and the Gaussian encoder r(z | x).
With K extra encoder draws per sample (:func:`log_marginal_bound`, ``latent_draws`` of :func:`forward_kl`) they
tighten towards log q(x) itself; K = 0 (one draw) is the paper's form.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .gradnorm import KAPPA, normalize_sample_gradients
from .model import CoarseGrainedModel, Samples, gaussian_log_density
from .targets import Target

__all__ = ["BoundTerms", "reverse_kl", "capped", "log_marginal_bound", "forward_kl", "mixed", "kl_estimate",
           "ENERGY_CAP"]

ENERGY_CAP = 1e4  # kT: tempered energies above it are capped (:func:`capped`)
LOG_FLOAT_MAX = math.log(torch.finfo(torch.float64).max)


class BoundTerms(NamedTuple):
    """``loss``: the bound F (scalar, differentiable); ``log_weights`` [B] and ``energy`` u [B], detached;
    ``drawn``: the samples of q(x, z) they belong to (with their mixture components)."""

    loss: Tensor
    log_weights: Tensor
    energy: Tensor
    drawn: Samples


def reverse_kl(model: CoarseGrainedModel, target: Target, beta: float, batch_size: int,
               kappa: float | None = KAPPA, extra_latents: int = 0, energy_cap: float = ENERGY_CAP,
               estimate: bool = False) -> BoundTerms:
    """The data-free bound F = −⟨log w⟩ on ``batch_size`` fresh samples of q(x, z) at inverse temperature β.

    ``kappa``: per-sample gradient normalisation (:mod:`.gradnorm`); None switches it off. ``extra_latents`` K > 0
    tightens the bound (:func:`log_marginal_bound`); K = 0 is the paper's eq. 16. ``energy_cap``: tempered
    energies β u above it are capped (:func:`capped`). The loss averages over the model's training draws
    (:meth:`.model.CoarseGrainedModel.training_sample`: weighted by component with a mixture prior);
    ``estimate=True`` uses plain draws of q instead, so that ``log_weights`` are ordinary importance weights
    (for :func:`kl_estimate`).
    """
    drawn, weights = (model.sample(batch_size), None) if estimate else model.training_sample(batch_size)
    x = drawn.x if kappa is None else normalize_sample_gradients(drawn.x, kappa)
    u = target.energy(x)
    log_w = -capped(beta * u, energy_cap) + target.log_jacobian(x) \
        - log_marginal_bound(model, x, drawn.z, model.sample_log_likelihood(drawn, x), extra_latents)
    loss = -log_w.mean() if weights is None else -(weights * log_w).mean()
    return BoundTerms(loss, log_w.detach(), u.detach(), drawn)


def capped(tempered: Tensor, cap: float = ENERGY_CAP) -> Tensor:
    """Tempered reduced energies β u [B] (kT) with a lin-log cap: cap + log(1 + β u − cap) above ``cap``.

    Value and slope are continuous at the cap, and the gradient of a capped sample is its true one divided by
    1 + β u − cap, so one sample with overlapping atoms cannot dominate a batch. The cap acts on β u, not on u (as
    the bridge's own cap would): at the small β of early tempering a clash still costs at least ``cap`` kT, so the
    model is not drawn into overlapping atoms while the target is broad. Non-finite energies (samples the bridge
    masked) become cap + 709.8 (the capped largest float64) with zero gradient.
    """
    excess = (tempered - cap).clamp_min(0.0)
    soft = torch.where(excess > 0, cap + torch.log1p(excess), tempered)
    return torch.nan_to_num(soft, nan=cap + LOG_FLOAT_MAX, posinf=cap + LOG_FLOAT_MAX)


def log_marginal_bound(model: CoarseGrainedModel, x: Tensor, z: Tensor, log_likelihood: Tensor,
                       extra_latents: int = 0) -> Tensor:
    """An upper bound on log q(x) [B] for samples (x, z) of q(x, z), given log q(x | z) [B].

    With K = ``extra_latents`` further draws z_1 … z_K of r(z | x) and z_0 = z,

        log q(x) ≤ E log (1/(K+1)) Σ_k q(x, z_k) / r(z_k | x)

    (importance-weighted hierarchical VI, Sobolev & Vetrov 2019). K = 0 is the paper's bound, whose gap
    KL(q(z | x) ‖ r(z | x)) a Gaussian r cannot close where q(z | x) is cut off sharply, as at the z where the
    decoder jumps between modes; the gap shrinks as K grows. Costs K decoder passes, no force calls.
    """
    if extra_latents < 0:
        raise ValueError(f"extra_latents must be ≥ 0, got {extra_latents}")
    mean, log_std = model.encode(x)
    log_ratio = log_likelihood + model.log_prior(z) - gaussian_log_density(z, mean, log_std)
    if extra_latents == 0:
        return log_ratio
    log_ratios = _encoder_log_ratios(model, x, mean, log_std, extra_latents)
    return torch.logsumexp(torch.cat([log_ratio[None], log_ratios]), 0) - math.log(extra_latents + 1)


def _encoder_log_ratios(model: CoarseGrainedModel, x: Tensor, mean: Tensor, log_std: Tensor, n: int) -> Tensor:
    """log q(x, z_k) − log r(z_k | x) [n, B] for n reparametrised draws z_k of r(z | x) = N(mean, exp(log_std)²)."""
    draws = mean + torch.exp(log_std) * torch.randn(n, *mean.shape, dtype=mean.dtype)   # [n, B, d]
    flat = draws.reshape(-1, model.n_components)
    log_joint = model.log_likelihood(x.repeat(n, 1), flat) + model.log_prior(flat)
    return log_joint.reshape(n, -1) - gaussian_log_density(draws, mean, log_std)


def forward_kl(model: CoarseGrainedModel, data: Tensor, latent_draws: int = 1) -> Tensor:
    """KL(p ‖ q) up to a constant on data points x [N, D]: −⟨log q(x)⟩ with log q(x) bounded from below by
    log (1/K) Σ_k q(x, z_k) / r(z_k | x), z_k ~ r(z | x) (K = ``latent_draws``: 1 is the ELBO, larger K the
    tighter importance-weighted bound of Burda et al. 2016)."""
    if latent_draws < 1:
        raise ValueError(f"latent_draws must be ≥ 1, got {latent_draws}")
    mean, log_std = model.encode(data)
    log_ratios = _encoder_log_ratios(model, data, mean, log_std, latent_draws)
    return -(torch.logsumexp(log_ratios, 0) - math.log(latent_draws)).mean()


def mixed(reverse: Tensor, forward: Tensor, gamma: float) -> Tensor:
    """γ · reverse + (1 − γ) · forward, γ in [0, 1]."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma * reverse + (1.0 - gamma) * forward


def kl_estimate(log_weights: Tensor, energy: Tensor, delta_beta: float = 0.0, beta: float = 1.0,
                energy_cap: float = ENERGY_CAP) -> float:
    """KL̂(q ‖ p_{β+Δβ}) = log ⟨w'⟩ − ⟨log w'⟩ from samples drawn at β (log weights and energies u of
    :func:`reverse_kl`), with log w' = log w − Δβ · u; for samples whose tempered energy is capped
    (:func:`capped`) log w' = log w + capped(β u) − capped((β + Δβ) u), so one clash moves the estimate by its
    capped value only."""
    if delta_beta == 0.0:
        log_w = log_weights
    else:
        below = (beta + delta_beta) * energy <= energy_cap
        shift = torch.where(below, delta_beta * energy,
                            capped((beta + delta_beta) * energy, energy_cap) - capped(beta * energy, energy_cap))
        log_w = log_weights - shift
    return float(torch.logsumexp(log_w, 0) - math.log(len(log_w)) - log_w.mean())
