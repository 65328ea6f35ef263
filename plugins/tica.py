"""TICA: the linear baseline for slow collective variables, via deeptime.

Time-lagged independent component analysis (Pérez-Hernández et al., J. Chem. Phys. 139, 015102, 2013;
Schwantes & Pande, JCTC 9, 2000, 2013) finds the linear combinations of features with maximal autocorrelation
at a lag time. We use deeptime's estimator and export the projection as a TorchScript CV:
features → (x − mean) → linear map. Features: Kabsch-aligned heavy-atom Cartesians for molecules (aligned to
the first frame), the natural coordinates for toy systems.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from deeptime.decomposition import TICA

from cvplug.cv import CollectiveVariable, Normalization
from cvplug.features import Feature, default_features

__all__ = ["method", "TicaMethod"]


class TicaMethod:
    name = "tica"
    summary = "linear slow CVs by time-lagged independent component analysis (deeptime), a baseline"

    def fit(self, features: Sequence[np.ndarray], feature_module: Feature, n_atoms: int, latent_dim: int = 2,
            lag: int = 1, **cv_options) -> CollectiveVariable:
        """TICA on feature trajectories (arrays [frames, n_features]); returns the CV of the slowest components."""
        if min(len(f) for f in features) <= lag:
            raise ValueError(f"every trajectory needs more than lag = {lag} frames")
        model = TICA(lagtime=lag, dim=latent_dim).fit([np.asarray(f, dtype=np.float64) for f in features])
        model = model.fetch_model()
        projection = torch.nn.Linear(feature_module.n_out, latent_dim, bias=False)
        with torch.no_grad():
            projection.weight.copy_(torch.as_tensor(model.instantaneous_coefficients[:, :latent_dim].T))
        normalization = Normalization(torch.as_tensor(model.mean_0), torch.ones(feature_module.n_out))
        info = {"lag_frames": lag, "timescales_frames": model.timescales(lag)[:latent_dim].tolist()}
        info.update(cv_options.pop("info", {}))
        return CollectiveVariable(feature_module, projection, n_atoms, normalization, method=self.name, info=info,
                                  names=[f"tic{k}" for k in range(latent_dim)], **cv_options)

    def fit_trajectories(self, trajectories, spec, *, latent_dim: int = 2, lag: int = 1, weights=None, seed: int = 0,
                         previous: Optional[CollectiveVariable] = None, work_dir=None,
                         progress: bool = True) -> CollectiveVariable:
        """TICA on the default features of full-system trajectories (weights are not used: TICA is kinetic)."""
        feature_module = default_features(spec, trajectories[0][0])
        with torch.no_grad():
            features = [feature_module(torch.as_tensor(t, dtype=torch.float32)).numpy() for t in trajectories]
        return self.fit(features, feature_module, spec.n_atoms, latent_dim, lag, periodic_box=spec.periodic)


method = TicaMethod()
