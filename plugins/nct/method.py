"""The "nct" method: fit a neural canonical transformation and return its slowest latent coordinates as a CV.

:func:`fit_nct` is the method's own API (positions or a system in, CV out); :class:`NCT` is the estimator
that ``cvplug learn`` and :mod:`cvplug.methods` use.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from cvplug import systems
from cvplug.cv import CollectiveVariable
from cvplug.features import Cartesians, Feature
from cvplug.methods import Method
from cvplug.systems import SystemSpec
from cvplug.training import seed_everything

from .coordinates import MassWeighting
from .flow import CoordinateFlow
from .inputs import (alignment_constraints, as_positions, feature_energy, feature_masses, hamiltonian_features,
                     molecule_cartesians)
from .model import NCTModel
from .train import train_mle, train_variational

__all__ = ["NCT", "SlowModes", "fit_nct"]

CALIBRATION_FRAMES = 5000


class SlowModes(nn.Module):
    """The CV encoder: features x → latent coordinates Q = F(z(x)) of the chosen (slowest) oscillators.

    ``model`` is the whole trained :class:`NCTModel` (so ``cv.encoder.model`` can sample and interpolate).
    """

    def __init__(self, model: NCTModel, components: Sequence[int]):
        super().__init__()
        self.model = model
        self.register_buffer("components", torch.tensor(list(components), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """The chosen latent coordinates [B, n_components] (√amu·nm) of features x [B, n] (nm)."""
        return self.model.latent_coordinates(x).index_select(-1, self.components)


class NCT(Method):
    """Neural canonical transformation (Li, Dong, Zhang & Wang, PRX 10, 021020, 2020).

    A symplectic point transformation (Q, P) = (F(q), p ∂q/∂Q), F a RealNVP flow, maps phase space onto
    independent harmonic oscillators K = Σ (P_k² + ω_k² Q_k²)/2 with learned frequencies ω_k; the Q_k with the
    smallest ω_k are the slow collective variables. Trained by maximum likelihood on the data's frames (momenta
    drawn from the Maxwell–Boltzmann distribution) or, without frames (or ``training="variational"``),
    variationally from the Hamiltonian. ``model`` is the trained :class:`NCTModel`.

    The transformation acts on Cartesians: when the data's features are not Cartesian (e.g. backbone torsions),
    the NCT uses the Kabsch-aligned heavy-atom Cartesians of the molecule instead.

    Options: ``training`` ("auto", "mle" or "variational"); ``energy``, ``layers``, ``hidden``, ``depth``,
    ``rotation_every``, ``steps``, ``batch``, ``lr``, ``bridge_options`` as for :func:`fit_nct`.

    >>> from cvplug import systems                                              # doctest: +SKIP
    >>> from cvplug.data import TrainingData                                    # doctest: +SKIP
    >>> nct = NCT(steps=1000).fit(TrainingData.from_system(systems.load("harmonic-chain")))  # doctest: +SKIP
    >>> nct.cv.info["frequencies"]                  # slowest ω_k, 1/ps          # doctest: +SKIP
    """

    name = "nct"
    summary = "Neural canonical transformation: symplectic RealNVP flow to harmonic oscillators; slowest modes (PRX 2020)"
    needs = ("frames", "system")

    def __init__(self, n_components: int = 2, *, training: str = "auto", energy: Optional[str] = None,
                 layers: int = 8, hidden: int = 64, depth: int = 2, rotation_every: int = 2, steps: int = 2000,
                 batch: int = 256, lr: float = 2e-3, bridge_options: Optional[dict] = None, **run):
        super().__init__(n_components, **run)
        if training not in ("auto", "mle", "variational"):
            raise ValueError(f"training must be 'auto', 'mle' or 'variational', not {training!r}")
        self.training = training
        self.fit_options = dict(energy=energy, layers=layers, hidden=hidden, depth=depth,
                                rotation_every=rotation_every, steps=steps, batch=batch, lr=lr,
                                bridge_options=bridge_options)

    def check(self, spec) -> None:
        """Raise ValueError when variational training is asked for a periodic molecular system."""
        if self.training == "variational" and spec.toy is None and spec.periodic:
            raise ValueError(f"variational NCT needs a non-periodic system; {spec.name} is periodic: use "
                             "training='mle' on frames")

    def fit(self, data) -> "NCT":
        """Train on ``data`` (frames: maximum likelihood, none: variational); sets ``cv``, ``model``; returns self."""
        variational = self.training == "variational" or (self.training == "auto" and not data.frames)
        options = dict(system=data.spec, n_components=self.n_components, seed=self.seed,
                       checkpoint=self.checkpoint("nct.ckpt"), progress=self.progress, **self.fit_options)
        if variational:
            self.cv = fit_nct(**options)
        else:
            features = data.features if isinstance(data.features, Cartesians) else molecule_cartesians(data.spec)
            cartesian = dataclasses.replace(data, features=features, _features_cache=None)
            self.cv = fit_nct(cartesian.sample_positions(data.n_frames), features=features, **options)
        self.cv.periodic_box = data.spec.periodic
        self.model = self.cv.encoder.model
        return self


def fit_nct(data=None, *, system: Union[str, SystemSpec], features: Optional[Feature] = None,
            masses=None, n_components: int = 2, energy: Optional[str] = None, layers: int = 8,
            hidden: int = 64, depth: int = 2, rotation_every: int = 2, steps: int = 2000, batch: int = 256,
            lr: float = 2e-3, seed: int = 0, checkpoint=None, progress: bool = True,
            bridge_options: Optional[dict] = None) -> CollectiveVariable:
    """Train an NCT and return the CV of its ``n_components`` slowest latent coordinates.

    Parameters
    ----------
    data : frames to learn from (mdtraj.Trajectory, cvplug ToyTrajectory, or positions [N, n_atoms, 3] in
        nm): maximum likelihood. None: variational training from the Hamiltonian of ``system``.
    system : a SystemSpec or a name for :func:`cvplug.systems.load`; gives masses, temperature, atoms.
    features : Cartesian features to transform (default: :func:`.inputs.molecule_cartesians` for data,
        :func:`.inputs.hamiltonian_features` for variational training).
    masses : amu per feature component (default: the particles' masses; required for non-Cartesian features).
    energy : variational only: "twin" (a toy's torch twin, the toys' default) or "openmm" (the force field
        through cvplug.bridge, the molecules' default); ``bridge_options`` go to OpenMMEnergy.
    layers, hidden, depth, rotation_every : the flow (:class:`.flow.CoordinateFlow`).
    steps, batch, lr, seed, checkpoint, progress : training (see :mod:`.train`); a checkpoint path makes
        an interrupted fit resume when called again with the same arguments.

    Returns
    -------
    CollectiveVariable
        The CV's ``info`` holds ``frequencies`` (ω of its components, 1/ps, slowest first),
        ``all_frequencies``, the training mode and final loss. ``cv.encoder.model`` is the trained NCTModel.
    """
    spec = systems.load(system) if isinstance(system, str) else system
    if n_components < 1:
        raise ValueError(f"n_components must be ≥ 1, got {n_components}")
    variational = data is None
    if features is None:
        features = hamiltonian_features(spec) if variational else molecule_cartesians(spec)
    masses = feature_masses(spec, features) if masses is None else torch.as_tensor(masses, dtype=torch.float64)
    constraints = alignment_constraints(features)
    seed_everything(seed)
    flow_options = dict(layers=layers, hidden=hidden, depth=depth, rotation_every=rotation_every)
    training = dict(steps=steps, batch=batch, lr=lr, seed=seed, checkpoint=checkpoint, progress=progress)
    if variational:
        backend = energy or ("twin" if spec.toy is not None else "openmm")
        energy_fn = feature_energy(spec, features, backend, **(bridge_options or {}))
        mean = features.reference.double() - features.reference.double().mean(0) if constraints is not None \
            else torch.zeros(features.n_out, dtype=torch.float64)
        coordinates = MassWeighting(mean.flatten(), masses, constraints)
        model = _model(coordinates, spec, flow_options, n_components, scale=1.0)
        history = train_variational(model, energy_fn, **training)
        positions = _sample_positions(model, spec, features)
    else:
        if energy is not None:
            raise ValueError("energy= selects the Hamiltonian of variational training; it is not used with data")
        positions = as_positions(spec, data)
        x = features(positions)
        coordinates = MassWeighting(x.mean(0), masses, constraints)
        coordinates.check_spread(x)
        x = x.to(torch.get_default_dtype())
        scale = (spec.kT / coordinates(x).var(0).mean()).sqrt().item()
        model = _model(coordinates, spec, flow_options, n_components, scale=scale)
        history = train_mle(model, x, **training)
    return _cv(model, features, spec, n_components, positions, history,
               dict(training="variational" if variational else "mle", **flow_options,
                    **{k: v for k, v in training.items() if k not in ("checkpoint", "progress")}))


def _model(coordinates: MassWeighting, spec: SystemSpec, flow_options: dict, n_components: int,
           scale: float) -> NCTModel:
    """The untrained model; its frequencies start spread over a decade around ``scale`` (1/ps), which breaks
    the symmetry between latent oscillators (equal starting frequencies trap symmetric systems, e.g. the
    ring, in a solution whose oscillators are all alike)."""
    if n_components > coordinates.dim:
        raise ValueError(f"n_components={n_components} exceeds the {coordinates.dim} NCT coordinates")
    initial = scale * torch.logspace(-0.5, 0.5, coordinates.dim, dtype=torch.float64)
    return NCTModel(coordinates, CoordinateFlow(coordinates.dim, **flow_options), kT=spec.kT,
                    initial_frequency=initial)


def _sample_positions(model: NCTModel, spec: SystemSpec, features) -> Tensor:
    """Positions [N, n_atoms, 3] of model samples (variational fits have no data to calibrate on)."""
    x = model.sample(CALIBRATION_FRAMES).double()
    positions = torch.zeros(len(x), spec.n_atoms, 3, dtype=torch.float64)
    positions[:, features.atoms.unsqueeze(1), features.components.unsqueeze(0)] = \
        x.reshape(len(x), len(features.atoms), len(features.components))
    return positions


def _cv(model: NCTModel, features, spec: SystemSpec, n_components: int, positions: Tensor,
        history: list[float], settings: dict) -> CollectiveVariable:
    order = model.slow_order()
    frequencies = model.latent.frequencies.detach().double()[order]
    cv = CollectiveVariable(
        features, SlowModes(model, order[:n_components].tolist()), n_atoms=spec.n_atoms,
        names=[f"Q{k + 1}" for k in range(n_components)], units="nm*sqrt(amu)", method="nct",
        periodic_box=spec.periodic,
        info={"frequencies": frequencies[:n_components].tolist(), "all_frequencies": frequencies.tolist(),
              "frequency_units": "1/ps", "kT": spec.kT, "final_loss": float(np.mean(history[-50:])),
              "coordinates": model.coordinates.dim, **settings})
    frames = positions[torch.linspace(0, len(positions) - 1, min(len(positions), CALIBRATION_FRAMES)).long()]
    cv.calibrate(frames)
    return cv
