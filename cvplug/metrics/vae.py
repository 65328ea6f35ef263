"""Latent-space metrics of variational autoencoders (Monroe & Shen, J. Chem. Phys. 157, 094116, 2022).

Usable with any VAE whose parts follow this small protocol (torch tensors throughout):

- ``encoder(x)`` → (mean, log_var), each [B, d]: the diagonal Gaussian q(z|x);
- ``prior.log_prob(z)`` → [B] and ``prior.sample(n)`` → [n, d];
- ``decoder.log_prob(x, z)`` → [B] (a normalised density of x) and ``decoder.sample(z)`` → [B, D];
- ``reduced_energy(x)`` → [B]: u(x) = U(x)/kT of the system *in the coordinates x* (add −log|Jacobian| when x
  are internal coordinates); +inf (or NaN) marks an impossible x.

Metrics:

- :func:`jd_encode`: mean Jeffreys divergence between the encodings of pairs of samples, per latent dimension;
  a dimension with log10(JD) < −1 is unused (:func:`active_dimensions`).
- :func:`jd_prior`: Jeffreys divergence between the aggregate posterior q(z) and N(mean, I).
- :func:`total_correlation`: Σ_i H(z_i) − H(z) of q(z), histogram marginals and a density-model bound on H(z).
- :func:`f_acc`: acceptance rate of VAE-based Monte Carlo moves (:func:`vae_mc_proposal`); 1 when the VAE's
  joint density P(x|z)P(z) equals exp(−u(x)) q(z|x)/Z.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["jeffreys_gaussian", "jd_encode", "active_dimensions", "jd_prior", "total_correlation",
           "vae_mc_proposal", "f_acc"]

LogDensity = Callable[[Tensor], Tensor]


def jeffreys_gaussian(mean1: Tensor, log_var1: Tensor, mean2: Tensor, log_var2: Tensor) -> Tensor:
    """Elementwise Jeffreys divergence KL(p‖q) + KL(q‖p) of 1D Gaussians p = N(mean1, e^log_var1), q = N(mean2, e^log_var2).

    J = (σ1² + Δ²)/(2σ2²) + (σ2² + Δ²)/(2σ1²) − 1 with Δ = mean1 − mean2 (nats). Sum over columns for diagonal
    Gaussians.
    """
    var1, var2 = torch.exp(log_var1), torch.exp(log_var2)
    delta2 = (mean1 - mean2) ** 2
    return (var1 + delta2) / (2 * var2) + (var2 + delta2) / (2 * var1) - 1


def jd_encode(mean: Tensor, log_var: Tensor, max_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """Mean Jeffreys divergence between the encodings q(z|x_i), q(z|x_j) over all pairs i ≠ j, per dimension.

    ``mean``, ``log_var`` [N, d] are the encoder outputs of N samples; a random subset of ``max_samples`` is
    used when N is larger. Returns [d] (nats); the total JD_encode is their sum.
    """
    mean, log_var = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(log_var, dtype=torch.float64)
    if mean.shape != log_var.shape or mean.dim() != 2 or len(mean) < 2:
        raise ValueError(f"mean and log_var must both be [N ≥ 2, d], got {tuple(mean.shape)}, {tuple(log_var.shape)}")
    if len(mean) > max_samples:
        keep = torch.randperm(len(mean), generator=torch.Generator().manual_seed(seed))[:max_samples]
        mean, log_var = mean[keep], log_var[keep]
    n = len(mean)
    jd = jeffreys_gaussian(mean[:, None], log_var[:, None], mean[None], log_var[None])  # [n, n, d], 0 on diagonal
    return (jd.sum(dim=(0, 1)) / (n * (n - 1))).numpy()


def active_dimensions(jd_per_dimension, threshold: float = 0.1) -> int:
    """Number of latent dimensions whose JD_encode is at least ``threshold`` (log10 JD ≥ −1 by default)."""
    return int((np.asarray(jd_per_dimension) >= threshold).sum())


def jd_prior(z: Tensor, log_density: LogDensity, mean: Optional[Tensor] = None, n_gaussian: Optional[int] = None,
             seed: int = 0) -> float:
    """Jeffreys divergence between the aggregate posterior q(z) and N(mean, I), by Monte Carlo.

    ``z`` [N, d]: samples of q(z) (one draw from q(z|x) per data point); ``log_density``: a model of log q(z),
    e.g. a flow prior trained on the aggregate posterior; ``mean``: default the sample mean of z.
    KL(q‖N) is averaged over z, KL(N‖q) over ``n_gaussian`` (default N) draws of the Gaussian.
    """
    z = torch.as_tensor(z)
    mean = z.mean(dim=0) if mean is None else torch.as_tensor(mean, dtype=z.dtype)
    gaussian = torch.distributions.Independent(torch.distributions.Normal(mean, torch.ones_like(mean)), 1)
    g = mean + torch.randn(n_gaussian or len(z), z.shape[1], generator=torch.Generator().manual_seed(seed),
                           dtype=z.dtype)
    with torch.no_grad():
        kl_q_n = (log_density(z) - gaussian.log_prob(z)).double().mean()
        kl_n_q = (gaussian.log_prob(g) - log_density(g)).double().mean()
    return float(kl_q_n + kl_n_q)


def _histogram_entropy(values: np.ndarray, bins: int) -> float:
    counts, edges = np.histogram(values, bins=bins)
    p = counts / counts.sum()
    nonzero = p > 0
    return float(-(p[nonzero] * np.log(p[nonzero] / np.diff(edges)[nonzero])).sum())


def total_correlation(z: Tensor, log_density: LogDensity, bins: int = 100) -> float:
    """Total correlation Σ_i H(z_i) − H(z) of q(z) (nats) from samples z [N, d].

    Marginal entropies from histograms with ``bins`` bins; the joint entropy is bounded from above by the
    cross-entropy −⟨log_density(z)⟩ of a density model (e.g. the flow prior), so the estimate errs low when the
    model is poor. Zero for d = 1.
    """
    z = torch.as_tensor(z)
    if z.dim() != 2:
        raise ValueError(f"z must be [N, d], got {tuple(z.shape)}")
    if z.shape[1] == 1:
        return 0.0
    with torch.no_grad():
        joint = -float(log_density(z).double().mean())
    marginals = sum(_histogram_entropy(column, bins) for column in z.double().numpy().T)
    return marginals - joint


def _gaussian_log_prob(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    return (-0.5 * ((z - mean) ** 2 * torch.exp(-log_var) + log_var + math.log(2 * math.pi))).sum(-1)


def vae_mc_proposal(encoder, prior, decoder, reduced_energy: Callable[[Tensor], Tensor], x: Tensor,
                    u: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """One VAE-based Monte Carlo proposal from each x [B, D]: encode, draw z' from the prior, decode x' ~ P(x|z').

    The move is Metropolis–Hastings on the joint (x, z) with target exp(−u(x)) q(z|x), z ~ q(z|x) refreshed
    first; its log acceptance ratio is
        −[u(x') − u(x)] + log q(z'|x') − log q(z|x) + log P(z) − log P(z') + log P(x|z) − log P(x'|z').
    ``u`` holds u(x) when already known. Returns (x', u(x'), log ratio), each with leading dimension B;
    impossible proposals (u = +inf or NaN anywhere) get log ratio −inf.
    """
    with torch.no_grad():
        u = reduced_energy(x) if u is None else u
        mean, log_var = encoder(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        z_new = prior.sample(len(x)).to(mean.dtype)
        x_new = decoder.sample(z_new)
        u_new = reduced_energy(x_new)
        mean_new, log_var_new = encoder(x_new)
        log_ratio = (-(u_new - u) + _gaussian_log_prob(z_new, mean_new, log_var_new)
                     - _gaussian_log_prob(z, mean, log_var) + prior.log_prob(z) - prior.log_prob(z_new)
                     + decoder.log_prob(x, z) - decoder.log_prob(x_new, z_new))
        log_ratio = torch.nan_to_num(log_ratio.double(), nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    return x_new, u_new, log_ratio


def f_acc(encoder, prior, decoder, reduced_energy: Callable[[Tensor], Tensor], x: Tensor,
          batch_size: int = 1000) -> float:
    """Mean Metropolis–Hastings acceptance probability min(1, ratio) of one VAE-MC move from each x [N, D].

    With x drawn from the Boltzmann distribution this is the stationary acceptance rate of the VAE-MC chain.
    """
    accepted = []
    for chunk in torch.as_tensor(x).split(batch_size):
        _, _, log_ratio = vae_mc_proposal(encoder, prior, decoder, reduced_energy, chunk)
        accepted.append(torch.exp(log_ratio.clamp(max=0.0)))
    return float(torch.cat(accepted).mean())
