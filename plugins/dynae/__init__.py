"""DynAE: collective variables from a dynamics-constrained autoencoder.

Wang, Wang, Evans & Tiwary, "From Latent Dynamics to Meaningful Representations", J. Chem. Theory Comput. 20,
3503 (2024). An autoencoder whose latent z must move like overdamped Langevin dynamics with *unit* diffusion:
over one lag τ the encoded moves Δz = φ(x_t+τ) − φ(x_t) are matched, bin by bin in latent space, to
f(z) + N(0, I) with a learned force field f (sliced-Wasserstein distance). Fixing the diffusion fixes the metric
of the latent space, so when the true slow coordinates diffuse isotropically the latent recovers them up to a
rotation, shift and global scale; see :func:`cvplug.metrics.isometry_mse`. The learned force field and a
learned diffusion M(z) (fitted by maximum likelihood) come with the result of :func:`train`.

>>> from cvplug.plugins import dynae                                         # doctest: +SKIP
>>> cv = dynae.fit(trajectory, latent_dim=2, lag=1, features=features)      # doctest: +SKIP
>>> cv.export("dynae.pt")                                                    # doctest: +SKIP
>>> result = dynae.train(trajectory, 2, 1, features=features)                # doctest: +SKIP
>>> result.force_field(result.encode(positions))                            # doctest: +SKIP

``model="autoencoder"`` and ``model="vae"`` (β-VAE) train the same encoder and decoder without the dynamics,
the baselines of the paper's Table 2.
"""
from __future__ import annotations

from cvplug.cv import CollectiveVariable

from .binning import BinSampler, assign, bin_probabilities, regular_space
from .data import Pairs
from .losses import kl_to_standard_normal, sliced_wasserstein
from .networks import Encoder, LatentPrior
from .observation import Observed, ParabolicWarp
from .rounds import fit_trajectories
from .trainer import MODELS, DynAEResult, Settings, train

__all__ = ["method", "fit", "train", "Settings", "DynAEResult", "Pairs", "MODELS", "Encoder", "LatentPrior",
           "sliced_wasserstein", "kl_to_standard_normal", "regular_space", "assign", "bin_probabilities",
           "BinSampler", "Observed", "ParabolicWarp"]


def fit(data, latent_dim: int = 2, lag: int = 1, **options) -> CollectiveVariable:
    """Train on ``data`` (trajectory, list of trajectories, or :class:`Pairs`) and return the CV.

    ``lag`` in frames; ``options`` as for :func:`train` (features, seed, checkpoint, model, beta, epochs …).
    """
    return train(data, latent_dim, lag, **options).cv


class _Method:
    name = "dynae"
    summary = "dynamics-constrained autoencoder: latent with unit-diffusion Langevin dynamics (Wang et al. 2024)"

    @staticmethod
    def fit(data, latent_dim: int = 2, lag: int = 1, **options) -> CollectiveVariable:
        return fit(data, latent_dim, lag, **options)

    train = staticmethod(train)
    fit_trajectories = staticmethod(fit_trajectories)


method = _Method()
