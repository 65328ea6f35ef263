"""Tempered training of the coarse-grained model against a target: Adam on the reverse-KL bound, β raised by
:class:`.tempering.AdaptiveTempering` after each stage; seeded, resumable, with a progress bar (β, loss, KL̂)."""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from cvplug.runs import tensors_fingerprint
from cvplug.training import Checkpoint, progress_bar, seed_everything

from .gradnorm import KAPPA
from .model import CoarseGrainedModel
from .objective import ENERGY_CAP, forward_kl, kl_estimate, mixed, reverse_kl
from .targets import Target
from .tempering import AdaptiveTempering

__all__ = ["TrainingResult", "train"]

Gamma = Union[float, Callable[[float], float]]


@dataclass
class TrainingResult:
    """``history``: one dict per tempering stage (beta, steps, loss, kl, force_calls, wall_s, and with a mixture
    prior its weights π at the stage's end);
    ``snapshots``: the model's state_dict at each milestone β; ``force_calls``: configurations evaluated by the
    target; ``wall_s``: training wall time in s (summed over resumed runs)."""

    history: list = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)
    force_calls: int = 0
    wall_s: float = 0.0


def _check(steps_per_stage: int, final_steps: int, batch_size: int, lr: float, stage_lr_floor: float, data, gamma,
           model, pretrain_steps: int, weights_from_data: bool) -> None:
    if steps_per_stage < 1 or final_steps < 0 or batch_size < 2 or not lr > 0:
        raise ValueError("need steps_per_stage ≥ 1, final_steps ≥ 0, batch_size ≥ 2 and lr > 0, got "
                         f"{steps_per_stage}, {final_steps}, {batch_size}, {lr}")
    if not 0 < stage_lr_floor <= 1:
        raise ValueError(f"stage_lr_floor must lie in (0, 1], got {stage_lr_floor}")
    if (data is None) != (gamma is None):
        raise ValueError("the mixed objective needs both data and gamma (or neither)")
    if pretrain_steps and data is None:
        raise ValueError("pretrain_steps needs data")
    if weights_from_data and (data is None or model.prior is None):
        raise ValueError("weights_from_data needs data and a mixture prior (mixture ≥ 1)")
    if data is not None and (data.dim() != 2 or data.shape[1] != model.data_dim or len(data) == 0):
        raise ValueError(f"data must have shape [N, {model.data_dim}] (model coordinates), got {tuple(data.shape)}")


def train(model: CoarseGrainedModel, target: Target, schedule: AdaptiveTempering, *, steps_per_stage: int = 500,
          final_steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, kappa: Optional[float] = KAPPA,
          extra_latents: int = 0, energy_cap: float = ENERGY_CAP, estimate_batch: Optional[int] = None,
          data: Optional[Tensor] = None, gamma: Optional[Gamma] = None, data_batch: int = 64,
          std_lr_factor: float = 1.0, encoder_steps: int = 0, pretrain_steps: int = 0,
          stage_lr_floor: float = 1.0, weights_from_data: bool = False, seed: int = 0,
          checkpoint: Optional[Path] = None, checkpoint_every: int = 500,
          progress: bool = True) -> TrainingResult:
    """Train ``model`` in place from ``schedule.start`` up to ``schedule.target``.

    Each stage runs ``steps_per_stage`` Adam steps (``final_steps`` at the target β and at the schedule's
    milestones, where the caller wants a converged model) on ``batch_size`` fresh samples, then estimates KL̂ on
    ``estimate_batch`` samples (default 4 × batch_size) and asks the schedule for the next β. ``kappa``:
    per-sample gradient normalisation (None: off). ``extra_latents``: K further encoder draws per sample
    tightening the bound (:func:`.objective.log_marginal_bound`; 0 is the paper's eq. 16). ``energy_cap``: tempered
    energies β u above it (kT) are lin-log capped (:func:`.objective.capped`). Mixed
    objective: ``data`` (model coordinates [N, D]) with ``gamma`` (a float or a function of β) weighting the
    reverse bound against the data's −log q bound on ``data_batch`` points per step (:func:`.objective.forward_kl`
    with K + 1 encoder draws: the ELBO at K = 0). ``std_lr_factor``: learning rate of log σθ relative to ``lr``;
    ``encoder_steps``: encoder-only steps (maximising log r(z | x) on fresh samples of q) before each step, so
    the encoder keeps up with the decoder. ``pretrain_steps``: Adam steps on the data's bound alone
    (:func:`.objective.forward_kl`) before the first stage (an option of ours: the model starts where the data
    are instead of at one structure; needs ``data``). ``stage_lr_floor``: within each stage the learning rates decay
    geometrically to this fraction of their start (1: constant), so the model settles before β moves on.
    ``weights_from_data`` (an option of ours; needs a mixture prior and ``data``): the mixture weights π get their
    gradient from the data term only, so the components' shares follow the frames; the reverse bound, which weighs
    a component by how well it fits (exp of its negative variational free energy), does not move them.
    ``checkpoint``: a file written every ``checkpoint_every`` steps and at each stage's end; calling again with it
    resumes (same numbers as an uninterrupted run), and refuses a checkpoint written for other settings, data or
    starting model (:func:`_identity`, checked by :class:`~cvplug.training.Checkpoint`).
    """
    if data is not None:
        data = torch.as_tensor(data, dtype=model.offset.dtype)
    _check(steps_per_stage, final_steps, batch_size, lr, stage_lr_floor, data, gamma, model, pretrain_steps,
           weights_from_data)
    estimate_batch = estimate_batch or 4 * batch_size
    identity = _identity(model, data, dict(
        schedule=repr(schedule), steps_per_stage=steps_per_stage, final_steps=final_steps, batch_size=batch_size,
        lr=lr, kappa=kappa, extra_latents=extra_latents, energy_cap=energy_cap, estimate_batch=estimate_batch,
        gamma=gamma if not callable(gamma) else "a function of β", data_batch=data_batch,
        std_lr_factor=std_lr_factor, encoder_steps=encoder_steps, pretrain_steps=pretrain_steps,
        stage_lr_floor=stage_lr_floor, weights_from_data=weights_from_data, seed=seed))
    others = [p for name, p in model.named_parameters() if name != "log_std"]
    base_lrs = (lr, lr * std_lr_factor)
    optimizer = torch.optim.Adam([{"params": others}, {"params": [model.log_std], "lr": base_lrs[1]}], lr=lr)
    store = Checkpoint(checkpoint, identity) if checkpoint is not None else None
    state = store.restore(model=model, optimizer=optimizer) if store is not None else None
    if state is None:
        seed_everything(seed)
        state = {"beta": schedule.start, "stage_step": 0, "result": TrainingResult(), "finished": False}
        for _ in range(pretrain_steps):
            picked = data[torch.randint(len(data), (min(data_batch, len(data)),))]
            loss = forward_kl(model, picked, extra_latents + 1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    beta, stage_step, result = state["beta"], state["stage_step"], state["result"]
    if state["finished"]:
        return result
    target.force_calls = result.force_calls
    started, wall_before, losses = time.perf_counter(), result.wall_s, []

    def save(finished: bool = False) -> None:
        result.force_calls = target.force_calls
        result.wall_s = wall_before + time.perf_counter() - started
        if store is not None:
            store.save(model=model, optimizer=optimizer, beta=beta, stage_step=stage_step, result=result,
                       finished=finished)

    bar = progress_bar(desc="rkl", progress=progress, unit="step")
    while True:
        stage_steps = final_steps if schedule.done(beta) or beta in schedule.milestones else steps_per_stage
        while stage_step < stage_steps:
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * stage_lr_floor ** (stage_step / stage_steps)
            for _ in range(encoder_steps):
                with torch.no_grad():
                    drawn = model.sample(batch_size)
                encoder_loss = -model.log_posterior(drawn.z, drawn.x).mean()
                optimizer.zero_grad()
                encoder_loss.backward()
                optimizer.step()
            with model.prior.weights_held() if weights_from_data else contextlib.nullcontext():
                terms = reverse_kl(model, target, beta, batch_size, kappa, extra_latents, energy_cap)
            loss = terms.loss
            if data is not None:
                picked = data[torch.randint(len(data), (min(data_batch, len(data)),))]
                loss = mixed(loss, forward_kl(model, picked, extra_latents + 1),
                             gamma(beta) if callable(gamma) else gamma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(terms.loss.item())
            stage_step += 1
            bar.update()
            if stage_step % 50 == 0:
                bar.set_postfix(beta=f"{beta:.4g}", loss=f"{losses[-1]:.4g}", kl=f"{_last(result, 'kl')}")
            if stage_step % checkpoint_every == 0 and stage_step < stage_steps:
                save()
        with torch.no_grad():
            estimate = reverse_kl(model, target, beta, estimate_batch, None, extra_latents, energy_cap,
                                  estimate=True)
        kl = kl_estimate(estimate.log_weights, estimate.energy)
        result.history.append({"beta": beta, "steps": stage_steps, "loss": float(-estimate.log_weights.mean()),
                               "kl": kl, "force_calls": target.force_calls,
                               "wall_s": wall_before + time.perf_counter() - started})
        if model.prior is not None:
            result.history[-1]["weights"] = model.prior.weights().tolist()
        if beta in schedule.milestones:
            result.snapshots[beta] = copy.deepcopy(model.state_dict())
        if schedule.done(beta):
            break
        previous = beta
        beta = schedule.next(beta, lambda b: kl_estimate(estimate.log_weights, estimate.energy, b - previous,
                                                         previous, energy_cap))
        stage_step = 0
        save()
    bar.close()
    save(finished=True)
    return result


def _identity(model: CoarseGrainedModel, data: Optional[Tensor], settings: dict) -> dict:
    """What a checkpoint must have been written for to be resumed: the training ``settings``, the model as it
    starts (its parameters and buffers: architecture, initialisation, warm start), the names of its held
    parameters and the data frames."""
    held = sorted(name for name, parameter in model.named_parameters() if not parameter.requires_grad)
    return {"settings": settings, "model": tensors_fingerprint(model.state_dict()), "held": held,
            "data": None if data is None else tensors_fingerprint({"data": data})}


def _last(result: TrainingResult, key: str) -> str:
    return f"{result.history[-1][key]:.3g}" if result.history else "-"
