"""Run a system with OpenMM and write a trajectory: DCD + PDB for molecules, an .npz array file for toys.

Toy trajectory format (``.npz``): ``x`` [frames, dim] natural coordinates (nm), ``time`` [frames] (ps),
``system`` (name), ``temperature`` (K), ``dt`` (ps between frames). Read it with :func:`cvplug.trajectory.load_trajectory`.
Molecular trajectories are ``<out>.dcd`` with their topology in ``<out>.pdb``; mdtraj reads them directly.

A run owns its output (:mod:`cvplug.runs`): ``<out>.lock`` is locked while it writes, so a second run on the same
``out`` refuses at once; ``<out>.identity.json`` records what defines it (system, report_every, seed, dynamics,
saved atoms), so a rerun with other settings or of another system refuses instead of appending to it
(``overwrite=True`` moves the old files aside to ``<out>.old-<time>/``).

An interrupted run — stopped, or killed at any moment — resumes from ``<out>.state.xml``, written atomically every
``checkpoint_every`` frames after the frames before it (and whatever else the checkpoint refers to) are on disk;
frames written after the checkpoint are dropped on resume, so the continued trajectory has no gap and no duplicate.
Ctrl-C raises KeyboardInterrupt (also when it lands inside a Python force), never a "blew up" error.
"""
from __future__ import annotations

import os
import signal
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch  # noqa: F401  (before openmm)
import openmm
import openmm.app as app
import openmm.unit as unit
from tqdm.auto import tqdm

from cvplug.systems import SystemSpec
from .constants import get_platform, openmm_seed
from .runs import (atoms_identity, claim, move_files_aside, positive_int, positive_number,
                   system_identity, write_atomic)
from .trajectory import TrajectoryError

__all__ = ["make_simulation", "simulate", "kinetic_temperature", "SimulationError"]


class SimulationError(ValueError):
    """The integration failed (NaN coordinates, exploding energy)."""


def make_simulation(spec: SystemSpec, platform: str = "CPU", seed: int = 0, dynamics: Optional[str] = None,
                    threads: Optional[int] = None, integrator: Optional[openmm.Integrator] = None) -> app.Simulation:
    """An OpenMM Simulation of ``spec`` at its initial positions with seeded velocities and integrator
    (``spec.integrator(seed, dynamics)`` unless ``integrator`` is given)."""
    chosen = get_platform(platform)
    properties = {"Threads": str(threads)} if threads and platform == "CPU" else {}
    integrator = integrator or spec.integrator(seed, dynamics)
    simulation = app.Simulation(spec.topology, spec.system, integrator, chosen, properties)
    if spec.box_vectors is not None:
        simulation.context.setPeriodicBoxVectors(*spec.box_vectors)
    simulation.context.setPositions(spec.positions)
    simulation.context.setVelocitiesToTemperature(spec.temperature * unit.kelvin, openmm_seed(seed))
    return simulation


def kinetic_temperature(simulation: app.Simulation, state: Optional[openmm.State] = None) -> float:
    """Instantaneous temperature (K) from the kinetic energy: 2 KE / (n_dof k_B), n_dof = 3N − constraints
    (− 3 with a CMMotionRemover). Meaningful for inertial dynamics (Langevin), not Brownian."""
    system = simulation.system
    dof = 3 * sum(system.getParticleMass(i).value_in_unit(unit.dalton) > 0 for i in range(system.getNumParticles()))
    dof -= system.getNumConstraints()
    dof -= 3 * any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces())
    state = state or simulation.context.getState(getEnergy=True)
    kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    return 2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))


class _DCDSink:
    """Frames appended to ``<out>.dcd`` (topology in ``<out>.pdb``); on resume, cut to the first ``frames``.

    With ``atoms`` (full-system indices) only those atoms are written, their indices in ``<out>.atoms.npy``."""

    HEADER = 276  # bytes of the header OpenMM's DCDFile writes; the frame count is the int at byte 8

    def __init__(self, path: Path, spec: SystemSpec, dt_frame: float, frames: Optional[int],
                 atoms: Optional[np.ndarray] = None):
        self.path = path.with_suffix(".dcd")  # header time step = one frame (mdtraj numbers frames 0, 1, …)
        self.atoms = atoms
        topology = spec.topology if atoms is None else _subset_topology(spec.topology, atoms)
        self.n_atoms = topology.getNumAtoms()
        if frames is None:
            with open(path.with_suffix(".pdb"), "w") as handle:
                positions = spec.positions if atoms is None else spec.positions[atoms]
                app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
            if atoms is not None:
                np.save(path.with_suffix(".atoms.npy"), atoms)
        else:
            self._truncate(frames, topology)
        self._handle = open(self.path, "r+b" if frames is not None else "wb")
        self._dcd = app.DCDFile(self._handle, topology, dt_frame * unit.picosecond, append=frames is not None)

    def _truncate(self, frames: int, topology: app.Topology) -> None:
        box = 56 if topology.getPeriodicBoxVectors() is not None else 0  # unit-cell record
        size = self.HEADER + frames * (box + 3 * (8 + 4 * self.n_atoms))
        if not self.path.exists() or self.path.stat().st_size < size:
            raise TrajectoryError(f"{self.path} holds fewer frames than its checkpoint ({frames}); it cannot be "
                                  "resumed: start over with --overwrite (overwrite=True)")
        with open(self.path, "r+b") as handle:
            handle.truncate(size)
            handle.seek(8)
            handle.write(struct.pack("<i", frames))
            handle.seek(20)
            handle.write(struct.pack("<i", max(frames - 1, 0)))

    def record(self, positions: np.ndarray, state: openmm.State) -> None:
        if self.atoms is not None:
            positions = positions[self.atoms]
        self._dcd.writeModel(positions * unit.nanometer, periodicBoxVectors=state.getPeriodicBoxVectors())

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _subset_topology(topology: app.Topology, atoms: np.ndarray) -> app.Topology:
    """The OpenMM topology of ``atoms`` only (bonds among them kept, box kept)."""
    import mdtraj

    subset = mdtraj.Topology.from_openmm(topology).subset(atoms).to_openmm()
    subset.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    return subset


class _ArraySink:
    """Frames kept in memory and written to ``<out>.npz`` (atomically) at every checkpoint and at the end."""

    def __init__(self, path: Path, spec: SystemSpec, dt_frame: float, frames: Optional[int], atoms=None):
        self.path, self.spec, self.dt = path.with_suffix(".npz"), spec, dt_frame
        self.frames = []
        if frames is not None:
            saved = list(np.load(self.path)["x"]) if self.path.exists() else []
            if len(saved) < frames:
                raise TrajectoryError(f"{self.path} holds {len(saved)} frames, fewer than its checkpoint "
                                      f"({frames}); start over with --overwrite (overwrite=True)")
            self.frames = saved[:frames]

    def record(self, positions: np.ndarray, state: openmm.State) -> None:
        self.frames.append(positions[:, : self.spec.toy.dim_per_particle].reshape(-1))

    def flush(self) -> None:
        x = np.array(self.frames)
        write_atomic(self.path, lambda handle: np.savez(handle, x=x, time=self.dt * np.arange(1, len(x) + 1),
                                                        system=self.spec.name, temperature=self.spec.temperature,
                                                        dt=self.dt))

    close = flush


def _save_checkpoint(simulation: app.Simulation, checkpoint: Path) -> None:
    """Write the simulation state atomically: a run killed while writing keeps the previous checkpoint."""
    state = simulation.context.getState(getPositions=True, getVelocities=True, getParameters=True,
                                        getIntegratorParameters=True)
    write_atomic(checkpoint, openmm.XmlSerializer.serialize(state))


class _Interrupts:
    """Notes Ctrl-C (SIGINT) while OpenMM integrates. A KeyboardInterrupt raised inside a Python force reaches
    the caller as an OpenMMException with no message; the note tells it from a blow-up."""

    def __init__(self):
        self.seen = False

    @contextmanager
    def watching(self):
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            yield self  # signals are handled by the main thread only; an ignored SIGINT stays ignored
            return

        def note(signum, frame):
            self.seen = True
            previous(signum, frame)

        signal.signal(signal.SIGINT, note)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


TRAJECTORY_FILES = (".dcd", ".pdb", ".atoms.npy", ".npz", ".state.xml", ".identity.json", ".run.toml")


def _check_spec(spec) -> None:
    if not isinstance(spec, SystemSpec):
        raise ValueError(f"simulate needs a cvplug SystemSpec, got {type(spec).__name__}: build one with "
                         "cvplug.systems.from_files(...) or, for an openmm.System, from_openmm(system, positions)")
    positive_number("the temperature (K)", spec.temperature)
    positive_number("the timestep (ps)", spec.timestep)
    positive_number("the friction (1/ps)", spec.friction)


def _check_save_atoms(spec, save_atoms) -> Optional[np.ndarray]:
    if save_atoms is None:
        return None
    atoms = np.asarray(save_atoms)
    if atoms.ndim != 1 or len(atoms) == 0 or not np.issubdtype(atoms.dtype, np.integer) \
            or atoms.min() < 0 or atoms.max() >= spec.n_atoms or len(np.unique(atoms)) != len(atoms):
        raise ValueError(f"save_atoms must be distinct atom indices 0 … {spec.n_atoms - 1}")
    return None if len(atoms) == spec.n_atoms else atoms.astype(np.int64)


def simulate(spec: SystemSpec, steps: int, out, report_every: int = 500, seed: int = 0, platform: str = "CPU",
             dynamics: Optional[str] = None, checkpoint_every: int = 100, progress: bool = True,
             simulation: Optional[app.Simulation] = None,
             advance: Optional[Callable[[int], None]] = None, save_atoms: Optional[Sequence[int]] = None,
             overwrite: bool = False, on_start: Optional[Callable[[], None]] = None) -> Path:
    """Integrate ``steps`` steps, saving a frame every ``report_every`` steps; returns the trajectory path.

    ``save_atoms``: full-system indices of the atoms the trajectory stores (e.g.
    :func:`cvplug.selection.solute_atoms`: no water); None stores all. Toy trajectories store all.

    A run whose ``<out>.state.xml`` exists continues from it (same seed, appended frames) until ``steps``
    steps are done in total; a run of another system or with other settings in ``out`` is refused unless
    ``overwrite`` (the old files move to ``<out>.old-<time>/``). ``on_start()`` is called once the run owns
    ``out``, before it writes (the CLI writes its run file there). Pass ``simulation`` to run a prepared one, and
    ``advance(n_steps)`` to integrate through something other than ``simulation.step``.
    """
    _check_spec(spec)
    steps, report_every = positive_int("steps", steps), positive_int("report_every", report_every)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    if steps % report_every:
        raise ValueError(f"steps ({steps}) must be a positive multiple of report_every ({report_every})")
    if dynamics not in (None, "langevin", "brownian"):
        raise ValueError(f"dynamics must be 'langevin' or 'brownian', not {dynamics!r}")
    atoms = _check_save_atoms(spec, save_atoms)
    out = Path(out)
    base = out.with_suffix("")
    identity = {"kind": "simulate", "system": system_identity(spec), "report_every": report_every,
                "seed": int(seed), "dynamics": dynamics or spec.dynamics, "save_atoms": atoms_identity(atoms)}
    files = [out.with_suffix(suffix) for suffix in TRAJECTORY_FILES]
    with claim(out.with_suffix(".lock"), out.with_suffix(".identity.json"), identity, overwrite=overwrite,
               found=[out.with_suffix(s) for s in (".dcd", ".npz", ".state.xml")], what=str(base),
               start_over=lambda lock: move_files_aside(files, base)):
        if on_start is not None:
            on_start()
        simulation = simulation or make_simulation(spec, platform, seed, dynamics)
        return _integrate(spec, steps, out, report_every, simulation, advance, checkpoint_every, progress, atoms)


def _integrate(spec: SystemSpec, steps: int, out: Path, report_every: int, simulation: app.Simulation,
               advance: Optional[Callable[[int], None]], checkpoint_every: int, progress: bool,
               atoms: Optional[np.ndarray], resume: Optional[Callable[[], None]] = None,
               before_checkpoint: Optional[Callable[[], None]] = None) -> Path:
    """The run itself, once its output is owned (:func:`simulate`, :func:`cvplug.metad.run_metadynamics`).

    ``resume()`` is called once the simulation stands at its checkpoint (or at step 0): cut what was written
    after it. ``before_checkpoint()`` is called before every checkpoint: put on disk whatever it refers to."""
    checkpoint = out.with_suffix(".state.xml")
    if checkpoint.exists():
        try:
            simulation.loadState(str(checkpoint))
        except Exception as error:  # OpenMM raises its own exception type for a damaged file
            raise TrajectoryError(f"the checkpoint {checkpoint} cannot be read ({error}); start over with "
                                  "--overwrite (overwrite=True)") from None
        simulation.currentStep = round(simulation.context.getState().getStepCount())
    done = simulation.currentStep
    if done % report_every:
        raise TrajectoryError(f"the checkpoint {checkpoint} stands at step {done}, not at a frame of this run")
    dt_frame = report_every * simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
    if resume is not None:
        resume()
    sink = (_ArraySink if spec.toy is not None else _DCDSink)(
        out, spec, dt_frame, done // report_every if checkpoint.exists() else None, atoms)

    def save() -> None:
        sink.flush()
        if before_checkpoint is not None:
            before_checkpoint()
        _save_checkpoint(simulation, checkpoint)

    healthy, recorded = True, done  # recorded: the step of the last frame on record
    interrupts = _Interrupts()
    try:
        with tqdm(total=steps, initial=min(done, steps), unit="step", disable=not progress, desc=spec.name) as bar, \
                interrupts.watching():
            for frame in range(done // report_every, steps // report_every):
                (advance or simulation.step)(report_every)
                state = simulation.context.getState(getPositions=True, enforcePeriodicBox=False)
                positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                if not np.isfinite(positions).all():  # platforms that do not check (Reference)
                    raise openmm.OpenMMException("particle coordinates are NaN")
                sink.record(positions, state)
                recorded = simulation.currentStep
                bar.update(report_every)
                if (frame + 1) % checkpoint_every == 0:
                    save()
    except openmm.OpenMMException as error:
        healthy = False
        if interrupts.seen:  # Ctrl-C inside a Python force: an interrupt, not a blow-up
            raise KeyboardInterrupt from None
        raise SimulationError(f"{spec.name} blew up near step {simulation.currentStep} ({error}); the last "
                              f"checkpoint {checkpoint} is kept. Lower the timestep, the bias height or the "
                              "stride, then run again to resume") from error
    finally:
        sink.close()
        # never overwrite a good checkpoint with a broken state, nor with one past the last frame (Ctrl-C)
        if healthy and simulation.currentStep == recorded:
            if before_checkpoint is not None:
                before_checkpoint()
            _save_checkpoint(simulation, checkpoint)
    return sink.path
