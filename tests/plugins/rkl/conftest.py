import importlib.util
from pathlib import Path

import pytest

DOUBLE_WELL = Path(__file__).resolve().parents[3] / "benchmarks" / "reproductions" / "rkl" / "double_well.py"


@pytest.fixture(scope="session")
def double_well():
    """The double-well reproduction (benchmarks/reproductions/rkl/double_well.py) as a module: its settings,
    exact statistics and acceptance judge."""
    spec = importlib.util.spec_from_file_location("rkl_double_well", DOUBLE_WELL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
