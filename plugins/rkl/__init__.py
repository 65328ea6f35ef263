"""Reverse-KL "embedded physics" coarse-graining: collective variables from the force field, without data.

Schöberl, Zabaras & Koutsourelakis, "Embedded-physics machine learning for coarse-graining and collective
variable discovery without data" (arXiv:2002.10148, 2020). The estimator registered as "rkl" is
:class:`ReverseKL`; :func:`fit_model` is the method's own API.

>>> from cvplug.plugins.rkl import fit_model
>>> fitted = fit_model("double-well", n_components=1, progress=False)  # doctest: +SKIP
>>> x = fitted.model.sample(1000).x          # samples of the learned q(x)                    # doctest: +SKIP
>>> fitted.cv.export("rkl_cv.pt")           # the encoder mean as a TorchScript CV            # doctest: +SKIP

Modules: :mod:`.model` (q(z) q(x|z) and r(z|x); the N(0, I) prior or, optionally, a learned mixture),
:mod:`.objective` (eq. 16 bound and its tightened form, KL
estimate, mixed γ option), :mod:`.tempering` (Algorithm 1), :mod:`.gradnorm` (Appendix F), :mod:`.targets` and
:mod:`.frame` (what is learned: toy potentials, molecules in a body-fixed frame, energies through the bridge),
:mod:`.trainer`, :mod:`.method`.
"""
from .frame import RigidFrame
from .gradnorm import cap_gradient_norms, normalize_sample_gradients
from .method import ReverseKL, RklFit, build_model, fit_model, make_cv, make_target, warm_start
from .model import CoarseGrainedModel, MixtureDecoderModel, MixturePrior, Samples
from .objective import forward_kl, kl_estimate, log_marginal_bound, mixed, reverse_kl
from .targets import MoleculeTarget, Target, ToyTarget, springs_for_constraints
from .tempering import AdaptiveTempering
from .trainer import TrainingResult, train

__all__ = ["ReverseKL", "fit_model", "RklFit", "build_model", "warm_start", "make_cv", "make_target",
           "CoarseGrainedModel", "MixtureDecoderModel", "MixturePrior", "Samples", "reverse_kl", "log_marginal_bound",
           "forward_kl", "mixed", "kl_estimate", "AdaptiveTempering", "normalize_sample_gradients",
           "cap_gradient_norms", "Target", "ToyTarget", "MoleculeTarget", "RigidFrame", "springs_for_constraints",
           "TrainingResult", "train"]
