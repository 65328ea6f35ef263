"""Round reports (FES along a CV, basins, transitions) and the training data the core hands to methods."""
import warnings

import numpy as np
import pytest
import torch

from cvplug import systems
from cvplug.data import DegenerateInputWarning, TrainingData
from cvplug.features import Cartesians, PairwiseDistances
from cvplug.report import count_transitions, fes_basins, round_report, weighted_fes


def test_weights_undo_a_bias_in_the_histogram_fes():
    """Uniform samples on [−2, 2] weighted by exp(−F) give F = x² back (kT), up to sampling noise."""
    x = np.random.default_rng(0).uniform(-2, 2, size=(200_000, 1))
    edges = [np.linspace(-2, 2, 21)]
    free = weighted_fes(x, np.exp(-x[:, 0] ** 2), edges)
    centres = (edges[0][1:] + edges[0][:-1]) / 2
    exact = centres ** 2 - (centres ** 2).min()
    assert np.abs(free - exact).max() < 0.1


def test_two_wells_give_two_basins_split_at_the_barrier():
    x = np.linspace(-2, 2, 41)
    free = 4 * (x ** 2 - 1) ** 2 + 0.1 * np.sin(20 * x) ** 2  # 4 kT barrier, ripples far below DEPTH
    basins = fes_basins(free)
    assert len(basins) == 2
    assert x[basins[0][1]] == pytest.approx(-1, abs=0.1) and x[basins[1][1]] == pytest.approx(1, abs=0.1)
    assert basins[0][2] + 1 == basins[1][0] and x[basins[0][2]] == pytest.approx(0, abs=0.1)
    assert len(fes_basins(0.3 * x ** 2 + 0.2 * np.cos(8 * x))) == 1  # bumps < 1.5 kT are not basins


def test_transitions_are_counted_between_cores_only():
    edges = np.linspace(-2, 2, 41)
    centres = (edges[1:] + edges[:-1]) / 2
    free = 4 * (centres ** 2 - 1) ** 2
    basins = fes_basins(free)
    # left, a recrossing of the barrier top (0.05) that returns left, right, left: 2 transitions
    series = np.array([-1.0, -0.9, 0.05, -1.1, -1.0, 0.9, 1.0, 0.1, -1.0])
    assert count_transitions([series], free, edges, basins) == 2
    assert count_transitions([series[:5], series[5:]], free, edges, basins) == 1  # none across trajectories


def test_round_report_numbers():
    rng = np.random.default_rng(1)
    values = [np.concatenate([rng.normal(-1, 0.1, (50, 1)), rng.normal(1, 0.1, (50, 1))])]
    report, fes = round_report(values, [np.ones(100)], 0, [None], ["cv0"], sampled_ps=100.0, md_seconds=10.0,
                               peptide_phi=[np.where(np.arange(100)[:, None] < 25, 1.0, -1.0)])
    assert report["ns_per_day"] == pytest.approx(0.1 / 10 * 86400)
    assert report["fes_basins"] == 2 and report["transitions_this_round"] == 1
    assert report["phi_positive_fraction"] == [0.25]
    assert np.nanmin(fes["fes_1d"][0]) == 0


@pytest.mark.filterwarnings("ignore::cvplug.data.DegenerateInputWarning")
def test_training_data_holds_saved_atoms_and_scatters_them_for_features():
    spec = systems.load("ala2-vacuum")
    atoms = np.arange(4, 18)
    frames = [np.repeat(spec.positions[atoms][None], 6, 0).astype(np.float32)]
    frames[0][:, 0] += np.arange(6)[:, None] * 0.01
    data = TrainingData(spec, PairwiseDistances(pairs=[(4, 6), (6, 8)]), frames, atoms, lag=2)
    first, second = data.pairs()
    expected = np.linalg.norm(frames[0][:, 0] - frames[0][:, 2], axis=1)  # atoms 4 and 6 are saved as 0 and 2
    assert first.shape == (4, 2) and np.allclose(first[:, 0], expected[:4]) and np.allclose(second[:, 0],
                                                                                          expected[2:])
    positions = data.sample_positions()
    assert positions.shape == (6, 22, 3) and torch.allclose(positions[0, 0], torch.tensor(spec.positions[0],
                                                                                           dtype=torch.float32))
    with pytest.raises(ValueError, match="do not hold"):
        TrainingData(spec, PairwiseDistances(pairs=[(0, 6)]), frames, atoms)


def test_constant_features_and_a_collapsed_tica_component_are_reported():
    from cvplug.methods import create

    spec = systems.load("three-well")
    rng = np.random.default_rng(0)
    x = np.zeros((200, 1, 3), dtype=np.float32)
    x[:, 0, 0] = np.cumsum(rng.normal(size=200)) * 0.05  # y stays exactly 0: a constant feature
    data = TrainingData.from_trajectories([x], spec, Cartesians([0], components=(0, 1)))
    with pytest.warns(DegenerateInputWarning, match="constant"):
        data.feature_trajectories()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        with pytest.raises(ValueError, match="independent components"):
            create("tica", {"n_components": 2}).fit(data)
