"""Each user example in examples/ runs end to end with a small budget, as a user would run it (a subprocess), and
writes what its docstring promises."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from cvplug import load_cv
from cvplug.trajectory import load_trajectory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *argv: str) -> str:
    """Run ``examples/<name>`` with ``argv``; returns its standard output."""
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *argv], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_tica_alanine_learns_and_biases(tmp_path):
    out = run_example("tica_alanine.py", "--steps", "2000", "--bias-steps", "200", "--out", str(tmp_path))
    timescale = float(out.split("TICA timescale (frames): [")[1].split("]")[0])
    assert 0 < timescale < 40                                  # 40 frames of 0.1 ps of training data
    cv = load_cv(tmp_path / "tica.pt")
    assert cv.method == "tica" and cv.names == ["tic0"] and cv.n_atoms == 22
    colvar = np.loadtxt(tmp_path / "bias" / "colvar.dat", ndmin=2)
    assert colvar.shape == (2, 3)                              # a line every 100 steps: time, tic0, bias
    assert np.allclose(colvar[:, 0], [0.2, 0.4]) and np.all(np.isfinite(colvar)) and np.all(colvar[:, 2] >= 0)


def test_own_system_learns_exports_and_attaches(tmp_path):
    out = run_example("own_system.py", "--steps", "2000", "--epochs", "2", "--md-steps", "50", "--out",
                      str(tmp_path))
    assert "z0 held near" in out
    cv = load_cv(tmp_path / "cv.pt")
    assert cv.method == "dynae" and cv.names == ["z0", "z1"] and cv.n_atoms == 22   # amber14 alanine, vacuum
    values = np.loadtxt(tmp_path / "restrained.csv", delimiter=",", ndmin=2)
    assert values.shape == (5, 2) and np.all(np.isfinite(values))


def test_custom_method_is_registered_and_whitens(tmp_path):
    out = run_example("custom_method.py", "--steps", "2000", "--out", str(tmp_path))
    assert "pca" in out.split("registered methods:")[1].splitlines()[0].split(", ")
    variance = [float(v) for v in out.split("principal component: [")[1].split("]")[0].split(",")]
    assert all(a >= b > 0 for a, b in zip(variance, variance[1:]))
    cv = load_cv(tmp_path / "pca.pt")
    assert cv.method == "pca" and cv.names == ["pc0", "pc1"]
    positions = torch.as_tensor(load_trajectory(tmp_path / "md.dcd").xyz)
    with torch.no_grad():
        z = cv(positions).double().numpy()
    assert np.allclose(z.mean(0), 0, atol=1e-4)                # centred and whitened on the training frames
    assert np.allclose(np.cov(z.T, bias=True), np.eye(2), atol=1e-3)
