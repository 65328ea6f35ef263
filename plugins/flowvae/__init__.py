"""Flow-prior VAEs with tunable decoders, latent-space metrics and VAE-based Monte Carlo.

Monroe & Shen, "Systematic control of collective variables learned from variational autoencoders",
J. Chem. Phys. 157, 094116 (2022). The estimator registered as "flowvae" is :class:`FlowPriorVAE`.

>>> from cvplug.plugins.flowvae import fit_vae, make_cv          # doctest: +SKIP
>>> vae, history = fit_vae(x, periodic=[False, False], n_components=1, decoder="flow", beta=1.0)  # doctest: +SKIP
"""
from .decoders import DECODERS, AutoregressiveDecoder, CondIndDecoder, Decoder, FlowDecoder, MSEDecoder, make_decoder
from .encoder import GaussianEncoder, InputEmbedding
from .internal import Angles, ZMatrix
from .method import FlowPriorVAE, build_vae, fit_vae, make_cv, periodic_columns
from .model import FlowVAE, Loss
from .prior import FlowPrior
from .scores import score
from .trainer import BetaSchedule, train
from .vae_mc import BATEnergy, VAEMonteCarlo

__all__ = ["FlowPriorVAE", "build_vae", "fit_vae", "make_cv", "periodic_columns", "FlowVAE", "Loss", "FlowPrior", "score",
           "GaussianEncoder", "InputEmbedding", "Decoder", "MSEDecoder", "CondIndDecoder",
           "AutoregressiveDecoder", "FlowDecoder", "DECODERS", "make_decoder", "BetaSchedule", "train",
           "VAEMonteCarlo", "BATEnergy", "ZMatrix", "Angles"]
