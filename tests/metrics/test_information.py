import numpy as np
import pytest

from cvplug.metrics import cut_at_emptiest, mutual_information, mutual_information_table


def test_gaussian_mutual_information_matches_the_formula(rng):
    rho = 0.8
    x = rng.normal(size=4000)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=4000)
    assert mutual_information(x, y) == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.04)
    assert mutual_information(x, rng.normal(size=4000)) < 0.02


def test_angles_are_cut_where_they_are_rarest(rng):
    theta = np.mod(rng.vonmises(np.pi, 2.0, 3000), 2 * np.pi)       # crowded around ±π
    x = np.cos(theta) + 0.1 * rng.normal(size=3000)
    shifted = cut_at_emptiest(theta)
    assert np.allclose(np.mod(shifted, 2 * np.pi), np.mod(theta, 2 * np.pi))
    assert 0 < shifted.min() - np.radians(-10) and shifted.max() - shifted.min() <= 2 * np.pi
    naive, periodic = mutual_information(x, np.angle(np.exp(1j * theta))), mutual_information(x, theta, True)
    rotated = mutual_information(x, np.mod(theta + 2.0, 2 * np.pi), True)
    assert periodic == pytest.approx(rotated, abs=0.05) and periodic > naive


def test_table_and_errors(rng):
    z = rng.normal(size=(500, 3))
    table = mutual_information_table(z, {"a": z[:, 1], "angle": np.arctan2(z[:, 2], 1.0)},
                                     periodic={"angle": True})
    assert table["a"].argmax() == 1 and table["angle"].argmax() == 2 and table["a"].shape == (3,)
    with pytest.raises(ValueError):
        mutual_information(np.ones(10), np.ones(9))
    with pytest.raises(ValueError):
        mutual_information(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), np.ones(5))
    with pytest.raises(ValueError):
        mutual_information_table(np.ones(5), {"a": np.ones(5)})
