import json

import numpy as np
import pytest

from cvplug import load_cv
from cvplug.learn import LearnSettings, learn

SETTINGS = dict(method="tica", steps_per_round=1500, report_every=10, latent_dim=1, height=0.5, frequency=100,
                platform="Reference")


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
    assert summaries[1]["biased_rounds"]["frames"] == 150


def test_method_without_trajectory_training_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown CV method"):
        learn("three-well", tmp_path, LearnSettings(method="nonexistent"))
