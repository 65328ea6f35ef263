"""DynAE scientific check (slow): on the three-well potential seen through (x, y) → (x, y + x²), the DynAE latent
recovers (x, y) up to a similarity and a plain autoencoder does not.

A cheap version of benchmarks/reproductions/dynae/three_well.py (20k instead of 150k frames, fewer and smaller
steps); the full acceptance numbers come from that script. With 20k frames (seed 1, training seed 0) the
relative isometry error was 0.058 (DynAE) against 0.318 (autoencoder); 40k frames took twice as long to simulate
for the same assertions.
"""
import pytest
import torch

from cvplug import systems
from cvplug.features import Cartesians
from cvplug.metrics import isometry_mse
from cvplug.plugins import dynae
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory


@pytest.mark.slow
def test_three_well_latent_is_isometric_to_the_truth_and_the_autoencoder_is_not(tmp_path, one_thread):
    path = simulate(systems.load("three-well"), 200_000, tmp_path / "tw", report_every=10, seed=1, progress=False)
    trajectory = load_trajectory(path)
    features = dynae.Observed(Cartesians([0], components=(0, 1)), dynae.ParabolicWarp())
    positions = torch.nn.functional.pad(torch.as_tensor(trajectory.x), (0, 1)).unsqueeze(1)
    errors = {}
    for model, options in (("dynae", dict(learning_rate=5e-3, groups=8)), ("autoencoder", {})):
        result = dynae.train(trajectory, 2, 1, features=features, model=model, seed=0, progress=False, **options)
        errors[model] = isometry_mse(result.encode(positions), trajectory.x, scale=True, relative=True)
    assert errors["dynae"] < 0.1, errors
    assert errors["autoencoder"] > 3 * errors["dynae"], errors
