"""The encoder q(z|x): a diagonal Gaussian whose mean is the exported collective variable."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cvplug.nn import EncoderMean, mlp

__all__ = ["InputEmbedding", "GaussianEncoder", "LOG_VAR_RANGE"]

LOG_VAR_RANGE = (-18.0, 6.0)  # clamp of the encoder's log-variance, for numerical safety


class InputEmbedding(nn.Module):
    """Network input of data x [B, D]: linear columns standardised, periodic columns (radians) as (sin, cos).

    Output: [standardised linear columns, sin of periodic columns, cos of periodic columns].
    """

    def __init__(self, mean: Tensor, std: Tensor, periodic: Tensor):
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        self.register_buffer("linear_index", torch.nonzero(~periodic).flatten())
        self.register_buffer("periodic_index", torch.nonzero(periodic).flatten())
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.get_default_dtype())[~periodic])
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.get_default_dtype())[~periodic])
        self.n_out = int(self.linear_index.numel() + 2 * self.periodic_index.numel())

    @classmethod
    def fit(cls, x: Tensor, periodic: Tensor) -> "InputEmbedding":
        """Statistics from data x [N, D]; constant linear columns get std 1."""
        std = x.std(dim=0)
        return cls(x.mean(dim=0), torch.where(std > 1e-8, std, torch.ones_like(std)), periodic)

    def forward(self, x: Tensor) -> Tensor:
        """Network inputs [B, n_out] of data x [B, D]."""
        linear = (x.index_select(-1, self.linear_index) - self.mean) / self.std
        angles = x.index_select(-1, self.periodic_index)
        return torch.cat([linear, torch.sin(angles), torch.cos(angles)], dim=-1)


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mean(x), diag exp(log_var(x))) from an MLP on the embedded input.

    Parameters
    ----------
    embedding : the input map of data x (units of x: nm, rad …) to network inputs.
    n_components : d, the number of latent dimensions (dimensionless).
    hidden : hidden layer widths (the paper: two layers, 50 units for 2D toys, 300 for molecules).
    """

    def __init__(self, embedding: InputEmbedding, n_components: int, hidden: Sequence[int] = (50, 50)):
        super().__init__()
        if n_components < 1:
            raise ValueError(f"n_components must be at least 1, got {n_components}")
        self.embedding = embedding
        self.n_components = int(n_components)
        self.net = mlp(embedding.n_out, hidden, 2 * n_components)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_var), each [B, d]."""
        out = self.net(self.embedding(x))
        return out[..., : self.n_components], out[..., self.n_components:].clamp(*LOG_VAR_RANGE)

    def mean(self) -> EncoderMean:
        """The mean as a module of its own (sharing this encoder's modules): what an exported CV computes."""
        return EncoderMean(nn.Sequential(self.embedding, self.net), self.n_components)
