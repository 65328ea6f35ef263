"""Trainers for :class:`~.model.NCTModel`: variational (from a Hamiltonian) and maximum likelihood (from data).

Both take a seed, show a progress bar, and checkpoint: called again with the same checkpoint path they resume
where they stopped (``steps`` is the total), with the same numbers as an uninterrupted run.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from cvplug.training import Checkpoint, progress_bar, seed_everything

from .model import NCTModel

__all__ = ["train_variational", "train_mle", "FREQUENCY_LR_FACTOR"]

FREQUENCY_LR_FACTOR = 10.0  # learning rate of log ω relative to the flow's


def train_variational(model: NCTModel, energy: Callable[[Tensor], Tensor], steps: int = 2000, batch: int = 256,
                      lr: float = 1e-3, seed: int = 0, checkpoint=None, checkpoint_every: int = 100,
                      progress: bool = True) -> list[float]:
    """Minimise the variational free energy (kT) of ``model`` for ``energy`` (features [B, n] nm → u [B]).

    Returns the loss of every step (the history restored from a checkpoint included).
    """
    _check(steps, batch, lr)
    return _optimise(model, lambda: model.free_energy(energy, batch), steps, lr, seed, checkpoint,
                     checkpoint_every, progress, "nct variational")


def train_mle(model: NCTModel, features: Tensor, steps: int = 2000, batch: int = 256, lr: float = 1e-3,
              seed: int = 0, checkpoint=None, checkpoint_every: int = 100, progress: bool = True) -> list[float]:
    """Maximise the phase-space likelihood of feature samples [N, n] (nm) with Maxwell–Boltzmann momenta.

    Minibatches of ``batch`` samples are drawn with replacement. Returns the loss (−log p per sample) of every step.
    """
    _check(steps, batch, lr)
    features = torch.as_tensor(features, dtype=model.latent.log_frequencies.dtype)
    if features.dim() != 2 or features.shape[1] != model.coordinates.mean.numel():
        raise ValueError(f"features must be [samples, {model.coordinates.mean.numel()}], got {tuple(features.shape)}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or inf")

    def loss() -> Tensor:
        return model.negative_log_likelihood(features[torch.randint(len(features), (batch,))])

    return _optimise(model, loss, steps, lr, seed, checkpoint, checkpoint_every, progress, "nct mle")


def _check(steps: int, batch: int, lr: float) -> None:
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be ≥ 1, got {steps}, {batch}")
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")


def _optimise(model: NCTModel, loss_fn: Callable[[], Tensor], steps: int, lr: float, seed: int, checkpoint,
              checkpoint_every: int, progress: bool, desc: str) -> list[float]:
    seed_everything(seed)
    frequencies = [model.latent.log_frequencies]
    others = [p for p in model.parameters() if p is not model.latent.log_frequencies]
    # log ω needs to travel by O(1) (ω spans decades); the flow's weights by much less
    optimizer = torch.optim.Adam([{"params": others}, {"params": frequencies, "lr": FREQUENCY_LR_FACTOR * lr}], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=0.05 * lr)
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    history: list[float] = []
    start = 0
    if store is not None and store.exists():
        state = store.restore(model=model, optimizer=optimizer, scheduler=scheduler)
        start, history = state["step"], list(state["history"])
    model.train()
    bar = progress_bar(range(start, steps), total=steps, initial=start, desc=desc, progress=progress)
    for step in bar:
        optimizer.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step}; lower the learning "
                                     "rate or check the energy function")
        loss.backward()
        optimizer.step()
        scheduler.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
        if store is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            store.save(step=step + 1, model=model, optimizer=optimizer, scheduler=scheduler, history=history)
    model.eval()
    return history
