"""The flow-prior VAE: encoder q(z|x), flow prior P(z), decoder P(x|z), and its loss.

Loss per sample (Monroe & Shen, J. Chem. Phys. 157, 094116, 2022):
    −log P(x|z) + β_reg · [log q(z|x) − log P(z)],   z ~ q(z|x) (one reparameterised draw).
The prior's parameters are fitted to the aggregate posterior by maximum likelihood, −log P(z) with z detached,
at weight 1 whatever β_reg is: for β_reg > 0 this has the same optimum as the β-weighted term (only the prior's
step size differs), and at β_reg = 0 it still gives a prior to propose from in VAE-based Monte Carlo.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .decoders import Decoder
from .encoder import GaussianEncoder
from .prior import FlowPrior

__all__ = ["FlowVAE", "Loss"]


@dataclass
class Loss:
    """Batch means (nats): ``surrogate`` to differentiate, the reconstruction NLL and the KL term.

    ``objective`` = nll + β·kl is the value of the β-weighted loss (−ELBO at β = 1).
    """

    surrogate: Tensor
    nll: Tensor
    kl: Tensor
    beta: float

    @property
    def objective(self) -> float:
        """nll + β·kl, nats per sample."""
        return float(self.nll + self.beta * self.kl)


class FlowVAE(nn.Module):
    """Encoder, flow prior and decoder. Data x [B, D] in its own units (nm, rad …); latents z [B, d]."""

    def __init__(self, encoder: GaussianEncoder, prior: FlowPrior, decoder: Decoder):
        super().__init__()
        if not encoder.n_components == prior.n_components == decoder.n_components:
            raise ValueError(f"latent dimensions disagree: encoder {encoder.n_components}, prior "
                             f"{prior.n_components}, decoder {decoder.n_components}")
        self.encoder, self.prior, self.decoder = encoder, prior, decoder

    @property
    def n_components(self) -> int:
        """The latent dimension d."""
        return self.encoder.n_components

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_var) of q(z|x), each [B, d]."""
        return self.encoder(x)

    def loss(self, x: Tensor, beta: float) -> Loss:
        """The β-weighted negative ELBO of a batch, see the module docstring."""
        mean, log_var = self.encoder(x)
        std = torch.exp(0.5 * log_var)
        z = mean + std * torch.randn_like(std)
        log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(-1)
        nll = -self.decoder.log_prob(x, z)
        # one prior pass on [z; z.detach()]: the first half carries the encoder's gradient, and the prior's
        # parameters get −β ∇log P(z) − (1 − β) ∇log P(z) = −∇log P(z) in total
        log_p, log_p_detached = self.prior.log_prob(torch.cat([z, z.detach()])).chunk(2)
        kl = log_q - log_p
        surrogate = nll + beta * kl - (1.0 - beta) * log_p_detached
        return Loss(surrogate.mean(), nll.mean().detach(), kl.mean().detach(), float(beta))
