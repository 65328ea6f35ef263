"""Shared training utilities: seeding, resumable checkpoints, progress bars.

Every trainer in ``plugins/`` uses these, so that "same seed, same numbers" and "interrupt, then resume with
nothing lost" hold for every method in the same way.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .runs import write_atomic

__all__ = ["seed_everything", "Checkpoint", "progress_bar"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch Generator seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Checkpoint:
    """A resumable training state in one file, written atomically (:func:`cvplug.runs.write_atomic`).

    >>> ckpt = Checkpoint("run/model.ckpt")           # doctest: +SKIP
    >>> state = ckpt.load()                           # doctest: +SKIP
    >>> ckpt.save(epoch=3, model=model, optimizer=opt, history=losses)  # doctest: +SKIP
    Modules and optimizers are stored by ``state_dict`` and restored in place by :meth:`restore`;
    RNG states are saved and restored so a resumed run continues the same random stream. ``identity`` (JSON-like:
    settings, data fingerprints …) says which fit the file belongs to: it is saved with it, and :meth:`restore`
    refuses a checkpoint written with another.
    """

    def __init__(self, path, identity: Optional[dict] = None):
        self.path = Path(path)
        self.identity = identity

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, **items: Any) -> None:
        payload = {name: (item.state_dict() if hasattr(item, "state_dict") else item) for name, item in items.items()}
        payload["_rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        payload["_identity"] = self.identity
        if torch.cuda.is_initialized():
            payload["_rng"]["cuda"] = torch.cuda.get_rng_state_all()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, lambda handle: torch.save(payload, handle))

    def load(self) -> Optional[dict]:
        """The saved dict (state_dicts not yet applied), or None if there is no checkpoint."""
        if not self.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise ValueError(f"checkpoint {self.path} is damaged ({error}); delete it to start over") from error

    def restore(self, **targets: Any) -> Optional[dict]:
        """Load the checkpoint into ``targets`` (modules, optimizers …) and the RNGs; returns the rest or None."""
        payload = self.load()
        if payload is None:
            return None
        if self.identity is not None and payload.get("_identity") != self.identity:
            raise ValueError(f"checkpoint {self.path} was written for other settings, data or starting model; "
                             "delete it or choose another work folder to start over")
        for name, target in targets.items():
            if name not in payload:
                raise ValueError(f"checkpoint {self.path} has no entry {name!r}")
            target.load_state_dict(payload[name])
        rng = payload.pop("_rng")
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return {k: v for k, v in payload.items() if k not in targets and k != "_identity"}


def progress_bar(iterable=None, total: Optional[int] = None, desc: str = "", progress: bool = True, **kwargs):
    """A tqdm progress bar, shown when ``progress`` is true (``progress`` means this everywhere in cvplug)."""
    return tqdm(iterable, total=total, desc=desc, disable=not progress, dynamic_ncols=True, **kwargs)
