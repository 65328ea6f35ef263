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
