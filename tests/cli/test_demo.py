import json

import numpy as np

from cvplug.demo import run_demo

TINY = dict(rounds=2, steps_per_round=2000, report_every=20, stride=2, height=2.0, frequency=100, bias_factor=10.0)


def test_demo_learn_loop_writes_fes_and_summary(tmp_path, capsys):
    result = run_demo(tmp_path, method="tica", settings=TINY, progress=False)
    out = capsys.readouterr().out
    assert "FES along phi" in out and "biased frames" in out
    assert result["frames"] == 100 and result["correlation"] is not None
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["basins_visited"] == result["basins_visited"]
    assert sum(result["basins_visited"].values()) <= 1.0
    fes = np.load(tmp_path / "fes_phi.npz")
    assert fes["free_energy"].shape == fes["reference"].shape == (73,) and np.nanmin(fes["free_energy"]) == 0
    for picture in ["fes_phi.png", "fes_phi_psi.png"]:
        assert (tmp_path / picture).stat().st_size > 10_000


def test_demo_analytic_cv_path(tmp_path):
    result = run_demo(tmp_path, method="analytic", settings=TINY, progress=False)
    assert result["frames"] == 200 and result["correlation"] is None
    assert (tmp_path / "analytic" / "hills" / "hills.0.npy").exists()
