import torch  # noqa: F401  (torch before openmm, always)
import numpy as np
import pytest

from cvplug import systems


@pytest.fixture(scope="session")
def ala2_frames(tmp_path_factory):
    """A short OBC2 alanine-dipeptide trajectory (mdtraj) from cvplug.simulate, on the Reference platform."""
    from cvplug.simulate import simulate
    from cvplug.trajectory import load_trajectory

    out = tmp_path_factory.mktemp("ala2") / "short"
    path = simulate(systems.load("ala2-implicit"), 2000, out, report_every=100, platform="Reference", progress=False)
    return load_trajectory(path)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv, *words)``: run the cvplug command, expect exit 2 and one error line (no traceback)
    holding every word; returns the line."""
    from cvplug.cli import main

    def run(argv, *words) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        for word in words:
            assert word in err, err
        return err

    return run
