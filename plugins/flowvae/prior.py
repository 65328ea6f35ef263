"""The prior P(z): a RealNVP-structured normalizing flow with rational-quadratic spline couplings (zuko).

z = f(u), u ~ N(0, I); log P(z) = log N(f⁻¹(z); 0, I) + log|det ∂f⁻¹/∂z|. The splines act on [−bound, bound]
and are the identity outside. Coupling: each block transforms half of the latent dimensions conditioned on
the other half (zuko's masked autoregressive transform with ``passes=2``), alternating halves between blocks.
For a 1D latent the conditioner has no input, so each block is a spline with learned constant parameters.
References: Dinh et al., ICLR 2017 (RealNVP); Durkan et al., NeurIPS 2019 (neural spline flows).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from torch import Tensor, nn
from zuko.flows import MAF
from zuko.transforms import MonotonicRQSTransform

__all__ = ["FlowPrior"]


class FlowPrior(nn.Module):
    """Flow prior over a ``n_components``-dimensional latent space.

    Parameters
    ----------
    n_components : d.
    blocks : number of coupling blocks (paper: 4).
    bins : spline bins per block.
    bound : spline domain [−bound, bound] (paper: 10), in latent units.
    hidden : conditioner hidden widths.
    """

    def __init__(self, n_components: int, blocks: int = 4, bins: int = 8, bound: float = 10.0,
                 hidden: Sequence[int] = (32, 32)):
        super().__init__()
        if n_components < 1 or blocks < 1 or bins < 2 or bound <= 0:
            raise ValueError(f"need n_components ≥ 1, blocks ≥ 1, bins ≥ 2 and bound > 0; got {n_components}, "
                             f"{blocks}, {bins}, {bound}")
        self.n_components = int(n_components)
        self.flow = MAF(n_components, 0, transforms=blocks, passes=2, hidden_features=tuple(hidden),
                        univariate=partial(MonotonicRQSTransform, bound=float(bound)),
                        shapes=[(bins,), (bins,), (bins - 1,)])

    def log_prob(self, z: Tensor) -> Tensor:
        """log P(z) [B] of latents z [B, d]."""
        return self.flow().log_prob(z)

    def sample(self, n: int) -> Tensor:
        """n latents [n, d] drawn from the prior."""
        with torch.no_grad():
            return self.flow().sample((n,))

    def to_base(self, z: Tensor) -> Tensor:
        """f⁻¹(z) [B, d]: the latent mapped back to the standard normal base."""
        return self.flow().transform(z)
