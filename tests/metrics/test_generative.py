"""Generative-model metrics: quadrature expectations, bond lengths, radius of gyration, logistic accuracy."""
import numpy as np
import pytest
import torch

from cvplug.metrics import bond_length_deviation, boltzmann_grid, logistic_accuracy, radius_of_gyration


def test_boltzmann_grid_reproduces_gaussian_moments():
    points, weights = boltzmann_grid(lambda x: 0.5 * (x[:, 0] - 1.0) ** 2 + 2.0 * x[:, 1] ** 2,
                                     [(-9.0, 11.0), (-5.0, 5.0)], beta=2.0, n=401)
    assert points.shape == (401 ** 2, 2) and weights.sum() == pytest.approx(1.0)
    mean = weights @ points
    variance = weights @ (points - mean) ** 2
    assert mean == pytest.approx([1.0, 0.0], abs=1e-9)
    assert variance == pytest.approx([0.5, 0.125], rel=1e-6)       # 1/(β k) for k = 1 and 4
    with pytest.raises(ValueError):
        boltzmann_grid(lambda x: x[:, 0], [(0.0, 1.0)], beta=0.0)


def test_bond_length_deviation_is_the_mean_shift_of_mean_lengths():
    reference = np.zeros((2, 3, 3))
    reference[:, 1, 0] = [0.10, 0.12]          # bond 0–1: mean 0.11 nm
    reference[:, 2, 0] = [0.30, 0.30]          # bond 1–2: mean 0.19 nm
    stretched = reference.copy()
    stretched[:, 2, 0] += 0.02                 # bond 1–2 +0.02 nm, bond 0–1 unchanged
    assert bond_length_deviation(stretched, reference, [(0, 1), (1, 2)]) == pytest.approx(0.01)
    assert bond_length_deviation(reference, reference, [(0, 1)]) == 0.0
    with pytest.raises(ValueError, match="bond"):
        bond_length_deviation(reference, reference, [])


def test_radius_of_gyration_of_simple_shapes():
    square = np.array([[[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0]]]) + 5.0
    assert radius_of_gyration(square) == pytest.approx([np.sqrt(2.0)])
    pair = np.array([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    assert radius_of_gyration(pair, masses=np.array([2.0, 1.0])) == pytest.approx([np.sqrt(2.0)])  # centre at x = 1


def test_logistic_accuracy_separable_random_and_invalid():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 2))
    assert logistic_accuracy(z, z[:, 0] + 0.5 * z[:, 1] > 0.3) > 0.98
    assert logistic_accuracy(z, rng.random(2000) < 0.5) == pytest.approx(0.5, abs=0.05)
    noisy = logistic_accuracy(z[:, 0], z[:, 0] + rng.normal(size=2000) > 0)   # exact: 0.75 for equal variances
    assert noisy == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="both classes"):
        logistic_accuracy(z, np.ones(2000, dtype=bool))
