"""The coarse-grained generative model q(x, z) = q(z) q(x | z) and the encoder r(z | x) (Schöberl et al., eq. 9–12).

* q(z) = N(0, I) over ``n_components`` coarse-grained variables z (the paper's prior), or, as an option of ours,
  a learned Gaussian mixture :class:`MixturePrior`, whose weights set the share of each mode of q(x) directly;
* q(x | z) = N(μθ(z), diag σθ²): an MLP mean and one learned standard deviation per fine-grained coordinate; or,
  as a further option of ours, one decoder and one σθ per mixture component (:class:`MixtureDecoderModel`);
* r(z | x) = N(μφ(x), diag σφ²(x)): an MLP encoder; its mean μφ is the collective variable.

Coordinates x are the model coordinates of a :mod:`target <cvplug.plugins.rkl.targets>` (nm for molecules).
``offset`` and ``scale`` fix the units the networks see: μθ(z) = offset + scale · net(z) and the encoder reads
(x − offset) / scale, so with the offset at a reference structure and a scale of ≈ 0.1 nm both networks work with
numbers of order one.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from cvplug.nn import EncoderMean, mlp

__all__ = ["Samples", "MixturePrior", "CoarseGrainedModel", "MixtureDecoderModel"]

LOG_2PI = math.log(2 * math.pi)
ACTIVATION = nn.Tanh


def _scale_initial_weights(decoder: nn.Sequential, init_gain: float, input_gain: float) -> None:
    """Multiply a fresh decoder's output weights by ``init_gain`` and its input weights by ``input_gain``; zero
    its output bias (see :class:`CoarseGrainedModel`)."""
    with torch.no_grad():
        decoder[-1].weight.mul_(init_gain)
        decoder[0].weight.mul_(input_gain)
        decoder[-1].bias.zero_()


def gaussian_log_density(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Σ_k log N(x_k; mean_k, exp(log_std_k)²) over the last axis."""
    return (-0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


class Samples(NamedTuple):
    """Draws of q(x, z): latent z [B, d], coordinates x [B, D] and the standard normal noise eps [B, D] with
    x = μθ(z) + σθ ⊙ eps; ``component`` [B]: the mixture component each z was drawn from (None without a
    mixture prior)."""

    z: Tensor
    x: Tensor
    eps: Tensor
    component: Optional[Tensor] = None


class MixturePrior(nn.Module):
    """q(z) = Σ_k π_k N(z; m_k, diag s_k²): a learned Gaussian-mixture prior (an option of ours; the paper's prior
    is N(0, I)).

    With a standard-normal prior the share of a mode of q(x) is the prior mass of the region of z that the decoder
    maps there, which the reverse KL can move only by reshaping the decoder, a weak and slow signal (the double
    well's minor mode). With a mixture, one component per mode, the shares are the weights π themselves, and the
    training objective is differentiable in π when its expectation is taken component by component
    (:meth:`stratified`).

    Parameters
    ----------
    n_components : d, the dimension of z.
    n_mixture : K, the number of Gaussian components.
    spread : the components start with means spread on a circle (d ≥ 2) or a line (d = 1) of this radius, equal
        weights and unit standard deviations.
    """

    def __init__(self, n_components: int, n_mixture: int, spread: float = 2.0):
        super().__init__()
        if n_mixture < 1 or n_components < 1:
            raise ValueError(f"need n_components ≥ 1 and n_mixture ≥ 1, got {n_components} and {n_mixture}")
        angles = 2 * math.pi * torch.arange(n_mixture) / n_mixture
        means = torch.zeros(n_mixture, n_components)
        if n_mixture > 1:
            means[:, 0] = spread * (torch.cos(angles) if n_components > 1 else torch.linspace(-1, 1, n_mixture))
            if n_components > 1:
                means[:, 1] = spread * torch.sin(angles)
        self.logits = nn.Parameter(torch.zeros(n_mixture))
        self.means = nn.Parameter(means)
        self.log_std = nn.Parameter(torch.zeros(n_mixture, n_components))
        self._weights_held = False

    @contextlib.contextmanager
    def weights_held(self):
        """Within it, π enters every density and draw as a constant (no gradient reaches the logits)."""
        self._weights_held = True
        try:
            yield
        finally:
            self._weights_held = False

    def _logits(self) -> Tensor:
        return self.logits.detach() if self._weights_held else self.logits

    def weights(self) -> Tensor:
        """π [K]."""
        return torch.softmax(self._logits(), 0)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) [B]."""
        return torch.logsumexp(self.log_component_densities(z), 1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=None) -> Tensor:
        """n draws z [n, d] (component by π, not differentiable in π)."""
        return self.sample_labelled(n, generator, dtype)[0]

    def sample_labelled(self, n: int, generator: torch.Generator | None = None, dtype=None) -> tuple[Tensor, Tensor]:
        """n draws z [n, d] and the component [n] each came from (chosen by π, not differentiable in π)."""
        component = torch.multinomial(self.weights().detach(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=dtype or self.means.dtype)
        return (self.means[component] + torch.exp(self.log_std[component]) * eps).to(eps.dtype), component

    def stratified(self, n: int, dtype=None) -> tuple[Tensor, Tensor, Tensor]:
        """z [n, d] with n / K draws from each component (n rounded down to a multiple of K), per-sample weights
        K π_k [n], so that mean(weights · f(z)) is an unbiased, π-differentiable estimate of E_q(z) f, and the
        component of each draw [n]."""
        k = self.means.shape[0]
        per = max(n // k, 1)
        eps = torch.randn(k, per, self.means.shape[1], dtype=dtype or self.means.dtype)
        z = (self.means[:, None] + torch.exp(self.log_std)[:, None] * eps).reshape(k * per, -1).to(eps.dtype)
        component = torch.arange(k).repeat_interleave(per)
        return z, (k * self.weights()).repeat_interleave(per).to(eps.dtype), component

    def log_component_densities(self, z: Tensor) -> Tensor:
        """log π_k + log N(z; m_k, diag s_k²) [B, K]."""
        per_component = gaussian_log_density(z[:, None], self.means.to(z.dtype), self.log_std.to(z.dtype))
        return per_component + torch.log_softmax(self._logits(), 0).to(z.dtype)


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
    mixture : K > 0 replaces the N(0, I) prior by a learned :class:`MixturePrior` with K components (an option of
        ours); 0 keeps the paper's prior.
    mixture_spread : the mixture components' initial distance from the origin of z (:class:`MixturePrior`'s
        ``spread``).
    """

    def __init__(self, data_dim: int, n_components: int, offset=None, scale=1.0, hidden: Sequence[int] = (64, 64),
                 init_std: float = 1.0, init_gain: float = 0.1, input_gain: float = 1.0, mixture: int = 0,
                 mixture_spread: float = 2.0):
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
        self.decoder = mlp(n_components, hidden, data_dim, ACTIVATION)
        self.log_std = nn.Parameter(torch.full((data_dim,), math.log(init_std)))
        self.encoder = mlp(data_dim, hidden, 2 * n_components, ACTIVATION)
        self.prior = MixturePrior(n_components, mixture, mixture_spread) if mixture > 0 else None
        _scale_initial_weights(self.decoder, init_gain, input_gain)

    def decode(self, z: Tensor) -> Tensor:
        """μθ(z) [B, D]."""
        return self.offset + self.scale * self.decoder(z)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation [B, d] each of r(z | x)."""
        out = self.encoder((x - self.offset) / self.scale)
        return out[:, : self.n_components], out[:, self.n_components:]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        """n draws of q(x, z), reparametrised (differentiable in θ)."""
        if self.prior is None:
            z = torch.randn(n, self.n_components, generator=generator, dtype=self.offset.dtype)
            return self._complete(z, None, generator)
        return self._complete(*self.prior.sample_labelled(n, generator, self.offset.dtype), generator)

    def training_sample(self, n: int) -> tuple[Samples, Tensor | None]:
        """Draws for training objectives and their per-sample weights: plain draws and None with the N(0, I)
        prior; with a :class:`MixturePrior`, draws stratified by component and weights K π_k
        (:meth:`MixturePrior.stratified`), so that objectives are differentiable in π."""
        if self.prior is None:
            return self.sample(n), None
        z, weights, component = self.prior.stratified(n, self.offset.dtype)
        return self._complete(z, component), weights

    def _complete(self, z: Tensor, component: Tensor | None, generator: torch.Generator | None = None) -> Samples:
        eps = torch.randn(len(z), self.data_dim, generator=generator, dtype=self.offset.dtype)
        return Samples(z, self._drawn_mean(z, component) + torch.exp(self._drawn_log_std(component)) * eps, eps,
                       component)

    def _drawn_mean(self, z: Tensor, component: Tensor | None) -> Tensor:
        """μθ(z) [B, D] of the decoder each draw came from (one decoder here)."""
        return self.decode(z)

    def _drawn_log_std(self, component: Tensor | None) -> Tensor:
        """log σθ of the decoder each draw came from: [D] here, [B, D] with one σθ per component."""
        return self.log_std

    def sample_log_likelihood(self, drawn: Samples, x: Tensor) -> Tensor:
        """log q(x | z) [B] of the model's own draws at their x (``x``: ``drawn.x``, possibly with its gradient
        reshaped, :mod:`.gradnorm`): exactly −Σ log σθ − ½|ε|² − D/2 log 2π, written so that θ enters only
        via log σθ."""
        return -self._drawn_log_std(drawn.component).sum(-1) - 0.5 * (drawn.eps ** 2).sum(-1) \
            - 0.5 * self.data_dim * LOG_2PI

    def log_prior(self, z: Tensor) -> Tensor:
        """log q(z) [B]."""
        if self.prior is not None:
            return self.prior.log_prob(z)
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
        return EncoderMean(copy.deepcopy(self.encoder), self.n_components, self.offset, self.scale).eval()


class MixtureDecoderModel(CoarseGrainedModel):
    """q(x, z) = Σ_k π_k N(z; m_k, diag s_k²) N(x; μ_k(z), diag σ_k²): the mixture prior with one decoder μ_k and
    one σ_k per component (an option of ours; the paper has one decoder and q(z) = N(0, I)).

    With one decoder, a mode that sits apart from the others in x (alanine's α_R, a ψ rotation away from β) needs
    the network to carry z continuously across the barrier, and the mode's fit, hence under the reverse KL its
    weight, depends on how well the shared network bends there. Here each component has its own network and
    widths. The encoder r(z | x) and the CV μφ(x) are unchanged. q(x | z) = Σ_k q(k | z) q_k(x | z) with
    q(k | z) ∝ π_k N(z; m_k, s_k²), so each evaluation runs all K decoders. ``decoder`` is a ModuleList of K
    MLPs, ``log_std`` [K, D]; ``mixture`` ≥ 2; the other parameters as :class:`CoarseGrainedModel`.
    """

    def __init__(self, data_dim: int, n_components: int, offset=None, scale=1.0, hidden: Sequence[int] = (64, 64),
                 init_std: float = 1.0, init_gain: float = 0.1, input_gain: float = 1.0, mixture: int = 2,
                 mixture_spread: float = 2.0):
        if mixture < 2:
            raise ValueError(f"a mixture decoder needs mixture ≥ 2 components, got {mixture}")
        super().__init__(data_dim, n_components, offset, scale, hidden, init_std, init_gain, input_gain, mixture,
                         mixture_spread)
        others = [mlp(n_components, hidden, data_dim, ACTIVATION) for _ in range(mixture - 1)]
        for decoder in others:
            _scale_initial_weights(decoder, init_gain, input_gain)
        self.decoder = nn.ModuleList([self.decoder, *others])
        self.log_std = nn.Parameter(self.log_std.detach().expand(mixture, -1).clone())

    def decode_all(self, z: Tensor) -> Tensor:
        """μ_k(z) [B, K, D] of every component."""
        return self.offset + self.scale * torch.stack([decoder(z) for decoder in self.decoder], 1)

    def decode(self, z: Tensor) -> Tensor:
        """μ_k(z) [B, D] of the component k most probable at z (largest q(k | z))."""
        best = self.prior.log_component_densities(z).argmax(1)
        return self.decode_all(z)[torch.arange(len(z)), best]

    def _drawn_mean(self, z: Tensor, component: Tensor | None) -> Tensor:
        """μ_k(z) [B, D], each row through the decoder of its component only."""
        mean = z.new_empty(len(z), self.data_dim)
        for k, decoder in enumerate(self.decoder):
            picked = component == k
            mean[picked] = self.offset + self.scale * decoder(z[picked])
        return mean

    def _drawn_log_std(self, component: Tensor | None) -> Tensor:
        return self.log_std[component]

    def _marginal(self, z: Tensor, component_log_likelihoods: Tensor) -> Tensor:
        """log Σ_k q(k | z) q_k(x | z) [B] from log q_k(x | z) [B, K]."""
        log_k = self.prior.log_component_densities(z)
        return torch.logsumexp(log_k + component_log_likelihoods, 1) - torch.logsumexp(log_k, 1)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(x | z) [B]."""
        return self._marginal(z, gaussian_log_density(x[:, None], self.decode_all(z), self.log_std))

    def sample_log_likelihood(self, drawn: Samples, x: Tensor) -> Tensor:
        """log q(x | z) [B] of the model's own draws: the drawn component's term written as in
        :meth:`CoarseGrainedModel.sample_log_likelihood`, the others evaluated at ``x``."""
        own = super().sample_log_likelihood(drawn, x)
        terms = gaussian_log_density(x[:, None], self.decode_all(drawn.z), self.log_std)
        return self._marginal(drawn.z, terms.scatter(1, drawn.component[:, None], own[:, None]))
