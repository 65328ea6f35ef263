"""DynAE inside ``cvplug learn``: training on the trajectories of all rounds so far."""
from __future__ import annotations

from typing import Optional

from cvplug.cv import CollectiveVariable
from cvplug.features import default_features

__all__ = ["fit_trajectories"]


def fit_trajectories(trajectories, spec, *, latent_dim: int = 2, lag: int = 1, weights=None, seed: int = 0,
                     previous: Optional[CollectiveVariable] = None, work_dir=None, progress: bool = True,
                     **settings) -> CollectiveVariable:
    """Train DynAE afresh on lag pairs within each trajectory (full-system positions, nm).

    Inputs are :func:`cvplug.features.default_features` aligned to the first frame. DynAE is a dynamical
    method, so ``weights`` are not used; ``previous`` is not used either (each round trains from scratch on all
    frames, which is cheap at these sizes); ``work_dir`` holds the checkpoint, so an interrupted round resumes.
    """
    from .trainer import train

    features = default_features(spec, trajectories[0][0])
    checkpoint = work_dir / "dynae.ckpt" if work_dir is not None else None
    result = train(list(trajectories), latent_dim, lag, features=features, seed=seed, checkpoint=checkpoint,
                   show_progress=progress, **settings)
    result.cv.periodic_box = spec.periodic
    return result.cv
