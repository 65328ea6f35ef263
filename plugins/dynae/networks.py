"""The networks of DynAE: a deterministic encoder/decoder pair and the latent Langevin prior.

Encoder φ and decoder ψ are ReLU MLPs (3 hidden layers of 32 in the paper). The prior describes one lag of
overdamped Langevin dynamics in the latent space, in per-lag units:

    z(t + τ) = z(t) + f(z(t)) + ε,   ε ~ N(0, M(z(t))),

with the force field f and the diffusion M (a symmetric positive-definite matrix, through its Cholesky factor)
Tanh MLPs. The β-VAE baseline adds a log-variance head on the encoder's last hidden layer.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cvplug.nn import mlp

__all__ = ["Encoder", "LatentPrior"]


class Encoder(nn.Module):
    """x [batch, n_in] → z [batch, d]: a hidden stack (``body``) and a linear ``head``.

    With ``variational`` a second linear head gives log σ² for the β-VAE posterior N(z, diag σ²).
    """

    def __init__(self, n_in: int, n_components: int, hidden: Sequence[int] = (32, 32, 32),
                 variational: bool = False):
        super().__init__()
        stack = mlp(n_in, hidden, n_components)
        self.body, self.head = stack[:-1], stack[-1]
        self.log_variance = nn.Linear(hidden[-1] if hidden else n_in, n_components) if variational else None

    def forward(self, x: Tensor) -> Tensor:
        """z [batch, d] of x [batch, n_in] (the posterior mean for a variational encoder)."""
        return self.head(self.body(x))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x) (variational encoders only)."""
        if self.log_variance is None:
            raise ValueError("this encoder is deterministic; build it with variational=True")
        h = self.body(x)
        return self.head(h), self.log_variance(h)

    def deterministic(self) -> nn.Sequential:
        """The mean map x → z as a plain module (what a CollectiveVariable exports)."""
        return nn.Sequential(*self.body, self.head)


class LatentPrior(nn.Module):
    """Force field f(z) and diffusion M(z) of the latent overdamped Langevin dynamics, per lag.

    Inputs are standardised with buffers set by :meth:`standardise` (the latent's scale is not known in
    advance), so the Tanh layers work in their sensitive range. Units: z in latent units, f(z) in latent
    units per lag, M(z) in latent units squared per lag.
    """

    def __init__(self, n_components: int, hidden: Sequence[int] = (32, 32)):
        super().__init__()
        self.n_components = n_components
        self.force_net = mlp(n_components, hidden, n_components, nn.Tanh)
        self.diffusion_net = mlp(n_components, hidden, n_components * (n_components + 1) // 2, nn.Tanh)
        self.register_buffer("centre", torch.zeros(n_components))
        self.register_buffer("spread", torch.ones(n_components))
        self.register_buffer("tril", torch.tril_indices(n_components, n_components))

    @torch.no_grad()
    def standardise(self, z: Tensor) -> None:
        """Set the input shift and scale to the mean and standard deviation of latent samples ``z``."""
        self.centre.copy_(z.mean(dim=0))
        self.spread.copy_(z.std(dim=0).clamp_min(1e-6))

    def _input(self, z: Tensor) -> Tensor:
        return (z - self.centre) / self.spread

    def force(self, z: Tensor) -> Tensor:
        """Mean displacement over one lag, f(z) [batch, d]."""
        return self.force_net(self._input(z))

    def cholesky(self, z: Tensor) -> Tensor:
        """Lower-triangular L(z) [batch, d, d] with positive diagonal, M = L Lᵀ."""
        entries = self.diffusion_net(self._input(z))
        L = torch.zeros(z.shape[0], self.n_components, self.n_components, dtype=z.dtype, device=z.device)
        L[:, self.tril[0], self.tril[1]] = entries
        diagonal = torch.diagonal(L, dim1=-2, dim2=-1)
        return L - torch.diag_embed(diagonal) + torch.diag_embed(nn.functional.softplus(diagonal) + 1e-4)

    def diffusion(self, z: Tensor) -> Tensor:
        """Covariance of the displacement over one lag, M(z) [batch, d, d]."""
        L = self.cholesky(z)
        return L @ L.transpose(-1, -2)

    def log_likelihood(self, z: Tensor, dz: Tensor) -> Tensor:
        """Mean log-density of displacements ``dz`` from ``z`` under N(f(z), M(z)) (eqs. 6–7)."""
        law = torch.distributions.MultivariateNormal(self.force(z), scale_tril=self.cholesky(z))
        return law.log_prob(dz).mean()
