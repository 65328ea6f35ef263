"""The "rkl" method: fit the coarse-grained model to a system's force field (no data) and export μφ as a CV."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from cvplug.cv import CollectiveVariable
from cvplug.methods import BASE_OPTIONS, Method
from cvplug.systems import resolve
from cvplug.training import seed_everything

from .model import CoarseGrainedModel, MixtureDecoderModel
from .targets import MoleculeTarget, Target, ToyTarget
from .tempering import AdaptiveTempering
from .trainer import Gamma, TrainingResult, train

__all__ = ["RklFit", "ReverseKL", "fit_model", "make_target", "build_model", "warm_start", "make_cv"]

MOLECULE_SCALE = 0.1  # nm: the networks' length unit for molecules


def make_target(spec, energy: str = "torch", **options) -> Target:
    """:class:`ToyTarget` for toy potentials (``energy`` "torch": the torch twin, or "bridge": OpenMM), else
    :class:`MoleculeTarget` (always through the bridge). ``spec``: a shipped name, a file path or a SystemSpec
    (:func:`cvplug.systems.resolve`). ``options`` go to the target (frame, constraint_k, bridge options)."""
    spec = resolve(spec)
    if spec.toy is not None:
        return ToyTarget(spec, energy, **options)
    return MoleculeTarget(spec, **options)


def build_model(target: Target, n_components: int, hidden: Sequence[int] = (64, 64), init_std: Optional[float] = None,
                init_gain: float = 0.1, input_gain: float = 1.0, mixture: int = 0,
                mixture_decoder: bool = False, mixture_spread: float = 2.0) -> CoarseGrainedModel:
    """A fresh model for ``target``: centred on its reference structure; molecules in units of 0.1 nm with
    σθ starting at 0.01 nm, toys in their own units with σθ starting at 1. ``mixture`` > 0: a learned
    Gaussian-mixture prior with that many components (:class:`.model.MixturePrior`; 0: the paper's N(0, I));
    ``mixture_decoder``: one decoder per component (:class:`.model.MixtureDecoderModel`, needs ``mixture`` ≥ 2);
    ``mixture_spread``: the components' initial distance from the origin of z."""
    molecular = isinstance(target, MoleculeTarget)
    offset = target.reference if molecular else None
    scale = MOLECULE_SCALE if molecular else 1.0
    default_std = 0.1 * MOLECULE_SCALE if molecular else 1.0
    kind = MixtureDecoderModel if mixture_decoder else CoarseGrainedModel
    return kind(target.dim, n_components, offset, scale, hidden, default_std if init_std is None else init_std,
                init_gain, input_gain, mixture, mixture_spread)


WARM_HOLDS = ("weights", "shape", "encoder")


def warm_start(model: MixtureDecoderModel, base: CoarseGrainedModel, data: torch.Tensor, seed: int = 0,
               hold: Sequence[str] = ("weights",), min_std: float = 0.1) -> None:
    """Start a fresh mixture-decoder ``model`` from a fitted single-decoder ``base`` (an option of ours): the
    encoder, every component's decoder and σθ are copies of ``base``'s, and the K prior components sit where
    ``base``'s encoder puts ``data`` (model coordinates [N, D], N ≥ K): k-means (scipy, seeded) on the encoder
    means, each component at its cluster's centre with the cluster's standard deviation (at least ``min_std``, in
    units of z) and weight the cluster's share. So the model starts as ``base`` with its latent space split where
    the data lie, and each component's decoder can move to its frames' basin without dragging the others.

    ``hold``: what training must leave as it is: "weights" (π stays the clusters' shares), "shape" (the
    components' means and widths), "encoder" (the CV stays ``base``'s)."""
    from scipy.cluster.vq import kmeans2

    k = len(model.decoder) if isinstance(model, MixtureDecoderModel) else 0
    if not k or base.prior is not None or len(data) < k \
            or (base.data_dim, base.n_components) != (model.data_dim, model.n_components):
        raise ValueError("warm_start needs a mixture-decoder model, a base with the N(0, I) prior and the same "
                         f"dimensions, and at least {k} data points")
    if not set(hold) <= set(WARM_HOLDS):
        raise ValueError(f"hold takes {', '.join(WARM_HOLDS)}, got {', '.join(hold)}")
    with torch.no_grad():
        z = base.encode(torch.as_tensor(data, dtype=base.offset.dtype))[0].double().numpy()
        centres, label = kmeans2(z, k, seed=seed, minit="++")
        model.encoder.load_state_dict(base.encoder.state_dict())
        for decoder in model.decoder:
            decoder.load_state_dict(base.decoder.state_dict())
        model.log_std.copy_(base.log_std.expand_as(model.log_std))
        shares = np.bincount(label, minlength=k).clip(min=1) / len(z)
        spreads = [z[label == j].std(0) if (label == j).sum() > 1 else np.zeros(z.shape[1]) for j in range(k)]
        model.prior.means.copy_(torch.as_tensor(centres))
        model.prior.log_std.copy_(torch.as_tensor(np.log(np.maximum(spreads, min_std))))
        model.prior.logits.copy_(torch.as_tensor(np.log(shares)))
    held = {"weights": [model.prior.logits], "shape": [model.prior.means, model.prior.log_std],
            "encoder": list(model.encoder.parameters())}
    for name in hold:
        for parameter in held[name]:
            parameter.requires_grad_(False)


def make_cv(model: CoarseGrainedModel, target: Target, n_atoms: int, calibration_samples: int = 2000,
            info: Optional[dict] = None) -> CollectiveVariable:
    """The encoder mean μφ as a CV of full-system positions, calibrated on samples of the trained q(x)."""
    cv = CollectiveVariable(target.features, model.encoder_mean(), n_atoms,
                            names=[f"z{k}" for k in range(model.n_components)], units="dimensionless",
                            method="rkl", info={"n_components": model.n_components, **(info or {})})
    with torch.no_grad():
        cv.calibrate(target.positions(model.sample(calibration_samples).x))
    return cv


@dataclass
class RklFit:
    """What :func:`fit_model` returns: the CV, the generative model, its target and the training record."""

    cv: CollectiveVariable
    model: CoarseGrainedModel
    target: Target
    result: TrainingResult


def fit_model(spec, n_components: int = 2, *, energy: str = "torch", target_options: Optional[dict] = None,
              hidden: Sequence[int] = (64, 64), init_std: Optional[float] = None, init_gain: float = 0.1,
              input_gain: float = 1.0, mixture: int = 0, mixture_decoder: bool = False, mixture_spread: float = 2.0,
              schedule: Optional[AdaptiveTempering] = None, data=None,
              gamma: Optional[Gamma] = None, base: Optional[CoarseGrainedModel] = None,
              hold: Sequence[str] = ("weights",), seed: int = 0, work_dir=None, progress: bool = True,
              **training) -> RklFit:
    """Train the model on ``spec`` (a shipped name, a file path or a SystemSpec) and return the CV with the
    model, the target and the record.

    ``n_components``: the latent dimension d (the CV's components). ``energy``: "torch" or "bridge" energies for
    toys (molecules always use the bridge); ``target_options``
    go to :func:`make_target`; ``hidden``, ``init_std``, ``init_gain``, ``input_gain``, ``mixture``,
    ``mixture_decoder``, ``mixture_spread`` to :func:`build_model`;
    ``schedule`` defaults to ``AdaptiveTempering()``. Mixed objective: ``data`` positions [N, n_atoms, 3]
    (nm) with ``gamma``. ``base``: a fitted single-decoder model to start a mixture decoder from, placed on
    ``data``, with ``hold`` what training leaves as it starts (:func:`warm_start`). ``work_dir``: where the
    checkpoint goes (the run resumes from it; one written for other settings, data or starting model is
    refused). ``training``: steps_per_stage, final_steps, batch_size, lr, kappa, extra_latents, estimate_batch,
    data_batch, std_lr_factor, encoder_steps, pretrain_steps, stage_lr_floor, energy_cap, weights_from_data,
    checkpoint_every (:func:`.trainer.train`).
    """
    spec = resolve(spec)
    target = make_target(spec, energy, **(target_options or {}))
    seed_everything(seed)
    model = build_model(target, n_components, hidden, init_std, init_gain, input_gain, mixture, mixture_decoder,
                        mixture_spread)
    coordinates = None if data is None else target.coordinates(np.asarray(data))
    if base is not None:
        if coordinates is None:
            raise ValueError("base needs data: the mixture's components are placed on the data frames")
        warm_start(model, base, coordinates, seed, hold)
    checkpoint = Path(work_dir) / "rkl.ckpt" if work_dir is not None else None
    result = train(model, target, schedule or AdaptiveTempering(), data=coordinates, gamma=gamma, seed=seed,
                   checkpoint=checkpoint, progress=progress, **training)
    cv = make_cv(model, target, spec.n_atoms,
                 info={"force_calls": result.force_calls, "seed": seed, "system": spec.name})
    return RklFit(cv, model, target, result)


_TRAINING = [name for name, p in inspect.signature(train).parameters.items()
             if p.kind == p.KEYWORD_ONLY and name not in ("data", "gamma", "seed", "checkpoint", "progress")]


class ReverseKL(Method):
    """Reverse-KL "embedded physics" coarse-graining: CVs learned from the force field alone.

    Schöberl, Zabaras & Koutsourelakis, "Embedded-physics machine learning for coarse-graining and collective
    variable discovery without data" (2020). A generative model q(x, z) = N(z; 0, I) N(x; μθ(z), diag σθ²) and an
    encoder r(z | x) are trained together by minimising an upper bound on KL(q(x) ‖ p(x)) (eq. 16) over samples of
    q, with forces from OpenMM, while β is tempered from ≈ 0 to the target (Algorithm 1). The encoder mean is the
    CV; ``model`` is the :class:`RklFit` (CV, generative model, target, training record).

    It reads the system, not the frames: the CV's inputs are the molecule's Cartesians in an internal frame
    (:class:`.frame.RigidFrame`), whatever the data's features. With ``data_frames`` > 0 it also uses that many
    of the data's frames in the mixed objective of eq. 39, weighted by ``gamma``. Options: ``max_step``
    (largest tempering step Δβ; 0.025, which kept the double well's minor mode where the paper's 0.1 lost it),
    ``energy`` (toys: "torch" or "bridge"), ``frame``, ``threads``, ``hidden``, ``init_std``, ``init_gain``,
    ``input_gain``, ``mixture`` (a learned mixture prior with that many components; 0: the paper's N(0, I)),
    ``mixture_decoder`` (one decoder per mixture component), ``mixture_spread`` (the components' initial distance
    from the origin of z),
    ``start`` (first β of the tempering, relative to the target's), and the trainer's keywords
    (steps_per_stage, final_steps, batch_size, lr, kappa, pretrain_steps, …).
    Molecules must be non-periodic (no solvent box).
    """

    name = "rkl"
    summary = "CVs from the force field without data: reverse-KL coarse-graining with tempering (Schöberl et al.)"
    needs = ("system",)

    def __init__(self, n_components: int = 2, *, data_frames: int = 0, gamma: float = 0.5,
                 max_step: float = 0.025, energy: str = "torch",
                 frame: Optional[Sequence[int]] = None, threads: int = 1, hidden: Sequence[int] = (64, 64),
                 init_std: Optional[float] = None, init_gain: float = 0.1, input_gain: float = 1.0,
                 mixture: int = 0, mixture_decoder: bool = False, mixture_spread: float = 2.0,
                 start: float = AdaptiveTempering.start,
                 **options):
        run = {k: options.pop(k) for k in BASE_OPTIONS if k in options}
        super().__init__(n_components, **run)
        unknown = sorted(set(options) - set(_TRAINING))
        if unknown:
            raise ValueError(f"unknown option {', '.join(unknown)} for method 'rkl'")
        if int(data_frames) < 0 or not 0 < gamma <= 1:
            raise ValueError(f"data_frames must be ≥ 0 and gamma in (0, 1], got {data_frames} and {gamma}")
        if not isinstance(mixture_decoder, bool) or (mixture_decoder and int(mixture) < 2):
            raise ValueError(f"mixture_decoder must be true or false, and true needs mixture ≥ 2, got "
                             f"{mixture_decoder!r} with mixture {mixture}")
        self.data_frames, self.gamma = int(data_frames), float(gamma)
        self.schedule = AdaptiveTempering(start=float(start), max_step=float(max_step))
        self.target_options = {"threads": 1, "workers": int(threads)}
        if frame is not None:
            self.target_options["frame"] = tuple(frame)
        self.fit_options = dict(energy=energy, hidden=tuple(hidden), init_std=init_std, init_gain=init_gain,
                                input_gain=input_gain, mixture=int(mixture), mixture_decoder=mixture_decoder,
                                mixture_spread=float(mixture_spread), **options)

    @classmethod
    def options(cls) -> dict:
        defaults = inspect.signature(train).parameters
        return {**super().options(), **{name: defaults[name].default for name in _TRAINING}}

    def check(self, spec) -> None:
        if spec.toy is None and spec.periodic:
            raise ValueError(f"rkl learns non-periodic molecules only; {spec.name} has a periodic box (solvent?): "
                             "use implicit solvent or vacuum")

    def fit(self, data) -> "ReverseKL":
        frames = None
        if self.data_frames and data.frames:
            frames = data.sample_positions(self.data_frames).double().numpy()
        fitted = fit_model(data.spec, self.n_components,
                           target_options=self.target_options if data.spec.toy is None else None,
                           schedule=self.schedule, data=frames,
                           gamma=self.gamma if frames is not None else None, seed=self.seed,
                           work_dir=self.work_dir, progress=self.progress, **self.fit_options)
        fitted.target.close()
        self.cv, self.model = fitted.cv, fitted
        return self
