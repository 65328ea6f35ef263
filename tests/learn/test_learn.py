import json

import numpy as np
import pytest

from cvplug import load_cv
from cvplug.learn import LearnSettings, learn
from cvplug.constants import MOLAR_GAS_CONSTANT

SETTINGS = dict(method="tica", steps_per_round=1500, report_every=10, n_components=1, height=0.5, frequency=100,
                platform="Reference")


def test_later_rounds_inherit_the_earlier_hills_on_the_new_cv(tmp_path):
    import torch

    from cvplug import systems
    from cvplug.learn import round_frames

    learn("three-well", tmp_path, LearnSettings(rounds=3, **SETTINGS), progress=False)
    inherited = np.load(tmp_path / "round_2" / "hills" / "inherited.npy")
    own = np.load(tmp_path / "round_1" / "hills" / "hills.0.npy")
    assert inherited.shape == own.shape == (15, 2)
    spec = systems.load("three-well")
    positions, _ = round_frames(tmp_path / "round_1", spec)
    cv1 = load_cv(tmp_path / "round_1" / "cv.pt")  # the CV that biases round 2
    with torch.no_grad():  # hill i sits at frame 10(i + 1) - 1
        expected = cv1(torch.as_tensor(positions[9::10])).double().numpy()[:, 0]
    np.testing.assert_allclose(inherited[:, 0], expected, rtol=1e-6)
    # heights: well-tempered deposition replayed in order on the new CV, h_i = h0 exp(−V_{<i}(s_i)/k_B ΔT)
    width = cv1.info["bias_width"][0]
    delta_kT = MOLAR_GAS_CONSTANT * spec.temperature * (LearnSettings().bias.bias_factor - 1)
    for i in (0, 7, 14):
        previous = (inherited[:i, 1] * np.exp(-0.5 * ((expected[i] - expected[:i]) / width) ** 2)).sum()
        assert inherited[i, 1] == pytest.approx(SETTINGS["height"] * np.exp(-previous / delta_kT), rel=1e-3)


def test_learn_rounds_write_cvs_and_resume(tmp_path):
    first = learn("three-well", tmp_path, LearnSettings(rounds=1, **SETTINGS), progress=False)
    assert len(first) == 1 and (tmp_path / "round_0" / "cv.pt").exists()
    cv0 = load_cv(tmp_path / "round_0" / "cv.pt")
    assert cv0.method == "tica" and cv0.n_components == 1
    # "interrupted" after round 0: asking for 2 rounds continues with round 1 only
    summaries = learn("three-well", tmp_path, LearnSettings(rounds=2, **SETTINGS), progress=False)
    assert [s["round"] for s in summaries] == [0, 1]
    assert summaries[0] == first[0]
    round1 = tmp_path / "round_1"
    assert json.loads((round1 / "metadynamics.json").read_text())["engine"] == "hills"
    colvar = np.loadtxt(round1 / "colvar.dat")
    assert colvar.shape == (150, 3) and colvar[-1, 2] > 0  # biased along round 0's CV
    summary = summaries[1]
    assert summary["frames"] == 150 and summary["sampled_ps"] == pytest.approx(1.5)  # 1500 steps of 1 fs
    assert summary["cv"]["tic0"]["max"] > summary["cv"]["tic0"]["min"] and summary["fes_basins"] >= 1
    fes = np.load(round1 / "fes_cv.npz")
    assert str(fes["units"]) == "kT" and np.nanmin(fes["fes0"]) == 0 and (round1 / "fes_cv.png").exists()


def test_method_without_trajectory_training_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown CV method"):
        learn("three-well", tmp_path, LearnSettings(method="nonexistent"))


def test_online_mode_replaces_the_cv_without_restarting(tmp_path):
    from cvplug.online import learn_online

    result = learn_online("three-well", tmp_path, method="tica", steps=1500, warmup_steps=500, update_every=500,
                          buffer_frames=100, report_every=10, n_components=1, height=0.5, frequency=100, bias_factor=8.0,
                          platform="Reference", progress=False)
    assert result["updates"] == [500, 1000]
    assert sorted(p.name for p in tmp_path.glob("cv_*.pt")) == ["cv_0.pt", "cv_1000.pt", "cv_500.pt"]
    colvar = result["colvar"]
    np.testing.assert_allclose(np.diff(colvar[:, 0]), 0.01)  # one uninterrupted trajectory, 10 steps of 1 fs
    assert result["hills"] == 15 and colvar[-1, -1] > 0


def test_online_mode_changes_the_cv_and_stays_stable(tmp_path):
    """Alanine dipeptide in vacuum, Langevin at 300 K: the CV map changes at each update, energies stay finite, and
    the instantaneous temperature keeps to the target within the thermostat's noise, with no drift.

    The noise, measured with negligible hills (0.01 kJ/mol) over the same 12 ps: 2-ps block means of T/T0 between
    0.86 and 1.17, 6-ps halves between 0.90 and 1.07 (friction 1/ps lets T wander for picoseconds). The bounds,
    0.25 on each half and on their difference, are about 3.5 standard deviations of a half's mean."""
    import torch

    from cvplug import systems
    from cvplug.online import learn_online
    from cvplug.trajectory import load_trajectory, trajectory_positions

    result = learn_online("ala2-vacuum", tmp_path, method="tica", steps=6000, warmup_steps=5000, update_every=2000,
                          buffer_frames=200, report_every=10, n_components=1, height=1.2, frequency=500, bias_factor=8.0,
                          platform="Reference", progress=False)
    assert result["updates"] == [2000, 4000]
    spec = systems.load("ala2-vacuum")
    frames = torch.as_tensor(trajectory_positions(load_trajectory(tmp_path / "warmup.dcd"), spec))
    with torch.no_grad():  # the same configurations through each CV: retraining changed the map
        values = [load_cv(tmp_path / f"cv_{step}.pt")(frames) for step in (0, 2000, 4000)]
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(values, values[1:]))
    _, potential, temperature = result["thermo"].T
    assert np.isfinite(potential).all() and np.isfinite(result["colvar"]).all()
    halves = temperature.reshape(2, -1).mean(axis=1) / spec.temperature
    assert np.all(np.abs(halves - 1) < 0.25) and abs(halves[1] - halves[0]) < 0.25, halves


def test_replacing_the_cv_moves_hills_to_the_new_cv_values(tmp_path):
    import torch

    from cvplug import CollectiveVariable, systems
    from cvplug.metad import build_metadynamics
    from cvplug.features import Cartesians

    def linear(weight):
        encoder = torch.nn.Linear(2, 1, bias=False).double()
        with torch.no_grad():
            encoder.weight.copy_(torch.tensor([weight]))
        return CollectiveVariable(Cartesians([0], components=(0, 1)), encoder, n_atoms=1,
                                  info={"bias_range": [[-3, 3]], "bias_width": [0.2]})

    run = build_metadynamics(systems.load("three-well"), linear([1.0, 0.0]), frequency=50, height=1.2,
                             bias_factor=8.0, platform="Reference", reprojectable=True)
    run.step(500)
    deposits = np.stack(run.engine.deposits)
    np.testing.assert_allclose(run.engine.bias.centers[:, 0], deposits[:, 0, 0])  # CV = x
    run.engine.replace_cv(linear([0.0, 2.0]))
    np.testing.assert_allclose(run.engine.bias.centers[:, 0], 2 * deposits[:, 0, 1])  # CV = 2y
    run.step(100)  # the Context keeps running with the new CV


@pytest.mark.slow
def test_killed_mid_round_resumes_without_gap_or_duplicate(tmp_path):
    """SIGKILL during a biased round, then the same command: the round continues from its last checkpoint, and its
    colvar, trajectory and hills come out as if the run had never stopped (one line, frame, hill per slot)."""
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "cvplug.cli", "learn", "three-well", "--method", "tica", "--rounds", "3",
               "--steps", "40000", "--report-every", "10", "--n-components", "1", "--platform", "Reference",
               "--out", str(tmp_path)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def mid_round() -> bool:  # a biased round past its first checkpoint (400 frames) and not finished
        for k in (1, 2):
            folder = tmp_path / f"round_{k}"
            colvar = folder / "colvar.dat"
            if (folder / "trajectory.state.xml").exists() and not (folder / "cv.pt").exists() \
                    and colvar.exists() and len(colvar.read_text().splitlines()) > 600:
                return True
        return False

    try:
        deadline = time.monotonic() + 300
        while not mid_round():
            assert run.poll() is None, "the run ended before it could be killed mid-round"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        run.kill()
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
    round0 = (tmp_path / "round_0" / "cv.pt").stat().st_mtime_ns
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert (tmp_path / "round_0" / "cv.pt").stat().st_mtime_ns == round0  # finished rounds are not redone
    assert [s["round"] for s in json.loads((tmp_path / "progress.json").read_text())] == [0, 1, 2]
    for k in (1, 2):
        folder = tmp_path / f"round_{k}"
        colvar = np.loadtxt(folder / "colvar.dat")
        np.testing.assert_allclose(colvar[:, 0], 0.01 * np.arange(1, 4001), atol=1e-6)  # ps: 10 steps of 1 fs
        assert np.load(folder / "trajectory.npz")["x"].shape == (4000, 2)
        assert np.load(folder / "hills" / "hills.0.npy").shape == (400, 2)  # a hill every 100 steps (the default)
