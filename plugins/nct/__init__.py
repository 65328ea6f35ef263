"""Neural canonical transformation (NCT) with symplectic flows, as a cvplug method.

Li, Dong, Zhang & Wang, "Neural Canonical Transformation with Symplectic Flows", PRX 10, 021020 (2020).

- :mod:`.coordinates` — mass-weighted, constraint-free coordinates z of the features;
- :mod:`.flow` — the coordinate flow F (zuko RealNVP couplings and rotations);
- :mod:`.canonical` — the symplectic point transformation (q, p) ↦ (F(q), p ∂q/∂Q);
- :mod:`.latent` — the harmonic latent Hamiltonian with learnable frequencies;
- :mod:`.model` — the two losses (variational free energy, phase-space likelihood), sampling, interpolation;
- :mod:`.train` — seeded, resumable trainers; :mod:`.inputs` — features, masses and energies of a system;
- :mod:`.method` — :func:`fit_nct` and the estimator :class:`NCT`, whose CV is the slowest latent coordinates.
"""
from .canonical import to_latent, to_physical
from .coordinates import MassWeighting
from .flow import CoordinateFlow
from .latent import HarmonicLatent
from .method import NCT, SlowModes, fit_nct
from .model import NCTModel
from .train import train_mle, train_variational

__all__ = ["NCT", "fit_nct", "NCTModel", "SlowModes", "to_latent", "to_physical", "MassWeighting", "CoordinateFlow",
           "HarmonicLatent", "train_mle", "train_variational"]
