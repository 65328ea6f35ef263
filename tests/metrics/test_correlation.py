import numpy as np
import pytest

from cvplug.metrics import circular_linear_correlation, knn_r2, unwrapped_angle_correlation


def test_circular_linear_correlation_limits(rng):
    theta = rng.uniform(-np.pi, np.pi, 5000)
    assert circular_linear_correlation(theta, 3 * np.cos(theta - 0.7) + 1) == pytest.approx(1.0, abs=1e-9)
    assert circular_linear_correlation(theta, rng.normal(size=5000)) < 0.05


def test_unwrapped_angle_correlation_finds_the_cut_of_an_unfolded_angle():
    theta = np.random.default_rng(0).uniform(-np.pi, np.pi, 4000)
    ramp = np.mod(theta - 1.0, 2 * np.pi)               # an angle unfolded with its cut at θ = 1
    r, cut = unwrapped_angle_correlation(theta, ramp)
    assert r > 0.999 and abs(np.angle(np.exp(1j * (cut - 1.0)))) < 0.05
    assert circular_linear_correlation(theta, ramp) < 0.79   # Mardia's coefficient cannot see it


def test_knn_r2_perfect_and_useless(rng):
    z = rng.uniform(size=(4000, 2))
    y = np.sin(3 * z[:, 0])
    assert knn_r2(z[:3000], y[:3000], z[3000:], y[3000:]) > 0.98
    noise = rng.normal(size=4000)
    assert knn_r2(z[:3000], noise[:3000], z[3000:], noise[3000:]) < 0.05
