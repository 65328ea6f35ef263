"""DynAE's default training length: ``epochs=None`` trains at least ``min_steps`` optimiser steps.

One epoch is ⌈pairs / (groups · batch)⌉ steps, so the old fixed 12 epochs gave 48 steps on 1 ns of alanine
dipeptide (4000 pairs) and a latent that missed φ or ψ. The slow test is the issue's acceptance on a cheaper
trajectory: ``dynae.fit(frames, features=...)`` with nothing else reaches a 10-nearest-neighbour R² ≥ 0.9 from
z to (sin, cos) of φ and of ψ on held-out frames, after 0.5 ns (≈ 1 min here on one thread). The full
three-seed acceptance on 1 ns is ``python benchmarks/reproductions/dynae/defaults.py``.
"""
import math

import numpy as np
import pytest
import torch

from cvplug import systems
from cvplug.features import Cartesians
from cvplug.metrics import knn_r2
from cvplug.plugins import dynae
from cvplug.simulate import make_simulation, simulate
from cvplug.trajectory import load_trajectory

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is fastest


def random_walk(frames: int) -> np.ndarray:
    steps = np.random.default_rng(0).normal(scale=0.01, size=(frames, 1, 3))
    return np.cumsum(steps, axis=0)


@pytest.mark.parametrize("frames, options, epochs", [
    (201, dict(min_steps=100), math.ceil(100 / 7)),  # 200 pairs / (4 · 8) → 7 steps per epoch
    (201, dict(min_steps=10), 12),                   # never fewer than 12 epochs
    (201, dict(min_steps=100, epochs=3), 3),         # an explicit epoch count is kept
])
def test_default_epochs_give_at_least_min_steps(frames, options, epochs):
    result = dynae.train(random_walk(frames), 2, 1, features=Cartesians([0]), groups=4, batch=8,
                         progress=False, **options)
    assert result.settings.epochs == epochs and len(result.history) == epochs
    assert dynae.Settings().epochs is None


@pytest.mark.slow
def test_default_fit_learns_phi_and_psi_of_alanine_dipeptide(tmp_path):
    spec = systems.load("ala2-implicit")
    path = simulate(spec, 250_000, tmp_path / "ala2", report_every=100, seed=1, progress=False,
                    simulation=make_simulation(spec, "CPU", seed=1, threads=1))  # 0.5 ns, frames every 0.2 ps
    trajectory = load_trajectory(path)
    split = int(0.8 * len(trajectory))
    heavy = list(spec.extras["heavy_atoms"])
    features = Cartesians(heavy, reference=torch.tensor(spec.positions[heavy], dtype=torch.float32))

    cv = dynae.fit(trajectory[:split], features=features, progress=False)  # seed 0; all else default

    with torch.no_grad():
        z = cv(torch.as_tensor(trajectory.xyz)).double().numpy()
    import mdtraj

    scores = {}
    for name in ("phi", "psi"):
        angle = mdtraj.compute_dihedrals(trajectory, [spec.extras[f"{name}_atoms"]])[:, 0]
        target = np.stack([np.sin(angle), np.cos(angle)], axis=1)
        scores[name] = knn_r2(z[:split], target[:split], z[split:], target[split:], k=10)
    assert scores["phi"] >= 0.9 and scores["psi"] >= 0.9, scores
