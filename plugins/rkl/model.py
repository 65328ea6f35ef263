"""The coarse-grained generative model q(x, z) = q(z) q(x | z) and the encoder r(z | x) (Schöberl et al., eq. 9–12).

* q(z) = N(0, I) over ``n_components`` coarse-grained variables z;
* q(x | z) = N(μθ(z), diag σθ²): an MLP mean and one learned standard deviation per fine-grained coordinate;
* r(z | x) = N(μφ(x), diag σφ²(x)): an MLP encoder; its mean μφ is the collective variable.

Coordinates x are the model coordinates of a :mod:`target <cvplug.plugins.rkl.targets>` (nm for molecules).
``offset`` and ``scale`` fix the units the networks see: μθ(z) = offset + scale · net(z) and the encoder reads
(x − offset) / scale, so with the offset at a reference structure and a scale of ≈ 0.1 nm both networks work with
numbers of order one.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

__all__ = ["mlp", "Samples", "CoarseGrainedModel", "EncoderMean"]

LOG_2PI = math.log(2 * math.pi)
ACTIVATION = nn.Tanh


def mlp(n_in: int, hidden: Sequence[int], n_out: int) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with tanh between them, then a linear output layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), ACTIVATION()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


def gaussian_log_density(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Σ_k log N(x_k; mean_k, exp(log_std_k)²) over the last axis."""
    return (-0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


class Samples(NamedTuple):
    """Draws of q(x, z): latent z [B, d], coordinates x [B, D] and the standard normal noise eps [B, D] with
    x = μθ(z) + σθ ⊙ eps."""

    z: Tensor
    x: Tensor
    eps: Tensor


class EncoderMean(nn.Module):
    """x [B, D] → μφ(x) [B, d]: the encoder's mean, the module a CollectiveVariable exports."""

    def __init__(self, network: nn.Module, offset: Tensor, scale: Tensor, n_components: int):
        super().__init__()
        self.network = network
        self.register_buffer("offset", offset.clone())
        self.register_buffer("scale", scale.clone())
        self.n_components = n_components

    def forward(self, x: Tensor) -> Tensor:
        return self.network((x - self.offset) / self.scale)[:, : self.n_components]


class CoarseGrainedModel(nn.Module):
    """q(z) q(x | z) with encoder r(z | x); see the module docstring.

    Parameters
    ----------
    data_dim : D, the number of fine-grained coordinates.
    n_components : d, the number of coarse-grained variables (d ≪ D).
    offset : [D] the decoder's output offset and the encoder's input centre (e.g. a reference structure, nm).
    scale : length unit of the networks (nm for molecules), a float or [D].
    hidden : hidden-layer widths of both MLPs.
    init_std : initial σθ (coordinates' units).
    init_gain : factor on the decoder's initial output weights (small: q(x) starts close to N(offset, σθ²)).
    input_gain : factor on the decoder's initial weights from z (large: μθ can jump between modes over a short
        range of z, so few samples of q fall on the barrier between them).
    """

    def __init__(self, data_dim: int, n_components: int, offset=None, scale=1.0, hidden: Sequence[int] = (64, 64),
                 init_std: float = 1.0, init_gain: float = 0.1, input_gain: float = 1.0):
        super().__init__()
        if n_components < 1 or data_dim < 1:
            raise ValueError(f"data_dim and n_components must be positive, got {data_dim} and {n_components}")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.data_dim, self.n_components = int(data_dim), int(n_components)
        offset = torch.zeros(data_dim) if offset is None else torch.as_tensor(offset, dtype=torch.get_default_dtype())
        scale = torch.as_tensor(scale, dtype=torch.get_default_dtype()).expand(data_dim).clone()
        if offset.shape != (data_dim,) or not bool((scale > 0).all()):
            raise ValueError(f"offset must have shape ({data_dim},) and scale must be positive")
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)
        self.decoder = mlp(n_components, hidden, data_dim)
        self.log_std = nn.Parameter(torch.full((data_dim,), math.log(init_std)))
        self.encoder = mlp(data_dim, hidden, 2 * n_components)
        with torch.no_grad():
            self.decoder[-1].weight.mul_(init_gain)
            self.decoder[0].weight.mul_(input_gain)
            self.decoder[-1].bias.zero_()

    def decode(self, z: Tensor) -> Tensor:
        """μθ(z) [B, D]."""
        return self.offset + self.scale * self.decoder(z)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation [B, d] each of r(z | x)."""
        out = self.encoder((x - self.offset) / self.scale)
        return out[:, : self.n_components], out[:, self.n_components:]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        """n draws of q(x, z), reparametrised (differentiable in θ)."""
        z = torch.randn(n, self.n_components, generator=generator, dtype=self.offset.dtype)
        eps = torch.randn(n, self.data_dim, generator=generator, dtype=self.offset.dtype)
        return Samples(z, self.decode(z) + torch.exp(self.log_std) * eps, eps)

    def log_prior(self, z: Tensor) -> Tensor:
        """log q(z) [B]."""
        return gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(x | z) [B]."""
        return gaussian_log_density(x, self.decode(z), self.log_std)

    def log_posterior(self, z: Tensor, x: Tensor) -> Tensor:
        """log r(z | x) [B]."""
        mean, log_std = self.encode(x)
        return gaussian_log_density(z, mean, log_std)

    def log_prob(self, x: Tensor, n_samples: int = 256, generator: torch.Generator | None = None) -> Tensor:
        """log q(x) [B], estimated by importance sampling with r(z | x) as proposal (``n_samples`` per x).

        log q(x) ≈ log (1/K) Σ_k q(x | z_k) q(z_k) / r(z_k | x), z_k ~ r(z | x); a lower bound on average that
        tightens as K grows.
        """
        with torch.no_grad():
            mean, log_std = self.encode(x)
            noise = torch.randn(n_samples, *mean.shape, generator=generator, dtype=mean.dtype)
            z = mean + torch.exp(log_std) * noise                              # [K, B, d]
            flat_z, flat_x = z.reshape(-1, self.n_components), x.expand(n_samples, *x.shape).reshape(-1, x.shape[-1])
            log_w = (self.log_likelihood(flat_x, flat_z) + self.log_prior(flat_z)).reshape(n_samples, -1) \
                - gaussian_log_density(z, mean, log_std)
            return torch.logsumexp(log_w, dim=0) - math.log(n_samples)

    def potential(self, x: Tensor, beta: float = 1.0, n_samples: int = 256,
                  generator: torch.Generator | None = None) -> Tensor:
        """The model's predicted potential −log q(x) / β [B] (units of the target's kT, up to a constant)."""
        if not beta > 0:
            raise ValueError(f"beta must be positive, got {beta}")
        return -self.log_prob(x, n_samples, generator) / beta

    def encoder_mean(self) -> EncoderMean:
        """A copy of the encoder mean x → μφ(x) as a standalone module (for a CollectiveVariable)."""
        return EncoderMean(copy.deepcopy(self.encoder), self.offset, self.scale, self.n_components).eval()
