"""The NumPy CV evaluator agrees with TorchScript autograd, and is chosen only where it applies."""
import numpy as np
import pytest
import torch

from cvplug import CollectiveVariable, Normalization, load_cv, systems
from cvplug.cv import ANGLE
from cvplug.metad.fastcv import cv_evaluator, numpy_evaluator, torch_evaluator
from cvplug.features import Cartesians, Dihedrals, PairwiseDistances

SPEC = systems.load("ala2-vacuum")
HEAVY = list(SPEC.extras["heavy_atoms"])


def features(kind: str):
    reference = torch.tensor(SPEC.positions[HEAVY])
    return {"aligned": Cartesians(HEAVY, reference=reference), "aligned-xy": Cartesians(HEAVY, reference=reference,
                                                                                        components=[0, 1]),
            "raw": Cartesians(HEAVY), "distances": PairwiseDistances(HEAVY)}[kind]


def mlp_cv(kind: str, activation, dtype=torch.float64) -> CollectiveVariable:
    torch.manual_seed(0)
    feature = features(kind)
    n = feature.n_out
    encoder = torch.nn.Sequential(torch.nn.Linear(n, 16), activation(), torch.nn.Linear(16, 16), activation(),
                                  torch.nn.Linear(16, 2)).to(dtype)
    return CollectiveVariable(feature, encoder, SPEC.n_atoms, Normalization(torch.randn(n), torch.rand(n) + 0.5))


def perturbed(seed: int) -> np.ndarray:
    return SPEC.positions + 0.03 * np.random.default_rng(seed).standard_normal(SPEC.positions.shape)


@pytest.mark.parametrize("kind", ["aligned", "aligned-xy", "raw", "distances"])
@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.ReLU, torch.nn.SiLU, torch.nn.Sigmoid])
def test_numpy_value_and_pullback_equal_autograd(kind, activation):
    module = mlp_cv(kind, activation).compiled()
    fast, reference = numpy_evaluator(module), torch_evaluator(module)
    assert fast is not None
    for seed in range(3):
        x, g = perturbed(seed), np.random.default_rng(10 + seed).standard_normal(2)
        (s_fast, back_fast), (s_ref, back_ref) = fast(x), reference(x)
        np.testing.assert_allclose(s_fast, s_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(back_fast(g), back_ref(g), rtol=1e-9, atol=1e-12)


def test_alignment_gradient_through_a_reflected_optimum():
    """A reference that is the mirror image of the molecule makes the Kabsch fix (det = −1) active."""
    mirrored = SPEC.positions[HEAVY] * np.array([1.0, 1.0, -1.0])
    feature = Cartesians(HEAVY, reference=torch.tensor(mirrored))
    torch.manual_seed(1)
    cv = CollectiveVariable(feature, torch.nn.Sequential(torch.nn.Linear(30, 2)).double(), SPEC.n_atoms)
    module = cv.compiled()
    x, g = perturbed(7), np.array([0.3, -1.1])
    u, _, vh = np.linalg.svd((x[HEAVY] - x[HEAVY].mean(0)).T @ (mirrored - mirrored.mean(0)))
    assert np.linalg.det(u @ vh) < 0
    np.testing.assert_allclose(numpy_evaluator(module)(x)[1](g), torch_evaluator(module)(x)[1](g), rtol=1e-9,
                               atol=1e-12)


def test_float32_cv_file_is_evaluated_in_double(tmp_path):
    cv = mlp_cv("aligned", torch.nn.ReLU, torch.float32)
    module = load_cv(cv.export(tmp_path / "cv.pt")).compiled()
    x = perturbed(3)
    s_fast, _ = numpy_evaluator(module)(x)
    s_ref, _ = torch_evaluator(module)(x)
    np.testing.assert_allclose(s_fast, s_ref, rtol=1e-5, atol=1e-5)


def test_unsupported_parts_fall_back_to_torchscript():
    dihedral = CollectiveVariable(Dihedrals([SPEC.extras["phi_atoms"]]), torch.nn.Identity(), SPEC.n_atoms,
                                  periodic=[ANGLE])
    softplus = CollectiveVariable(features("raw"), torch.nn.Sequential(torch.nn.Linear(30, 2), torch.nn.Softplus()),
                                  SPEC.n_atoms)
    for cv in (dihedral, softplus):
        module = cv.compiled()
        assert numpy_evaluator(module) is None
        x = perturbed(0)
        np.testing.assert_allclose(cv_evaluator(module)(x)[0], cv(torch.tensor(x)).detach().double().numpy())
