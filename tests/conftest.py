import importlib.util
from pathlib import Path

import torch  # noqa: F401  (torch before openmm, always)
import numpy as np
import pytest

from cvplug import systems

RKL_DOUBLE_WELL = Path(__file__).resolve().parents[1] / "benchmarks" / "reproductions" / "rkl" / "double_well.py"
# The longest files (the reverse-KL double well, 400-600 s on one core; the FES checks), run first. pytest-xdist
# (--dist loadfile) hands out files in collection order only with --no-loadscope-reorder (the Makefile's); by
# default it sorts them by their number of tests, which started the reverse-KL file after 345 s of others and
# left the other core idle for its last 5 minutes.
LONGEST_FIRST = ("tests/plugins/rkl/test_rkl_slow.py", "tests/metad/test_run.py")


def pytest_collection_modifyitems(items):
    """Move the tests of :data:`LONGEST_FIRST` to the front, in that order; the rest keep theirs."""
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def ala2_frames(tmp_path_factory):
    """A short OBC2 alanine-dipeptide trajectory (mdtraj) from cvplug.simulate, on the Reference platform."""
    from cvplug.simulate import simulate
    from cvplug.trajectory import load_trajectory

    out = tmp_path_factory.mktemp("ala2") / "short"
    path = simulate(systems.load("ala2-implicit"), 2000, out, report_every=100, platform="Reference", progress=False)
    return load_trajectory(path)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (reproducible numbers, fair with ``-n`` workers); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mlp_cv():
    """``mlp_cv(dtype=torch.float64, seed=0)``: a 2-component MLP CV on the heavy-atom distances of alanine
    dipeptide (22 atoms), normalised on random positions; small enough for every CV test."""
    from cvplug import CollectiveVariable, Normalization
    from cvplug.features import PairwiseDistances

    def make(dtype=torch.float64, seed: int = 0) -> CollectiveVariable:
        torch.manual_seed(seed)
        features = PairwiseDistances(atoms=[1, 4, 5, 6, 8, 10, 14, 15, 16, 18])
        encoder = torch.nn.Sequential(torch.nn.Linear(45, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(dtype)
        data = features(torch.randn(50, 22, 3))
        return CollectiveVariable(features, encoder, n_atoms=22, normalization=Normalization.fit(data),
                                  method="test").to(dtype)

    return make


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


@pytest.fixture(scope="session")
def rkl_double_well():
    """The reverse-KL double-well reproduction (benchmarks/reproductions/rkl/double_well.py) as a module: its
    settings, exact statistics and acceptance judge."""
    spec = importlib.util.spec_from_file_location("rkl_double_well", RKL_DOUBLE_WELL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
