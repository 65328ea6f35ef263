"""Continuous mode: one simulation that never stops while its CV is retrained every N steps.

The CV is evaluated in the ``"hills"`` engine's PythonForce; every ``update_every`` steps the method retrains it
on a rolling buffer of the latest frames, and the new CV replaces the old one in
the running Context. Each hill is moved to the new CV value of the configuration where it was deposited, so the
bias keeps pushing away from the same configurations (:meth:`cvplug.metad.engine.BiasEngine.replace_cv`). The
simulation, its bias engine and the CV stay in memory for the whole run.

When to use which mode: rounds (:mod:`cvplug.learn`) give one fixed CV per round, a TorchScript file per round
that runs as TorchForces anywhere, clean per-round reweighting and restarts; choose them for production and
free energies. Continuous mode reacts faster (no restart, no re-equilibration) and suits exploration — finding
the basins — but its bias changes shape at every update, so its frames are not reweighted; it is not resumable.
Training runs in the simulation's process between steps.
"""
from __future__ import annotations

import copy
import dataclasses
from collections import deque
from pathlib import Path
from typing import Optional

import numpy as np
import openmm.unit as unit

from cvplug import systems
from . import methods
from .data import TrainingData
from .learn import resolve_features
from .metad import WellTempered, build_metadynamics
from .simulate import kinetic_temperature, simulate
from .trajectory import load_trajectory, trajectory_positions
from .training import progress_bar

__all__ = ["learn_online"]


def learn_online(spec, out_dir, method: str = "dynae", steps: int = 100_000, warmup_steps: int = 20_000,
                 update_every: int = 20_000, buffer_frames: int = 2_000, report_every: int = 50,
                 n_components: int = 2, lag: int = 1, features=(), method_options: Optional[dict] = None,
                 bias: Optional[WellTempered] = None, seed: int = 0, platform: str = "CPU",
                 dynamics: Optional[str] = None, progress: bool = True, **bias_options) -> dict:
    """Warm up unbiased for ``warmup_steps``, learn a first CV, then run ``steps`` biased MD steps, retraining the
    CV every ``update_every`` steps on the last ``buffer_frames`` frames. Writes ``cv_<step>.pt`` for every CV,
    ``colvar.dat`` (time ps, CV values, bias kJ/mol; the CV changes at each update), ``thermo.dat`` (time ps,
    potential energy kJ/mol, instantaneous temperature K) and ``updates.dat``. ``dynamics`` overrides the
    system's default ("langevin" or "brownian"; the temperature means something for Langevin only).
    ``spec``: a SystemSpec or anything :func:`cvplug.systems.resolve` accepts; ``features``: feature specs
    (:mod:`cvplug.selection`, default the system's); ``method_options`` go to the method (:mod:`cvplug.methods`);
    ``bias``: the metadynamics settings (:class:`cvplug.metad.WellTempered`, ``"hills"`` engine), whose fields
    ``bias_options`` replace (``height=0.5``).

    Returns ``colvar`` and ``thermo`` (the arrays written), ``updates`` (MD steps of the CV updates), ``cv`` (the
    last CV) and ``hills`` (the number of hills deposited)."""
    bias = WellTempered.from_options(bias, **bias_options)
    options = {"n_components": n_components, **(method_options or {})}
    methods.create(method, options)  # options checked before any MD runs
    if update_every % report_every or steps % report_every or warmup_steps % report_every:
        raise ValueError("steps, warmup_steps and update_every must be multiples of report_every")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = systems.resolve(spec)
    features = resolve_features(spec, features)
    warmup = simulate(dataclasses.replace(spec, system=copy.deepcopy(spec.system)), warmup_steps, out_dir / "warmup",
                      report_every, seed, platform, dynamics, progress=progress)
    frames = trajectory_positions(load_trajectory(warmup), spec)
    buffer = deque(frames, maxlen=buffer_frames)

    def train():
        data = TrainingData.from_trajectories([np.stack(buffer)], spec, features, lag=lag)
        cv = methods.create(method, options, seed=seed, progress=False).fit(data).cv
        cv.calibrate(data.sample_positions())
        return cv

    cv = train()
    cv.export(out_dir / "cv_0.pt")
    spec = dataclasses.replace(spec, positions=frames[-1])
    run = build_metadynamics(spec, cv, bias, seed=seed, platform=platform, dynamics=dynamics, reprojectable=True)
    engine, simulation = run.engine, run.simulation
    dt = spec.timestep
    colvar, thermo, updates = [], [], []
    for step in progress_bar(range(report_every, steps + 1, report_every), desc="online", progress=progress):
        run.step(report_every)
        state = simulation.context.getState(getEnergy=True, getPositions=True)
        buffer.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        values = engine.values(simulation)
        colvar.append([step * dt, *values, engine.bias_energy(simulation, values)])
        thermo.append([step * dt, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                       kinetic_temperature(simulation, state)])
        if step % update_every == 0 and step < steps:
            cv = train()
            cv.export(out_dir / f"cv_{step}.pt")
            engine.replace_cv(cv)
            updates.append(step)
    np.savetxt(out_dir / "colvar.dat", np.array(colvar), header="time_ps " + " ".join(cv.names) + " bias_kJmol")
    np.savetxt(out_dir / "thermo.dat", np.array(thermo), header="time_ps potential_kJmol temperature_K")
    np.savetxt(out_dir / "updates.dat", np.array(updates, dtype=int), fmt="%d", header="MD step of each CV update")
    return {"colvar": np.array(colvar), "thermo": np.array(thermo), "updates": updates, "cv": cv,
            "hills": engine.n_hills}

