"""Run a system with OpenMM and write a trajectory: DCD + PDB for molecules, an .npz array file for toys.

Toy trajectory format (``.npz``): ``x`` [frames, dim] natural coordinates (nm), ``time`` [frames] (ps),
``system`` (name), ``temperature`` (K), ``dt`` (ps between frames). Read it with :func:`cvplug.trajectory.load_trajectory`.
Molecular trajectories are ``<out>.dcd`` with their topology in ``<out>.pdb``; mdtraj reads them directly.
An interrupted run — stopped, or killed at any moment — resumes from ``<out>.state.xml`` (written atomically every
``checkpoint_every`` frames, after the frames before it are on disk); frames written after the checkpoint are
dropped on resume, so the continued trajectory has no gap and no duplicate.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch  # noqa: F401  (before openmm)
import openmm
import openmm.app as app
import openmm.unit as unit
from tqdm.auto import tqdm

from cvplug.systems import SystemSpec
from .trajectory import TrajectoryError

__all__ = ["make_simulation", "simulate", "kinetic_temperature", "SimulationError"]


class SimulationError(ValueError):
    """The integration failed (NaN coordinates, exploding energy)."""


def make_simulation(spec: SystemSpec, platform: str = "CPU", seed: int = 0, dynamics: Optional[str] = None,
                    threads: Optional[int] = None, integrator: Optional[openmm.Integrator] = None) -> app.Simulation:
    """An OpenMM Simulation of ``spec`` at its initial positions with seeded velocities and integrator
    (``spec.integrator(seed, dynamics)`` unless ``integrator`` is given)."""
    try:
        chosen = openmm.Platform.getPlatformByName(platform)
    except openmm.OpenMMException:
        available = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {platform!r} is not available here; choose one of {available}") from None
    properties = {"Threads": str(threads)} if threads and platform == "CPU" else {}
    integrator = integrator or spec.integrator(seed, dynamics)
    simulation = app.Simulation(spec.topology, spec.system, integrator, chosen, properties)
    if spec.box_vectors is not None:
        simulation.context.setPeriodicBoxVectors(*spec.box_vectors)
    simulation.context.setPositions(spec.positions)
    simulation.context.setVelocitiesToTemperature(spec.temperature * unit.kelvin, int(seed) % (2**31 - 2) + 1)
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
                                  "resumed: remove the checkpoint to start again")
        with open(self.path, "r+b") as handle:
            handle.truncate(size)
            handle.seek(8)
            handle.write(struct.pack("<i", frames))
            handle.seek(20)
            handle.write(struct.pack("<i", max(frames - 1, 0)))

    def record(self, state: openmm.State) -> None:
        positions = state.getPositions(asNumpy=True)
        if self.atoms is not None:
            positions = positions[self.atoms]
        self._dcd.writeModel(positions, periodicBoxVectors=state.getPeriodicBoxVectors())

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
                                      f"({frames}); remove the checkpoint to start again")
            self.frames = saved[:frames]

    def record(self, state: openmm.State) -> None:
        xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        self.frames.append(xyz[:, : self.spec.toy.dim_per_particle].reshape(-1))

    def flush(self) -> None:
        x = np.array(self.frames)
        temporary = self.path.with_name(f".tmp.{self.path.name}")
        with open(temporary, "wb") as handle:
            np.savez(handle, x=x, time=self.dt * np.arange(1, len(x) + 1), system=self.spec.name,
                     temperature=self.spec.temperature, dt=self.dt)
        os.replace(temporary, self.path)

    close = flush


def _save_checkpoint(simulation: app.Simulation, checkpoint: Path) -> None:
    """Write the simulation state atomically: a run killed while writing keeps the previous checkpoint."""
    temporary = checkpoint.with_name(f".tmp.{checkpoint.name}")
    simulation.saveState(str(temporary))
    os.replace(temporary, checkpoint)


def simulate(spec: SystemSpec, steps: int, out, report_every: int = 500, seed: int = 0, platform: str = "CPU",
             dynamics: Optional[str] = None, checkpoint_every: int = 100, progress: bool = True,
             simulation: Optional[app.Simulation] = None,
             advance: Optional[Callable[[int], None]] = None, save_atoms: Optional[Sequence[int]] = None) -> Path:
    """Integrate ``steps`` steps, saving a frame every ``report_every`` steps; returns the trajectory path.

    ``save_atoms``: full-system indices of the atoms the trajectory stores (e.g.
    :func:`cvplug.selection.solute_atoms`: no water); None stores all. Toy trajectories store all.

    A run whose ``<out>.state.xml`` exists continues from it (same seed, appended frames) until ``steps``
    steps are done in total. Pass ``simulation`` to run a prepared one, and ``advance(n_steps)`` to integrate
    through something other than ``simulation.step`` (e.g. a metadynamics driver).
    """
    if not isinstance(spec, SystemSpec):
        raise ValueError(f"simulate needs a cvplug SystemSpec, got {type(spec).__name__}: build one with "
                         "cvplug.systems.from_files(...) or, for an openmm.System, from_openmm(system, positions)")
    if steps <= 0 or report_every <= 0 or steps % report_every:
        raise ValueError(f"steps ({steps}) must be a positive multiple of report_every ({report_every})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out.with_suffix(".state.xml")
    simulation = simulation or make_simulation(spec, platform, seed, dynamics)
    if checkpoint.exists():
        simulation.loadState(str(checkpoint))
        simulation.currentStep = round(simulation.context.getState().getStepCount())
    done = simulation.currentStep
    dt_frame = report_every * simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
    atoms = None
    if save_atoms is not None and len(save_atoms) < spec.n_atoms:
        atoms = np.asarray(save_atoms, dtype=np.int64)
    sink = (_ArraySink if spec.toy is not None else _DCDSink)(
        out, spec, dt_frame, done // report_every if checkpoint.exists() else None, atoms)
    healthy, recorded = True, done  # recorded: the step of the last frame on record
    try:
        with tqdm(total=steps, initial=done, unit="step", disable=not progress, desc=spec.name) as bar:
            for frame in range(done // report_every, steps // report_every):
                (advance or simulation.step)(report_every)
                sink.record(simulation.context.getState(getPositions=True, enforcePeriodicBox=False))
                recorded = simulation.currentStep
                bar.update(report_every)
                if (frame + 1) % checkpoint_every == 0:
                    sink.flush()
                    _save_checkpoint(simulation, checkpoint)
    except openmm.OpenMMException as error:
        healthy = False
        raise SimulationError(f"{spec.name} blew up near step {simulation.currentStep} ({error}); the last "
                              f"checkpoint {checkpoint} is kept. Lower the timestep, the bias height or the "
                              "stride, then run again to resume") from error
    finally:
        sink.close()
        # never overwrite a good checkpoint with a broken state, nor with one past the last frame (Ctrl-C)
        if healthy and simulation.currentStep == recorded:
            _save_checkpoint(simulation, checkpoint)
    return sink.path

