"""The "rkl" method: fit the coarse-grained model to a system's force field (no data) and export μφ as a CV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from cvplug.cv import CollectiveVariable
from cvplug.training import seed_everything

from .model import CoarseGrainedModel
from .targets import MoleculeTarget, Target, ToyTarget
from .tempering import AdaptiveTempering
from .trainer import Gamma, TrainingResult, train

__all__ = ["RklFit", "RklMethod", "method", "make_target", "build_model", "make_cv"]

MOLECULE_SCALE = 0.1  # nm: the networks' length unit for molecules


def make_target(spec, engine: str = "torch", **options) -> Target:
    """:class:`ToyTarget` for toy potentials (``engine`` "torch" or "bridge"), else :class:`MoleculeTarget`
    (always through the bridge). ``options`` go to the target (frame, constraint_k, bridge options)."""
    if spec.toy is not None:
        return ToyTarget(spec, engine, **options)
    return MoleculeTarget(spec, **options)


def build_model(target: Target, latent_dim: int, hidden: Sequence[int] = (64, 64), init_std: Optional[float] = None,
                init_gain: float = 0.1, input_gain: float = 1.0) -> CoarseGrainedModel:
    """A fresh model for ``target``: centred on its reference structure; molecules in units of 0.1 nm with
    σθ starting at 0.01 nm, toys in their own units with σθ starting at 1."""
    molecular = isinstance(target, MoleculeTarget)
    offset = target.reference if molecular else None
    scale = MOLECULE_SCALE if molecular else 1.0
    default_std = 0.1 * MOLECULE_SCALE if molecular else 1.0
    return CoarseGrainedModel(target.dim, latent_dim, offset, scale, hidden,
                              default_std if init_std is None else init_std, init_gain, input_gain)


def make_cv(model: CoarseGrainedModel, target: Target, n_atoms: int, calibration_samples: int = 2000,
            info: Optional[dict] = None) -> CollectiveVariable:
    """The encoder mean μφ as a CV of full-system positions, calibrated on samples of the trained q(x)."""
    cv = CollectiveVariable(target.features, model.encoder_mean(), n_atoms,
                            names=[f"z{k}" for k in range(model.latent_dim)], units="dimensionless",
                            method="rkl", info={"latent_dim": model.latent_dim, **(info or {})})
    with torch.no_grad():
        cv.calibrate(target.positions(model.sample(calibration_samples).x))
    return cv


@dataclass
class RklFit:
    """What :meth:`RklMethod.fit_model` returns: the CV, the generative model, its target and the training record."""

    cv: CollectiveVariable
    model: CoarseGrainedModel
    target: Target
    result: TrainingResult


class RklMethod:
    """Reverse-KL "embedded physics" coarse-graining: CVs learned from the force field alone.

    Schöberl, Zabaras & Koutsourelakis, "Embedded-physics machine learning for coarse-graining and collective
    variable discovery without data" (2020). A generative model q(x, z) = N(z; 0, I) N(x; μθ(z), diag σθ²) and an
    encoder r(z | x) are trained together by minimising an upper bound on KL(q(x) ‖ p(x)) (eq. 16) over samples of
    q, with forces from OpenMM, while β is tempered from ≈ 0 to the target (Algorithm 1). The encoder mean is the CV.
    """

    name = "rkl"
    summary = "CVs from the force field without data: reverse-KL coarse-graining with tempering (Schöberl et al.)"

    def fit(self, system_spec, latent_dim: int = 2, **options) -> CollectiveVariable:
        """Train on ``system_spec`` and return the CV; see :meth:`fit_model` for the options."""
        fitted = self.fit_model(system_spec, latent_dim, **options)
        fitted.target.close()
        return fitted.cv

    def fit_model(self, system_spec, latent_dim: int = 2, *, engine: str = "torch",
                  target_options: Optional[dict] = None, hidden: Sequence[int] = (64, 64),
                  init_std: Optional[float] = None, init_gain: float = 0.1, input_gain: float = 1.0,
                  schedule: Optional[AdaptiveTempering] = None,
                  data=None, gamma: Optional[Gamma] = None, seed: int = 0, work_dir=None,
                  show_progress: bool = True, **training) -> RklFit:
        """Train the model on ``system_spec`` and return the CV with the model, the target and the record.

        ``engine``: "torch" or "bridge" energies for toys (molecules always use the bridge); ``target_options``
        go to :func:`make_target`; ``hidden``, ``init_std``, ``init_gain``, ``input_gain`` to :func:`build_model`;
        ``schedule`` defaults to ``AdaptiveTempering()``. Mixed objective: ``data`` positions [N, n_atoms, 3]
        (nm) with ``gamma``. ``work_dir``: where the checkpoint goes (the run resumes from it). ``training``:
        steps_per_stage, final_steps, batch_size, lr, kappa, extra_latents, estimate_batch, data_batch, std_lr_factor,
        encoder_steps, stage_lr_floor, checkpoint_every (:func:`.trainer.train`).
        """
        target = make_target(system_spec, engine, **(target_options or {}))
        seed_everything(seed)
        model = build_model(target, latent_dim, hidden, init_std, init_gain, input_gain)
        coordinates = None if data is None else target.coordinates(np.asarray(data))
        checkpoint = Path(work_dir) / "rkl.ckpt" if work_dir is not None else None
        result = train(model, target, schedule or AdaptiveTempering(), data=coordinates, gamma=gamma, seed=seed,
                       checkpoint=checkpoint, show_progress=show_progress, **training)
        cv = make_cv(model, target, system_spec.n_atoms,
                     info={"force_calls": result.force_calls, "seed": seed, "system": system_spec.name})
        return RklFit(cv, model, target, result)


method = RklMethod()
