"""TICA (the linear baseline): it finds the slow direction, not the widest one, and its timescale."""
import numpy as np
import pytest
import torch

from cvplug import load_cv, methods, systems
from cvplug.data import TrainingData
from cvplug.features import Cartesians


def ar1_frames(n: int, slow: float, fast: float, seed: int = 0) -> np.ndarray:
    """[n, 1, 3] positions (nm) of one particle: x an AR(1) process with coefficient ``slow`` (unit variance),
    y one with coefficient ``fast`` and 3× the spread, z constant."""
    rng = np.random.default_rng(seed)
    xy = np.zeros((n, 2))
    coefficients, spreads = np.array([slow, fast]), np.array([1.0, 3.0])
    noise = rng.normal(size=(n, 2)) * spreads * np.sqrt(1 - coefficients**2)
    for t in range(1, n):
        xy[t] = coefficients * xy[t - 1] + noise[t]
    return np.pad(xy, ((0, 0), (0, 1)))[:, None, :]


def test_tica_finds_the_slow_direction_and_its_timescale(tmp_path):
    spec = systems.load("double-well")
    frames = ar1_frames(40_000, slow=0.99, fast=0.1)
    data = TrainingData.from_trajectories([frames], spec, Cartesians([0], components=(0, 1)), lag=1)
    tica = methods.create("tica", {"n_components": 1}, progress=False).fit(data)
    weights = tica.cv.encoder.weight.detach().numpy()[0]
    assert abs(weights[0]) > 20 * abs(weights[1])             # x (slow), not y (3× wider but fast)
    expected = -1 / np.log(0.99)                               # implied timescale of the AR(1) process, frames
    assert tica.cv.info["timescales_frames"][0] == pytest.approx(expected, rel=0.15)
    loaded = load_cv(tica.cv.export(tmp_path / "tica.pt"))
    positions = torch.as_tensor(frames[:100])
    assert torch.allclose(loaded(positions).double(), tica.cv(positions).double().detach(), atol=1e-5)


def test_tica_refuses_more_components_than_the_features_hold():
    spec = systems.load("double-well")
    data = TrainingData.from_trajectories([ar1_frames(2000, 0.9, 0.1)], spec, Cartesians([0], components=(0,)))
    with pytest.raises(ValueError, match="independent components"):
        methods.create("tica", {"n_components": 2}).fit(data)
