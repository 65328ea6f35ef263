"""Training DynAE (Algorithm 1 of Wang et al. 2024) and its two baselines on the same encoder and decoder.

``model="dynae"``: each step draws ``groups`` latent bins and ``batch`` frame pairs from each, then
  1. representation step: reconstruction of x_t and x_t+τ (L2) + β · sliced-Wasserstein distance, per bin,
     between encoded moves Δz = φ(x_t+τ) − φ(x_t) and prior moves f(z_t) + ε, ε ~ N(0, I);
  2. prior step: maximum likelihood of the detached Δz under N(f(z_t), M(z_t)).
  Epoch 0 treats the data as one bin; later epochs rebuild the bins by regular-space clustering of the latent
  (``d_min``) and draw bin k with probability ∝ N_k^(1/γ).
``model="autoencoder"``: reconstruction only. ``model="vae"``: reconstruction + β · KL(q(z|x) ‖ N(0, I)).
Both baselines see the same frames (x_t and x_t+τ) in uniformly drawn batches of ``groups × batch``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cvplug.cv import CollectiveVariable, Normalization
from cvplug.features import Feature
from cvplug.nn import mlp
from cvplug.training import Checkpoint, progress_bar, seed_everything

from .binning import BinSampler, assign, regular_space
from .data import lagged_pairs
from .losses import kl_to_standard_normal, reconstruction, sliced_wasserstein
from .networks import Encoder, LatentPrior

__all__ = ["Settings", "DynAEResult", "train", "MODELS"]

MODELS = ("dynae", "autoencoder", "vae")
AUTO_EPOCHS = 12  # the fewest epochs ``epochs=None`` trains (the old fixed default, tuned on the three-well)


@dataclass
class Settings:
    """Hyperparameters (defaults: the paper's architecture; β, d_min and the schedule tuned on the three-well).

    n_components : latent dimension d.        lag : frames between the two members of a pair.
    model : "dynae", "autoencoder" or "vae".
    beta : weight of the sliced-Wasserstein term (dynae) or of the KL term (vae).
    epochs : passes over the pairs (the latent bins are rebuilt after each). None (default): as many as give
        at least ``min_steps`` optimiser steps, and at least 12 — 12 from ≈ 34 000 pairs up (defaults), more
        on small data sets (≈ 100 epochs on the 4000 pairs of 1 ns of alanine dipeptide at 0.2 ps a frame).
    min_steps : optimiser steps that ``epochs=None`` guarantees. One epoch is ⌈pairs / (groups · batch)⌉
        steps, so a fixed epoch count trains a small data set for a few dozen steps only: 12 epochs on 1 ns of
        alanine dipeptide are 48 steps, kNN R² (sin, cos) of φ / ψ 0.78–0.91 / 0.50–0.94 over seeds 0–2.
        400 steps gave ≥ 0.92 on 1 ns and on two 0.5 ns runs (seeds 0–2); 200 fell to 0.88 on 0.5 ns, and
        600 were no better than 400. The three-well runs (4·10⁴ and 1.5·10⁵ pairs) train 12 epochs as before.
    groups, batch : bins per step and pairs per bin.
    d_min : regular-space distance in latent units (one latent unit = the noise of one lag).
    gamma : resampling exponent γ (bins ∝ N_k^(1/γ)).   n_directions : slices of the SW distance.
    learning_rate : Adam step size (representation and prior).
    hidden : encoder/decoder hidden widths.  prior_hidden : force/diffusion hidden widths.
    """

    n_components: int = 2
    lag: int = 1
    model: str = "dynae"
    beta: float = 1.0
    epochs: Optional[int] = None
    min_steps: int = 400
    groups: int = 16
    batch: int = 64
    d_min: float = 1.0
    gamma: float = 2.0
    n_directions: int = 50
    learning_rate: float = 2e-3
    hidden: Sequence[int] = (32, 32, 32)
    prior_hidden: Sequence[int] = (32, 32)

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, int) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        for name in ("epochs", "min_steps", "groups", "batch", "n_directions"):
            if getattr(self, name) is None and name == "epochs":
                continue
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("beta", "d_min", "learning_rate"):
            if not getattr(self, name) > 0 and not (name == "beta" and self.model == "autoencoder"):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.gamma < 1:
            raise ValueError(f"gamma must be ≥ 1, got {self.gamma}")


@dataclass
class DynAEResult:
    """A trained model: the exported-ready ``cv`` plus the networks behind it and the loss history.

    ``prior`` is None for the baselines. History: one dict of mean losses per epoch. ``seconds`` and
    ``cpu_seconds``: wall and CPU time spent in the training epochs (this process; resumed runs add up).
    """

    cv: CollectiveVariable
    encoder: Encoder
    decoder: nn.Module
    prior: Optional[LatentPrior]
    settings: Settings
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def encode(self, positions) -> np.ndarray:
        """Latent coordinates [n, d] of positions [n, n_atoms, 3] (nm)."""
        with torch.no_grad():
            return torch.cat([self.cv(torch.as_tensor(positions[i:i + 20000]))
                              for i in range(0, len(positions), 20000)]).double().numpy()

    def force_field(self, z) -> np.ndarray:
        """Learned mean latent displacement per lag f(z) [n, d] at latent points ``z`` [n, d]."""
        return self._prior_call(self.prior.force if self.prior is not None else None, z)

    def diffusion(self, z) -> np.ndarray:
        """Learned displacement covariance per lag M(z) [n, d, d] at latent points ``z`` [n, d]."""
        return self._prior_call(self.prior.diffusion if self.prior is not None else None, z)

    @staticmethod
    def _prior_call(function, z) -> np.ndarray:
        if function is None:
            raise ValueError("only model='dynae' learns a latent force field and diffusion")
        with torch.no_grad():
            return function(torch.as_tensor(np.asarray(z), dtype=torch.float32)).double().numpy()


def _encode(encoder: Encoder, x: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.cat([encoder(x[i:i + 65536]) for i in range(0, len(x), 65536)])


def train(data, n_components: int = 2, lag: int = 1, *, features: Optional[Feature] = None, seed: int = 0,
          checkpoint=None, progress: bool = True, names: Optional[Sequence[str]] = None, device: str = "cpu",
          **settings) -> DynAEResult:
    """Train DynAE (or a baseline) on time-lagged pairs of ``data``; returns a :class:`DynAEResult`.

    ``data``: an mdtraj Trajectory, a cvplug ToyTrajectory, a positions array [frames, n_atoms, 3] (nm), a list
    of these, or :class:`cvplug.plugins.dynae.Pairs`. ``features`` map positions to the encoder's input (toys
    default to their natural coordinates). ``checkpoint``: a file path; an interrupted run started again with
    the same path continues after its last finished epoch (given more ``epochs``, it trains on). Other keywords
    are :class:`Settings` fields; ``result.settings.epochs`` is the number of epochs trained, also when
    ``epochs=None`` chose it. The networks are tiny: ``torch.set_num_threads(1)`` is usually fastest on a CPU.
    ``device``: the torch device the networks train on ("cpu" or "cuda"); the random draws stay on the CPU, and
    the returned networks and CV are on the CPU.
    """
    unknown = set(settings) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(Settings.__dataclass_fields__)}")
    config = Settings(n_components=n_components, lag=lag, **settings)
    config.check()
    first, second, sample, features = lagged_pairs(data, lag, features)
    normalization = Normalization.fit(torch.cat([first, second]))
    first, second = normalization(first).float().to(device), normalization(second).float().to(device)
    n_pairs = len(first)
    steps = max(1, math.ceil(n_pairs / (config.groups * config.batch)))
    if config.epochs is None:
        config = replace(config, epochs=max(AUTO_EPOCHS, math.ceil(config.min_steps / steps)))
    seed_everything(seed)
    n_features = first.shape[1]
    encoder = Encoder(n_features, n_components, config.hidden, variational=config.model == "vae")
    decoder = mlp(n_components, list(config.hidden)[::-1], n_features)
    prior = LatentPrior(n_components, config.prior_hidden) if config.model == "dynae" else None
    networks = [module for module in (encoder, decoder, prior) if module is not None]
    for module in networks:
        module.to(device)
    representation = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config.learning_rate)
    prior_optimizer = torch.optim.Adam(prior.parameters(), lr=config.learning_rate) if prior else None
    modules = dict(encoder=encoder, decoder=decoder, representation=representation)
    if prior is not None:
        modules.update(prior=prior, prior_optimizer=prior_optimizer)

    store = Checkpoint(checkpoint, _resumable(asdict(config))) if checkpoint is not None else None
    state = store.restore(**modules) if store is not None else None
    history: list[dict] = state["history"] if state else []
    seconds, cpu_seconds = (state["seconds"], state["cpu_seconds"]) if state else (0.0, 0.0)
    bar = progress_bar(total=config.epochs * steps, initial=len(history) * steps, desc=f"{config.model} seed {seed}",
                   progress=progress)
    for epoch in range(len(history), config.epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        sampler = _sampler(encoder, prior, first, epoch, config)
        sums: dict[str, float] = {}
        for _ in range(steps):
            indices = sampler.draw(config.groups, config.batch)
            losses = _step(encoder, decoder, prior, representation, prior_optimizer, first[indices],
                           second[indices], config)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value / steps
            bar.update(1)
        sums["bins"] = sampler.n_bins
        history.append(sums)
        seconds += time.perf_counter() - started
        cpu_seconds += time.process_time() - cpu_started
        bar.set_postfix({k: f"{v:.3g}" for k, v in sums.items()})
        if store is not None:
            store.save(**modules, history=history, seconds=seconds, cpu_seconds=cpu_seconds)
    bar.close()
    for module in networks:
        module.cpu()

    names = list(names) if names is not None else [f"z{i}" for i in range(n_components)]
    cv = CollectiveVariable(features, encoder.deterministic(), n_atoms=sample.shape[1],
                            normalization=normalization, names=names, method="dynae",
                            info={"model": config.model, "seed": seed, "settings": asdict(config),
                                  "final_losses": history[-1] if history else {}})
    cv.calibrate(torch.as_tensor(sample, dtype=torch.float32))
    return DynAEResult(cv, encoder, decoder, prior, config, history, seconds, cpu_seconds)


def _resumable(settings: dict) -> dict:
    """Settings that must match to continue a checkpoint (more epochs may be asked for)."""
    return {k: v for k, v in settings.items() if k not in ("epochs", "min_steps")}


def _sampler(encoder: Encoder, prior: Optional[LatentPrior], first: Tensor, epoch: int,
             config: Settings) -> BinSampler:
    """Epoch 0 and the baselines: one bin (uniform draws). DynAE later: regular-space bins of the latent."""
    if prior is None:
        return BinSampler(np.zeros(len(first), dtype=int))
    z = _encode(encoder, first)
    prior.standardise(z)
    if epoch == 0:
        return BinSampler(np.zeros(len(first), dtype=int))
    z = z.double().cpu().numpy()
    return BinSampler(assign(z, regular_space(z, config.d_min)), config.gamma)


def _step(encoder: Encoder, decoder: nn.Module, prior: Optional[LatentPrior], representation, prior_optimizer,
          x0: Tensor, x1: Tensor, config: Settings) -> dict[str, float]:
    """One optimiser step on pairs [groups, batch, n_features]; returns the losses as floats."""
    if config.model == "vae":
        (m0, log_v0), (m1, log_v1) = encoder.posterior(x0), encoder.posterior(x1)
        z0, z1 = (m + torch.randn_like(m) * (0.5 * log_v).exp() for m, log_v in ((m0, log_v0), (m1, log_v1)))
    else:
        z0, z1 = encoder(x0), encoder(x1)
    rec = reconstruction(decoder(z0), x0) + reconstruction(decoder(z1), x1)
    loss, out = rec, {"reconstruction": rec.item()}
    if config.model == "vae":
        kl = 0.5 * (kl_to_standard_normal(m0, log_v0) + kl_to_standard_normal(m1, log_v1))
        loss, out["kl"] = rec + config.beta * kl, kl.item()
    elif prior is not None:
        moves = z1 - z0
        flat = z0.flatten(0, 1)
        prior_moves = (prior.force(flat) + torch.randn_like(flat)).view_as(moves)
        sw = sliced_wasserstein(moves, prior_moves, config.n_directions)
        loss, out["sliced_wasserstein"] = rec + config.beta * sw, sw.item()
    representation.zero_grad()
    loss.backward()
    representation.step()
    if prior is not None:
        prior_optimizer.zero_grad()
        nll = -prior.log_likelihood(z0.detach().flatten(0, 1), (z1 - z0).detach().flatten(0, 1))
        nll.backward()
        prior_optimizer.step()
        out["prior_nll"] = nll.item()
    return out
