"""Scientific check of reverse-KL coarse-graining (Schöberl et al.) on the double well: the issue's acceptance.

examples/rkl_double_well.py runs the same training for three seeds and prints the table.
"""
import pytest
import torch

from cvplug import systems
from cvplug.plugins.rkl.double_well import failures, fit, report

pytestmark = pytest.mark.slow


@pytest.mark.xfail(strict=True, reason="not met yet: seed 0 gives x1 > 0 weight 0.0011 at β = 1 (exact 0.0083), "
                   "0.034 at β = 0.5 (exact 0.091), std x1 0.32 (0.52), |corr(z, x1)| 0.85; "
                   "see examples/rkl_double_well.py")
def test_double_well_statistics_match_quadrature():
    """β = 1: means and stds of x1, x2 within 0.1 of exact, x1 > 0 weight within ×2 of 0.0083; β = 0.5: x1 > 0
    weight within 0.03 of 0.091; |corr(z, x1)| ≥ 0.95 on exact samples."""
    torch.set_num_threads(1)
    spec = systems.load("double-well")
    fitted = fit(spec, seed=0, show_progress=False)
    numbers = report(fitted.model, fitted.result.snapshots, spec.toy.u)
    assert numbers["exact"]["weight_x1_pos"] == pytest.approx(0.0083, abs=1e-4)
    assert numbers["exact_half_beta_weight"] == pytest.approx(0.0908, abs=1e-4)
    assert failures(numbers) == []
