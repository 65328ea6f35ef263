"""DynAE: collective variables from a dynamics-constrained autoencoder.

Wang, Wang, Evans & Tiwary, "From Latent Dynamics to Meaningful Representations", J. Chem. Theory Comput. 20,
3503 (2024). An autoencoder whose latent z must move like overdamped Langevin dynamics with *unit* diffusion:
over one lag τ the encoded moves Δz = φ(x_t+τ) − φ(x_t) are matched, bin by bin in latent space, to
f(z) + N(0, I) with a learned force field f (sliced-Wasserstein distance). Fixing the diffusion fixes the metric
of the latent space, so when the true slow coordinates diffuse isotropically the latent recovers them up to a
rotation, shift and global scale; see :func:`cvplug.metrics.isometry_mse`. The learned force field and a
learned diffusion M(z) (fitted by maximum likelihood) come with the result of :func:`train`.

>>> from cvplug.plugins import dynae                                         # doctest: +SKIP
>>> cv = dynae.fit(trajectory, n_components=2, lag=1, features=features)      # doctest: +SKIP
>>> cv.export("dynae.pt")                                                    # doctest: +SKIP
>>> result = dynae.train(trajectory, 2, 1, features=features)                # doctest: +SKIP
>>> result.force_field(result.encode(positions))                            # doctest: +SKIP

``model="autoencoder"`` and ``model="vae"`` (β-VAE) train the same encoder and decoder without the dynamics,
the baselines of the paper's Table 2.
"""
from __future__ import annotations

from dataclasses import fields

from cvplug.cv import CollectiveVariable
from cvplug.methods import BASE_OPTIONS, Method

from .binning import BinSampler, assign, bin_probabilities, regular_space
from .data import Pairs
from .losses import kl_to_standard_normal, sliced_wasserstein
from .networks import Encoder, LatentPrior
from .observation import Observed, ParabolicWarp
from .trainer import MODELS, DynAEResult, Settings, train

__all__ = ["DynAE", "fit", "train", "Settings", "DynAEResult", "Pairs", "MODELS", "Encoder", "LatentPrior",
           "sliced_wasserstein", "kl_to_standard_normal", "regular_space", "assign", "bin_probabilities",
           "BinSampler", "Observed", "ParabolicWarp"]

def fit(data, n_components: int = 2, lag: int = 1, **options) -> CollectiveVariable:
    """Train on ``data`` (trajectory, list of trajectories, :class:`Pairs` or TrainingData) and return the CV.

    ``lag`` in frames; ``options`` as for :func:`train` (features, seed, checkpoint, model, beta, epochs …).
    """
    return train(data, n_components, lag, **options).cv


class DynAE(Method):
    """DynAE as a cvplug method: trains on the data's lag pairs; ``model`` is the :class:`DynAEResult`
    (encoder, decoder, latent force field and diffusion, loss history). Options: the :class:`Settings` fields
    (model, beta, epochs, groups, batch, d_min, gamma, n_directions, learning_rate, hidden, prior_hidden).
    Each fit trains afresh on all the data; ``work_dir`` holds the checkpoint, so an interrupted fit resumes.
    Trains on a CUDA GPU where one is visible (``device`` option)."""

    name = "dynae"
    summary = "dynamics-constrained autoencoder: latent with unit-diffusion Langevin dynamics (Wang et al. 2024)"
    needs = ("pairs",)
    devices = ("cpu", "cuda")

    def __init__(self, n_components: int = 2, **options):
        super().__init__(n_components, **{k: options.pop(k) for k in BASE_OPTIONS if k in options})
        Settings(n_components=n_components, **options).check()
        self.settings = options

    @classmethod
    def options(cls) -> dict:
        """The constructor's options with their defaults, the :class:`Settings` fields included."""
        settings = {f.name: f.default for f in fields(Settings) if f.name not in ("n_components", "lag")}
        return {**super().options(), **settings}

    def fit(self, data) -> "DynAE":
        """Train on the lag pairs of ``data`` (a TrainingData); sets ``cv`` and ``model``; returns self."""
        result = train(data, self.n_components, data.lag, seed=self.seed, checkpoint=self.checkpoint("dynae.ckpt"),
                       progress=self.progress, device=self.training_device(), **self.settings)
        result.cv.periodic_box = data.spec.periodic
        self.cv, self.model = result.cv, result
        return self
