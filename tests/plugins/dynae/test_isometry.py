import numpy as np
import pytest

from cvplug.metrics import isometry_mse


def rotation(angle):
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def test_zero_for_a_rotated_shifted_copy(rng):
    truth = rng.normal(size=(500, 2)) * [2.0, 0.5]
    moved = truth @ rotation(0.7) + [3.0, -1.0]
    assert isometry_mse(moved, truth) == pytest.approx(0.0, abs=1e-12)
    assert isometry_mse(moved[:, ::-1], truth) == pytest.approx(0.0, abs=1e-12)  # reflections are allowed


def test_scale_is_only_forgiven_when_asked(rng):
    truth = rng.normal(size=(400, 2))
    scaled = 4.0 * truth @ rotation(-1.2) + 7.0
    assert isometry_mse(scaled, truth, scale=True, relative=True) == pytest.approx(0.0, abs=1e-12)
    # without the scale, the best rotation leaves E‖3 t‖² of error
    assert isometry_mse(scaled, truth) == pytest.approx(9.0 * (truth - truth.mean(0)).var(0).sum(), rel=1e-9)


def test_matches_a_brute_force_search_over_rotations_and_reflections(rng):
    truth = rng.normal(size=(300, 2))
    z = np.tanh(truth) + 0.1 * rng.normal(size=truth.shape)
    zc, tc = z - z.mean(0), truth - truth.mean(0)
    angles = np.linspace(0, 2 * np.pi, 4001)
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)], 1).reshape(-1, 2, 2)
    best = min(((np.einsum("nd,ade->ane", zc @ flip, rotations) - tc) ** 2).sum(-1).mean(-1).min()
               for flip in (np.eye(2), np.diag([1.0, -1.0])))
    assert isometry_mse(z, truth) == pytest.approx(best, rel=1e-4)  # the grid misses the optimum by < 1e-3 rad


def test_relative_error_is_one_for_unrelated_noise(rng):
    truth, noise = rng.normal(size=(20000, 2)), rng.normal(size=(20000, 2))
    assert isometry_mse(noise, truth, scale=True, relative=True) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("z, truth", [(np.zeros((5, 2)), np.zeros((5, 3))), (np.zeros(5), np.zeros(5)),
                                      (np.zeros((1, 2)), np.zeros((1, 2))),
                                      (np.full((3, 2), np.nan), np.zeros((3, 2)))])
def test_bad_input_raises(z, truth):
    with pytest.raises(ValueError):
        isometry_mse(z, truth)
