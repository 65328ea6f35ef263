"""Decoders P(x|z) of increasing power, one small class each, sharing one interface.

Every decoder models data x [B, D] given latents z [B, d] through ``log_prob(x, z)`` → [B] (a normalised
density in the units of x, e.g. 1/nm per linear coordinate, 1/rad per angle) and ``sample(z)`` → [B, D].
Linear columns are modelled in standardised units u = (x − mean)/std (the log-Jacobian is added back);
periodic columns (radians) are modelled on [−π, π) with von Mises densities.

- :class:`MSEDecoder` ("mse"): Gaussian means from a network, variance fixed to 1 (in the units of x);
  the negative log-likelihood is half the squared error plus a constant.
- :class:`CondIndDecoder` ("condind"): conditionally independent, means and variances from the network.
- :class:`AutoregressiveDecoder` ("autoregressive"): P(x|z) = Π_i P(x_i | x_<i, z), each conditional's
  mean and variance from one masked network (MADE; Germain et al., ICML 2015) that also takes z directly.
- :class:`FlowDecoder` ("flow"): conditionally independent densities followed by a masked autoregressive
  flow with rational-quadratic splines (zuko), conditioned on z (Papamakarios et al., NeurIPS 2017).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import torch
from torch import Tensor, nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.lazy import LazyComposedTransform
from zuko.nn import MaskedMLP
from zuko.transforms import MonotonicRQSTransform

from cvplug.nn import mlp

from . import distributions

__all__ = ["Decoder", "MSEDecoder", "CondIndDecoder", "AutoregressiveDecoder", "FlowDecoder", "DECODERS",
           "make_decoder"]


class Decoder(nn.Module):
    """Base of all decoders: the standardisation of x and the common ``log_prob`` / ``sample`` interface.

    Parameters
    ----------
    n_components : d.
    mean, std : [D] statistics of the data (units of x); ignored for periodic columns.
    periodic : [D] bool, which columns are angles in radians.
    hidden : hidden widths of the decoder's networks.
    """

    name = "decoder"

    def __init__(self, n_components: int, mean: Tensor, std: Tensor, periodic: Tensor,
                 hidden: Sequence[int] = (50, 50)):
        super().__init__()
        periodic = torch.as_tensor(periodic, dtype=torch.bool)
        mean, std = torch.as_tensor(mean).float(), torch.as_tensor(std).float()
        if not (mean.shape == std.shape == periodic.shape) or periodic.dim() != 1:
            raise ValueError(f"mean, std and periodic must all have shape [D], got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}, {tuple(periodic.shape)}")
        if bool((std[~periodic] <= 0).any()):
            raise ValueError("std must be positive for every linear column (drop constant columns)")
        self.register_buffer("periodic", periodic)
        self.register_buffer("shift", torch.where(periodic, torch.zeros_like(mean), mean))
        self.register_buffer("scale", torch.where(periodic, torch.ones_like(std), std))
        self.n_components, self.data_dim, self.hidden = int(n_components), int(periodic.numel()), tuple(hidden)

    def standardise(self, x: Tensor) -> Tensor:
        """Standardised coordinates u [B, D] of data x [B, D]: (x − mean)/std, angles wrapped to [−π, π)."""
        u = (x - self.shift) / self.scale
        return torch.where(self.periodic, distributions.wrap(u), u)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log P(x|z) [B] for data x [B, D] and latents z [B, d]."""
        return self.standardised_log_prob(self.standardise(x), z) - torch.log(self.scale).sum()

    def sample(self, z: Tensor) -> Tensor:
        """One x [B, D] per latent z [B, d] (no gradient)."""
        with torch.no_grad():
            u = self.standardised_sample(z)
        return torch.where(self.periodic, distributions.wrap(u), u * self.scale + self.shift)

    def standardised_log_prob(self, u: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """log P(u|z) [B] of standardised coordinates u [B, D] given latents z [B, d]."""
        raise NotImplementedError

    def standardised_sample(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """One standardised u [B, D] per latent z [B, d]."""
        raise NotImplementedError


class MSEDecoder(Decoder):
    """Gaussian means from z, variance fixed to 1 in the units of x (σ = 1/std standardised); κ = 1 for angles."""

    name = "mse"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.net = mlp(self.n_components, self.hidden, self.data_dim)

    def standardised_log_prob(self, u: Tensor, z: Tensor) -> Tensor:
        """log P(u|z) [B]: Gaussians (von Mises for angles) with unit variance in the units of x."""
        loc = self.net(z)
        return distributions.log_prob(u, loc, -torch.log(self.scale).expand_as(loc), self.periodic).sum(-1)

    def standardised_sample(self, z: Tensor) -> Tensor:
        """One u [B, D] per latent z [B, d]."""
        loc = self.net(z)
        return distributions.sample(loc, -torch.log(self.scale).expand_as(loc), self.periodic)


class CondIndDecoder(Decoder):
    """Conditionally independent: means and log-scales of every coordinate from one network of z."""

    name = "condind"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.net = mlp(self.n_components, self.hidden, 2 * self.data_dim)

    def parameters_of(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(loc, log_scale), each [B, D], in standardised units."""
        out = self.net(z)
        return out[..., : self.data_dim], out[..., self.data_dim:]

    def standardised_log_prob(self, u: Tensor, z: Tensor) -> Tensor:
        """log P(u|z) [B]: a sum of independent Gaussians / von Mises."""
        return distributions.log_prob(u, *self.parameters_of(z), self.periodic).sum(-1)

    def standardised_sample(self, z: Tensor) -> Tensor:
        """One u [B, D] per latent z [B, d]."""
        return distributions.sample(*self.parameters_of(z), self.periodic)


class AutoregressiveDecoder(Decoder):
    """P(x|z) = Π_i P(x_i | x_<i, z) from one masked network (MADE) on [z, x]; angles enter as (sin, cos)."""

    name = "autoregressive"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        owner = torch.cat([torch.arange(self.data_dim), torch.nonzero(self.periodic).flatten()])
        self.register_buffer("periodic_index", torch.nonzero(self.periodic).flatten())
        # input columns: z (seen by every output), then u_j (sin u_j for angles), then cos u_j of angles
        inputs = torch.cat([torch.full((self.n_components,), -1), owner])
        row = torch.arange(self.data_dim).repeat(2)  # outputs: loc_0 … loc_{D−1}, log_scale_0 …
        self.net = MaskedMLP(inputs[None, :] < row[:, None], hidden_features=self.hidden)

    def _inputs(self, u: Tensor, z: Tensor) -> Tensor:
        u_in = torch.where(self.periodic, torch.sin(u), u)
        return torch.cat([z, u_in, torch.cos(u.index_select(-1, self.periodic_index))], dim=-1)

    def conditionals(self, u: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(loc, log_scale) [B, D] of every P(u_i | u_<i, z)."""
        out = self.net(self._inputs(u, z))
        return out[..., : self.data_dim], out[..., self.data_dim:]

    def standardised_log_prob(self, u: Tensor, z: Tensor) -> Tensor:
        """log P(u|z) [B] = Σ_i log P(u_i | u_<i, z)."""
        return distributions.log_prob(u, *self.conditionals(u, z), self.periodic).sum(-1)

    def standardised_sample(self, z: Tensor) -> Tensor:
        """One u [B, D] per latent z [B, d], coordinate by coordinate."""
        u = torch.zeros(*z.shape[:-1], self.data_dim, dtype=z.dtype, device=z.device)
        for i in range(self.data_dim):
            loc, log_scale = self.conditionals(u, z)
            u[..., i] = distributions.sample(loc, log_scale, self.periodic)[..., i]
        return u


class FlowDecoder(CondIndDecoder):
    """Conditionally independent base densities followed by a z-conditioned masked autoregressive spline flow.

    The flow acts on standardised coordinates with splines on [−bound, bound] (identity outside); angles are
    scaled from [−π, π) onto [−bound, bound) first, so the spline maps the circle onto itself.
    """

    name = "flow"

    def __init__(self, *args, transforms: int = 2, bins: int = 8, bound: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("factor", torch.where(self.periodic, bound / math.pi, 1.0))
        self.transform = LazyComposedTransform(*[
            MaskedAutoregressiveTransform(self.data_dim, self.n_components, hidden_features=self.hidden,
                                          order=torch.arange(self.data_dim).flip(0) if k % 2 else None,
                                          univariate=partial(MonotonicRQSTransform, bound=bound),
                                          shapes=[(bins,), (bins,), (bins - 1,)])
            for k in range(transforms)])

    def standardised_log_prob(self, u: Tensor, z: Tensor) -> Tensor:
        # the scaling by ``factor`` before and after the flow cancels in the log-Jacobian
        """log P(u|z) [B]: the base density at the flow's image plus its log-Jacobian."""
        y, log_jacobian = self.transform(z).call_and_ladj(u * self.factor)
        return super().standardised_log_prob(y / self.factor, z) + log_jacobian

    def standardised_sample(self, z: Tensor) -> Tensor:
        """One u [B, D] per latent z [B, d]: a base sample through the inverse flow."""
        y = super().standardised_sample(z)
        return self.transform(z).inv(y * self.factor) / self.factor


DECODERS: dict[str, type[Decoder]] = {cls.name: cls for cls in
                                      (MSEDecoder, CondIndDecoder, AutoregressiveDecoder, FlowDecoder)}


def make_decoder(name: str, *args, **kwargs) -> Decoder:
    """The decoder called ``name`` ("mse", "condind", "autoregressive" or "flow")."""
    try:
        return DECODERS[name](*args, **kwargs)
    except KeyError:
        raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}") from None
