"""TICA: the linear baseline for slow collective variables, via deeptime.

Time-lagged independent component analysis (Pérez-Hernández et al., J. Chem. Phys. 139, 015102, 2013;
Schwantes & Pande, JCTC 9, 2000, 2013) finds the linear combinations of features with maximal autocorrelation
at a lag time. deeptime estimates it; we export the projection as a TorchScript CV:
features → (x − mean) → linear map.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from deeptime.decomposition import TICA as DeeptimeTICA

from cvplug.cv import CollectiveVariable, Normalization
from cvplug.data import DegenerateInputWarning
from cvplug.methods import Method

__all__ = ["TICA"]


class TICA(Method):
    """TICA of the data's features at the data's lag; ``model`` is deeptime's ``CovarianceKoopmanModel``.

    Parameters
    ----------
    n_components : slowest independent components kept as the CV.
    epsilon : eigenvalue cutoff of the instantaneous covariance (deeptime), dimensionless; features whose
        variance falls below it are dropped from the whitening.
    """

    name = "tica"
    summary = "linear slow CVs by time-lagged independent component analysis (deeptime), a baseline"
    needs = ("pairs",)

    def __init__(self, n_components: int = 2, *, epsilon: float = 1e-6, **run):
        super().__init__(n_components, **run)
        self.epsilon = float(epsilon)

    def fit(self, data) -> "TICA":
        """Estimate TICA on the feature trajectories of ``data`` at its lag; sets ``cv`` and ``model``; returns self."""
        x = [f.double().numpy() for f in data.feature_trajectories() if len(f) > data.lag]
        if not x:
            raise ValueError(f"TICA needs a trajectory of more than lag = {data.lag} frames")
        model = DeeptimeTICA(lagtime=data.lag, dim=self.n_components, epsilon=self.epsilon).fit(x).fetch_model()
        coefficients = model.instantaneous_coefficients[:, :self.n_components]
        if coefficients.shape[1] < self.n_components:
            raise ValueError(f"TICA found only {coefficients.shape[1]} independent components (above epsilon = "
                             f"{self.epsilon}); ask for fewer or use features that vary more")
        projection = torch.nn.Linear(data.features.n_out, self.n_components, bias=False)
        with torch.no_grad():
            projection.weight.copy_(torch.as_tensor(coefficients.T))
        spread = (np.concatenate(x) - model.mean_0) @ coefficients
        collapsed = [k for k, s in enumerate(spread.std(0)) if s < 1e-3]
        if collapsed:
            warnings.warn(f"TICA components {collapsed} barely vary over the data (std {spread.std(0).min():.1e}, "
                          "unit variance expected): the features are nearly degenerate", DegenerateInputWarning)
        cv = CollectiveVariable(data.features, projection, data.spec.n_atoms,
                                Normalization(torch.as_tensor(model.mean_0), torch.ones(data.features.n_out)),
                                names=[f"tic{k}" for k in range(self.n_components)], method=self.name,
                                periodic_box=data.spec.periodic,
                                info={"lag_frames": data.lag,
                                      "timescales_frames": model.timescales(data.lag)[:self.n_components].tolist()})
        cv.calibrate(data.sample_positions())
        self.cv, self.model = cv, model
        return self
