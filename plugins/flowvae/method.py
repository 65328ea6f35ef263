"""Fitting a FlowVAE to data and exporting its encoder mean as a CollectiveVariable: the "flowvae" method
(:class:`FlowPriorVAE`)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from cvplug.cv import CollectiveVariable
from cvplug.features import Feature
from cvplug.methods import Method
from cvplug.training import seed_everything

from .decoders import make_decoder
from .encoder import GaussianEncoder, InputEmbedding
from .model import FlowVAE
from .prior import FlowPrior
from .trainer import BetaSchedule, train

__all__ = ["build_vae", "fit_vae", "make_cv", "periodic_columns", "FlowPriorVAE"]


def build_vae(x: Tensor, periodic: Sequence[bool], n_components: int, decoder: str = "condind",
              encoder_hidden: Sequence[int] = (50, 50), decoder_hidden: Sequence[int] = (50, 50),
              prior_blocks: int = 4, prior_hidden: Sequence[int] = (50, 50), seed: int = 0) -> FlowVAE:
    """A fresh FlowVAE for data x [N, D] (its statistics fix the standardisations); ``periodic`` [D] marks
    angle columns (radians). Paper sizes: 50 hidden units for 2D toys, 300 for molecules."""
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    periodic = torch.as_tensor(list(periodic), dtype=torch.bool)
    if x.dim() != 2 or x.shape[1] != len(periodic):
        raise ValueError(f"x must be [N, D] with D = len(periodic) = {len(periodic)}, got {tuple(x.shape)}")
    seed_everything(seed)
    embedding = InputEmbedding.fit(x, periodic)
    return FlowVAE(GaussianEncoder(embedding, n_components, encoder_hidden),
                   FlowPrior(n_components, blocks=prior_blocks, hidden=prior_hidden),
                   make_decoder(decoder, n_components, x.mean(dim=0), x.std(dim=0), periodic,
                                hidden=decoder_hidden))


def fit_vae(x: Tensor, periodic: Sequence[bool], n_components: int = 1, decoder: str = "condind",
            beta: float = 1.0, epochs: int = 100, anneal_epochs: int = 20, start: Optional[FlowVAE] = None,
            beta_start: float = 0.0, lr: float = 1e-4, batch_size: int = 200, validation_fraction: float = 0.1,
            keep_best: bool = False, seed: int = 0, checkpoint: Optional[Path] = None, progress: bool = True,
            **sizes) -> tuple[FlowVAE, list[dict]]:
    """Train a FlowVAE on x [N, D]; returns the model and its training history.

    β_reg rises linearly from ``beta_start`` to ``beta`` over ``anneal_epochs`` epochs. Pass ``start`` (a trained
    model, copied, not modified) with ``beta_start`` set to its β to carry parameters over to a larger β, as the
    paper does for β ≥ 1. ``sizes`` go to :func:`build_vae` (hidden widths, prior blocks). A held-out
    ``validation_fraction`` of x is scored every epoch; ``keep_best`` returns the parameters of the best
    validation epoch at the final β (see :func:`train`). ``checkpoint`` makes the run resumable.
    """
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    vae = copy.deepcopy(start) if start is not None else build_vae(x, periodic, n_components, decoder, seed=seed,
                                                                   **sizes)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(validation_fraction * len(x)))
    x_val, x_train = (x[order[:n_val]], x[order[n_val:]]) if n_val else (None, x)
    history = train(vae, x_train, BetaSchedule(beta_start, beta, anneal_epochs), epochs, x_val=x_val, lr=lr,
                    batch_size=batch_size, seed=seed, checkpoint=checkpoint, keep_best=keep_best,
                    progress=progress)
    vae.eval()
    return vae, history


def make_cv(vae: FlowVAE, features: Feature, n_atoms: int, observation: Optional[nn.Module] = None,
            positions: Optional[Tensor] = None, info: Optional[dict] = None) -> CollectiveVariable:
    """The encoder mean as a CV of positions: features → (fixed observation map) → encoder mean.

    ``features`` must give the VAE's data x (after ``observation``, e.g. Cartesian → polar). With ``positions``
    [N, n_atoms, 3] the CV is calibrated (suggested metadynamics ranges and widths).
    """
    encoder: nn.Module = copy.deepcopy(vae.encoder).mean().eval()
    if observation is not None:
        encoder = nn.Sequential(observation, encoder)
    cv = CollectiveVariable(features, encoder, n_atoms, names=[f"z{k}" for k in range(vae.n_components)],
                            units="dimensionless", method="flowvae",
                            info={"decoder": vae.decoder.name, "n_components": vae.n_components, **(info or {})})
    if positions is not None:
        cv.calibrate(torch.as_tensor(positions))
    return cv


def periodic_columns(features: Feature) -> list[bool]:
    """Which output columns of ``features`` are angles in radians (dihedrals not given as sin/cos)."""
    def walk(description: dict) -> list[bool]:
        if description["type"] == "concatenate":
            return [p for part in description["parts"] for p in walk(part)]
        angle = description["type"] == "dihedrals" and not description.get("sincos", False)
        return [angle] * len(description.get("quadruplets", [])) if angle else []

    columns = walk(features.describe())
    return columns if len(columns) == features.n_out else [False] * features.n_out


class FlowPriorVAE(Method):
    """Flow-prior VAE (Monroe & Shen, J. Chem. Phys. 157, 094116, 2022) as a cvplug method: a VAE whose prior
    is a normalizing flow and whose decoder is chosen among "mse", "condind", "autoregressive" and "flow"; the
    CV is the encoder mean and ``model`` the trained :class:`FlowVAE`. β_reg (``beta``) weights the KL term and
    tunes how much detail the latent space keeps. Trains on the data's frames as equilibrium samples: the
    frames' weights are not used, so biased rounds shape the latent space by where the bias took the system.

    Options: ``decoder``, ``beta``, ``epochs`` and the keywords of :func:`fit_vae` (anneal_epochs, lr,
    batch_size, validation_fraction, keep_best, encoder_hidden, decoder_hidden, prior_blocks, prior_hidden).
    """

    name = "flowvae"
    summary = "VAE with a normalizing-flow prior and a tunable decoder; CV = encoder mean (Monroe & Shen 2022)"
    needs = ("frames",)

    def __init__(self, n_components: int = 1, *, decoder: str = "condind", beta: float = 1.0, epochs: int = 100,
                 anneal_epochs: int = 20, lr: float = 1e-4, batch_size: int = 200,
                 validation_fraction: float = 0.1, keep_best: bool = False,
                 encoder_hidden: Sequence[int] = (50, 50), decoder_hidden: Sequence[int] = (50, 50),
                 prior_blocks: int = 4, prior_hidden: Sequence[int] = (50, 50), **run):
        super().__init__(n_components, **run)
        self.decoder, self.beta, self.epochs = decoder, beta, epochs
        self.training = dict(anneal_epochs=anneal_epochs, lr=lr, batch_size=batch_size,
                             validation_fraction=validation_fraction, keep_best=keep_best,
                             encoder_hidden=tuple(encoder_hidden), decoder_hidden=tuple(decoder_hidden),
                             prior_blocks=prior_blocks, prior_hidden=tuple(prior_hidden))

    def fit(self, data) -> "FlowPriorVAE":
        """Train on the frames of ``data`` (a TrainingData); sets ``cv`` and ``model``; returns self."""
        x = torch.cat(data.feature_trajectories())
        vae, history = fit_vae(x, periodic_columns(data.features), self.n_components, self.decoder, self.beta,
                               self.epochs, seed=self.seed, checkpoint=self.checkpoint("flowvae.ckpt"),
                               progress=self.progress, **self.training)
        self.cv = make_cv(vae, data.features, data.spec.n_atoms, positions=data.sample_positions(),
                          info={"beta": self.beta, "epochs": self.epochs, "seed": self.seed, "final": history[-1]})
        self.cv.periodic_box = data.spec.periodic
        self.model = vae
        return self
