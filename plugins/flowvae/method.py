"""Fitting a FlowVAE to data and exporting its encoder mean as a CollectiveVariable: the "flowvae" method."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from cvplug.cv import CollectiveVariable
from cvplug.features import Feature
from cvplug.training import seed_everything

from .decoders import make_decoder
from .encoder import EncoderMean, GaussianEncoder, InputEmbedding
from .model import FlowVAE
from .prior import FlowPrior
from .trainer import BetaSchedule, train

__all__ = ["build_vae", "fit_vae", "make_cv", "FlowVAEMethod", "method"]


def build_vae(x: Tensor, periodic: Sequence[bool], latent_dim: int, decoder: str = "condind",
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
    return FlowVAE(GaussianEncoder(embedding, latent_dim, encoder_hidden),
                   FlowPrior(latent_dim, blocks=prior_blocks, hidden=prior_hidden),
                   make_decoder(decoder, latent_dim, x.mean(dim=0), x.std(dim=0), periodic,
                                hidden=decoder_hidden))


def fit_vae(x: Tensor, periodic: Sequence[bool], latent_dim: int = 1, decoder: str = "condind",
            beta: float = 1.0, epochs: int = 100, anneal_epochs: int = 20, start: Optional[FlowVAE] = None,
            beta_start: float = 0.0, lr: float = 1e-4, batch_size: int = 200, validation_fraction: float = 0.1,
            keep_best: bool = False, seed: int = 0, checkpoint: Optional[Path] = None, show_progress: bool = True,
            **sizes) -> tuple[FlowVAE, list[dict]]:
    """Train a FlowVAE on x [N, D]; returns the model and its training history.

    β_reg rises linearly from ``beta_start`` to ``beta`` over ``anneal_epochs`` epochs. Pass ``start`` (a trained
    model, copied, not modified) with ``beta_start`` set to its β to carry parameters over to a larger β, as the
    paper does for β ≥ 1. ``sizes`` go to :func:`build_vae` (hidden widths, prior blocks). A held-out
    ``validation_fraction`` of x is scored every epoch; ``keep_best`` returns the parameters of the best
    validation epoch at the final β (see :func:`train`). ``checkpoint`` makes the run resumable.
    """
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    vae = copy.deepcopy(start) if start is not None else build_vae(x, periodic, latent_dim, decoder, seed=seed,
                                                                   **sizes)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(validation_fraction * len(x)))
    x_val, x_train = (x[order[:n_val]], x[order[n_val:]]) if n_val else (None, x)
    history = train(vae, x_train, BetaSchedule(beta_start, beta, anneal_epochs), epochs, x_val=x_val, lr=lr,
                    batch_size=batch_size, seed=seed, checkpoint=checkpoint, keep_best=keep_best,
                    show_progress=show_progress)
    vae.eval()
    return vae, history


def make_cv(vae: FlowVAE, features: Feature, n_atoms: int, observation: Optional[nn.Module] = None,
            positions: Optional[Tensor] = None, info: Optional[dict] = None) -> CollectiveVariable:
    """The encoder mean as a CV of positions: features → (fixed observation map) → encoder mean.

    ``features`` must give the VAE's data x (after ``observation``, e.g. Cartesian → polar). With ``positions``
    [N, n_atoms, 3] the CV is calibrated (suggested metadynamics ranges and widths).
    """
    encoder: nn.Module = EncoderMean(copy.deepcopy(vae.encoder)).eval()
    if observation is not None:
        encoder = nn.Sequential(observation, encoder)
    cv = CollectiveVariable(features, encoder, n_atoms, names=[f"z{k}" for k in range(vae.latent_dim)],
                            units="dimensionless", method="flowvae",
                            info={"decoder": vae.decoder.name, "latent_dim": vae.latent_dim, **(info or {})})
    if positions is not None:
        cv.calibrate(torch.as_tensor(positions))
    return cv


class FlowVAEMethod:
    """Flow-prior VAE (Monroe & Shen, J. Chem. Phys. 157, 094116, 2022): a VAE whose prior is a normalizing
    flow and whose decoder is chosen among "mse", "condind", "autoregressive" and "flow"; the CV is the encoder
    mean. β_reg weights the KL term and tunes how much detail the latent space keeps.
    """

    name = "flowvae"
    summary = "VAE with a normalizing-flow prior and a tunable decoder; CV = encoder mean (Monroe & Shen 2022)"

    def fit(self, positions: Tensor, features: Feature, *, periodic: Optional[Sequence[bool]] = None,
            observation: Optional[nn.Module] = None, latent_dim: int = 1, decoder: str = "condind",
            beta: float = 1.0, epochs: int = 100, seed: int = 0, checkpoint: Optional[Path] = None,
            show_progress: bool = True, **options) -> CollectiveVariable:
        """Fit on positions [N, n_atoms, 3] (nm) described by ``features`` (+ optional ``observation`` map);
        ``periodic`` marks angle columns of the resulting data (default: none). ``options`` go to
        :func:`fit_vae`. Returns the calibrated CV."""
        positions = torch.as_tensor(positions, dtype=torch.get_default_dtype())
        if positions.dim() != 3 or positions.shape[-1] != 3:
            raise ValueError(f"positions must be [N, n_atoms, 3] (nm), got {tuple(positions.shape)}")
        with torch.no_grad():
            x = features(positions)
            x = observation(x) if observation is not None else x
        periodic = [False] * x.shape[1] if periodic is None else list(periodic)
        vae, history = fit_vae(x, periodic, latent_dim, decoder, beta, epochs, seed=seed, checkpoint=checkpoint,
                               show_progress=show_progress, **options)
        return make_cv(vae, features, positions.shape[1], observation, positions,
                       info={"beta": beta, "epochs": epochs, "seed": seed, "final": history[-1]})


method = FlowVAEMethod()
