"""Training a FlowVAE with an annealed β_reg: Adam, minibatches, seeded, resumable, with a progress bar."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from cvplug.training import Checkpoint, progress_bar, seed_everything

from .model import FlowVAE

__all__ = ["BetaSchedule", "train"]


@dataclass(frozen=True)
class BetaSchedule:
    """β_reg rising linearly from ``start`` to ``end`` over ``anneal_epochs`` epochs, then constant.

    The paper anneals over 20 epochs for 2D toys and 40 for molecules, from 0 for a fresh model and from the
    previous β when β ≥ 1 values are trained one after another carrying the parameters over.
    """

    start: float
    end: float
    anneal_epochs: int = 20

    def __post_init__(self):
        if self.start < 0 or self.end < 0 or self.anneal_epochs < 0:
            raise ValueError(f"β values and anneal_epochs must be non-negative, got {self}")

    def __call__(self, epoch: int) -> float:
        if self.anneal_epochs == 0:
            return self.end
        return self.start + (self.end - self.start) * min(1.0, epoch / self.anneal_epochs)


def _validate(vae: FlowVAE, x: Tensor, beta: float, batch_size: int) -> tuple[float, float]:
    with torch.no_grad():
        parts = [vae.loss(chunk, beta) for chunk in x.split(batch_size)]
    weights = torch.tensor([len(chunk) for chunk in x.split(batch_size)], dtype=torch.float64) / len(x)
    return (float(sum(w * p.nll for w, p in zip(weights, parts))),
            float(sum(w * p.kl for w, p in zip(weights, parts))))


def train(vae: FlowVAE, x_train: Tensor, schedule: BetaSchedule, epochs: int, *, x_val: Optional[Tensor] = None,
          lr: float = 1e-4, batch_size: int = 200, seed: int = 0, checkpoint: Optional[Path] = None,
          keep_best: bool = False, progress: bool = True) -> list[dict]:
    """Train ``vae`` in place on data x_train [N, D]; returns the history (one dict per epoch).

    Each history entry: ``epoch``, ``beta``, ``train_loss`` (mean of nll + β·kl over the epoch's batches), and
    with ``x_val`` the validation ``val_nll`` and ``val_kl`` (nats per sample). A ``checkpoint`` file is written
    after every epoch; calling again with the same file resumes where it stopped (same numbers as an
    uninterrupted run with the same ``seed``). With ``keep_best`` (needs ``x_val``) the model ends with the
    parameters of the epoch, among those at the final β, with the lowest validation nll + β·kl; that history
    entry gets ``"selected": True`` (early stopping against overfitting).
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs ≥ 1, batch_size ≥ 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    x_train = torch.as_tensor(x_train, dtype=torch.get_default_dtype())
    if x_train.dim() != 2 or x_train.shape[1] != vae.decoder.data_dim:
        raise ValueError(f"x_train must have shape [N, {vae.decoder.data_dim}], got {tuple(x_train.shape)}")
    if not bool(torch.isfinite(x_train).all()):
        raise ValueError("x_train contains NaN or infinite values")
    if keep_best and x_val is None:
        raise ValueError("keep_best selects by validation loss: give x_val")
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    state = store.restore(model=vae, optimizer=optimizer) if store is not None else None
    if state is None:
        seed_everything(seed)
        start, history, best = 0, [], None
    else:
        start, history, best = state["epoch"], state["history"], state.get("best")
    bar = progress_bar(range(start, epochs), total=epochs, initial=start, desc=f"flowvae {vae.decoder.name}",
                   progress=progress)
    for epoch in bar:
        beta = schedule(epoch)
        vae.train()
        total, count = 0.0, 0
        for index in torch.randperm(len(x_train)).split(batch_size):
            loss = vae.loss(x_train[index], beta)
            optimizer.zero_grad()
            loss.surrogate.backward()
            optimizer.step()
            total, count = total + loss.objective * len(index), count + len(index)
        record = {"epoch": epoch + 1, "beta": beta, "train_loss": total / count}
        if x_val is not None:
            vae.eval()
            record["val_nll"], record["val_kl"] = _validate(vae, torch.as_tensor(x_val, dtype=x_train.dtype),
                                                            beta, 4 * batch_size)
        history.append(record)
        if keep_best and beta == schedule.end:
            value = record["val_nll"] + beta * record["val_kl"]
            if best is None or value < best["value"]:
                best = {"value": value, "epoch": epoch + 1, "state": copy.deepcopy(vae.state_dict())}
        bar.set_postfix(beta=f"{beta:.2f}", loss=f"{record['train_loss']:.3f}")
        if store is not None:
            store.save(epoch=epoch + 1, model=vae, optimizer=optimizer, history=history, best=best)
    if best is not None:
        vae.load_state_dict(best["state"])
        history[best["epoch"] - 1]["selected"] = True
    return history
