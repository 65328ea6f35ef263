"""Well-tempered metadynamics along a CV, with FES output, restarts and a PLUMED-like stride.

Well-tempered metadynamics (Barducci, Bussi & Parrinello, PRL 100, 020603, 2008) deposits Gaussians of height
``height·exp(−V(s)/(k_B ΔT))`` every ``frequency`` steps along the CV s, with ΔT = T(γ − 1) for bias factor γ;
the free energy is F(s) = −γ/(γ − 1) V(s).

Two engines evaluate the bias (both tested to give the same FES, see tests/test_bias.py):

- ``"hills"`` (default): the CV and the bias (:class:`cvplug.hills.HillsBias`, exact sum of hills) are evaluated
  together in one ``openmm.PythonForce``: one CV call per step for all components, in NumPy for plain MLP CVs
  (:mod:`cvplug.evaluate`, 8–10× cheaper than TorchScript autograd here) and through TorchScript otherwise.
- ``"openmm"``: OpenMM's ``Metadynamics``; each component is an openmm-torch TorchForce inside the
  CustomCVForce that OpenMM builds, and the bias lives on OpenMM's grid.

``stride = k > 1`` applies the bias force only every k steps, as the outer step of OpenMM's
MTSLangevinIntegrator (inner steps: the system's timestep, all other forces), like PLUMED's stride option.

Outputs in ``out_dir`` (walker 0; see below for the others): ``colvar.dat`` (time in ps, CV values, bias in
kJ/mol), the trajectory (``trajectory.dcd`` + ``trajectory.pdb``, or ``trajectory.npz`` for toys), ``fes.npz``
(grid axes, free energy in kJ/mol with minimum 0), ``fes.png`` (in kT), the bias (``hills/hills.<walker>.npy``,
or for ``"openmm"`` OpenMM's ``bias/bias_<walker>_<n>.npy`` grid plus ``bias/hills.<walker>.npy``, the hills behind it),
the settings ``metadynamics.json``, the checkpoint ``trajectory.state.xml``, the identity ``identity.json`` and
the lock ``run.lock`` (:mod:`cvplug.runs`).

**Walkers.** Walkers sharing ``out_dir`` are separate writers: each owns its files and its lock and only reads the
others' bias (``hills/hills.<k>.npy``, OpenMM's ``bias/bias_<k>_<n>.npy``). Walker 0 uses the names above;
walker k > 0 inserts ``.k`` before the first dot of each name (:func:`cvplug.runs.walker_name`):
``colvar.1.dat``, ``trajectory.1.dcd``/``.pdb``/``.state.xml``, ``metadynamics.1.json``, ``fes.1.npz``,
``identity.1.json``, ``run.1.lock``, ``run.1.toml`` (the CLI's run file). Each walker's ``fes`` is the estimate
from the bias it holds at its end (its hills and the others' as last read). Walkers must agree on the system, the
CV and the bias settings; a walker started with another CV or bias is refused.

**Restarts.** Calling again on the same ``out_dir`` with the same settings resumes the run, also after a kill;
other settings (another CV, ``frequency``, ``report_every`` …) are refused unless ``overwrite=True``, which moves
the old folder aside. Every file a checkpoint refers to — frames, colvar lines, hills, the OpenMM engine's
hills and grid — is on disk before the checkpoint is written, and on resume whatever was written after the
checkpoint is cut back, for both engines: the continued run has one frame, one colvar line per report and one
hill per deposition. (Another walker may have read hills that a killed walker later cuts back; it reads the
cut file at its next sync.)
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import systems
from cvplug.systems import SystemSpec
from .constants import openmm_seed
from .attach import AnyCV, check_compatible, cv_forces
from .evaluate import cv_evaluator
from .hills import HillsBias
from .runs import (atoms_identity, claim, cv_fingerprint, move_folder_aside, nonnegative_int, positive_int,
                   positive_number, read_json, system_identity, walker_name, write_atomic, write_json)
from .simulate import _check_save_atoms, _check_spec, _integrate, make_simulation
from .trajectory import TrajectoryError

__all__ = ["Metadynamics", "MetadynamicsResult", "build_metadynamics", "run_metadynamics", "bias_grid",
           "reweighting_factors", "ENGINES"]

ENGINES = ("hills", "openmm")


@dataclass
class MetadynamicsResult:
    """Where a metadynamics run wrote its results, plus the final free energy surface."""

    out_dir: Path
    axes: list[np.ndarray]          # grid points of each component (CV units)
    free_energy: np.ndarray          # kJ/mol, indexed [component 0, component 1, …], minimum 0
    colvar: np.ndarray               # [frames, 1 + d + 1]: time (ps), CV values, bias (kJ/mol)
    trajectory: Path


def bias_grid(cv: AnyCV, ranges: Optional[Sequence[Sequence[float]]], widths: Optional[Sequence[float]]):
    """Ranges (CV units) and Gaussian widths per component: given, or suggested by the CV's metadata."""
    meta = cv.metadata
    d = meta["n_components"]
    ranges = ranges or meta["info"].get("bias_range") or [p for p in meta["periodic"] if p is not None]
    if not ranges or len(ranges) != d:
        raise ValueError(f"give a bias range (lower, upper) for each of the {d} CV components; this CV's file "
                         "suggests none (CollectiveVariable.calibrate records suggestions)")
    try:
        ranges = [tuple(float(v) for v in r) for r in ranges]
    except (TypeError, ValueError):
        raise ValueError(f"a bias range is a pair (lower, upper) of numbers per component, got {ranges}") from None
    if any(len(r) != 2 or not (math.isfinite(r[0]) and math.isfinite(r[1])) or r[1] <= r[0] for r in ranges):
        raise ValueError(f"each bias range must be finite (lower, upper) with upper > lower, got {ranges}")
    widths = widths or meta["info"].get("bias_width") or [0.05 * (hi - lo) for lo, hi in ranges]
    if len(widths) != d:
        raise ValueError(f"give a positive Gaussian width for each of the {d} components, got {widths}")
    widths = [positive_number("a Gaussian width", w) for w in widths]
    return ranges, widths


def _free_group(system: openmm.System) -> int:
    used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    free = sorted(set(range(32)) - used)
    if not free:
        raise ValueError("all 32 force groups are in use; free one for the bias")
    return free[-1]


class _OpenMMEngine:
    """OpenMM's Metadynamics with one TorchForce per component.

    OpenMM keeps the bias on a grid and shares it with other walkers through ``bias_<id>_<n>.npy`` files in its
    bias folder; here the id is the walker index. The hills behind this walker's grid (centre, height) are kept
    in ``bias/hills.<walker>.npy`` as well, so that a resumed run rebuilds its grid exactly as it stood at the
    checkpoint and replaces the grid file that a killed run may have written past it."""

    def __init__(self, spec, cv, ranges, widths, periods, bias_factor, height, frequency, out_dir, walker):
        variables = [app.BiasVariable(force, lo, hi, width, period is not None)
                     for force, (lo, hi), width, period in zip(cv_forces(cv), ranges, widths, periods)]
        # built without a bias folder (it would write and read files at once, under a random id) …
        self.meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, bias_factor,
                                     height * unit.kilojoule_per_mole, frequency)
        self.folder = out_dir / "bias" if out_dir is not None else None
        self.walker, self.frequency = int(walker), frequency
        self.meta._id = self.walker
        self.centers: list[np.ndarray] = []
        self.heights: list[float] = []
        deposit = self.meta._addGaussian

        def record(position, height, context):
            self.centers.append(np.array(position, dtype=float))
            self.heights.append(height.value_in_unit(unit.kilojoule_per_mole))
            deposit(position, height, context)

        self.meta._addGaussian = record
        self.group = spec.system.getForce(spec.system.getNumForces() - 1).getForceGroup()
        self.axes = [np.linspace(lo, hi, v.gridWidth) for (lo, hi), v in zip(ranges, variables)]

    def _record_file(self) -> Path:
        return self.folder / f"hills.{self.walker}.npy"

    def _own_grid_files(self) -> list[tuple[int, Path]]:
        pattern = re.compile(rf"(?:bias|temp)_{self.walker}_(\d+)\.npy")
        return [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := pattern.fullmatch(p.name))]

    def resume(self, simulation) -> None:
        """Keep the hills deposited up to the step the simulation stands at (its checkpoint), rebuild this
        walker's grid from them, replace its grid file, and read the other walkers'."""
        count = simulation.currentStep // self.frequency
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        table = _read_hills(self._record_file(), len(self.axes))
        if len(table) < count:
            raise TrajectoryError(f"{self._record_file()} holds {len(table)} hills, fewer than its checkpoint "
                                  f"({count}); start over with --overwrite (overwrite=True)")
        self.centers, self.heights = list(table[:count, :-1]), list(table[:count, -1])
        self.flush()
        meta = self.meta
        meta._selfBias = np.zeros_like(meta._selfBias)
        for center, height in zip(self.centers, self.heights):
            meta._selfBias += height * self._gaussian(center)
        own = self._own_grid_files()
        for _, path in own:  # written by this walker's earlier process, possibly past the checkpoint
            path.unlink(missing_ok=True)
        meta.biasDir, meta.saveFrequency = str(self.folder), self.frequency
        meta._saveIndex = max((index for index, _ in own), default=0)  # others take the next one as newer
        meta._loadedBiases = {}
        meta._syncWithDisk()
        meta._totalBias = meta._selfBias + sum((b.bias for b in meta._loadedBiases.values()),
                                               np.zeros_like(meta._selfBias))
        if len(meta.variables) == 1:
            meta._table.setFunctionParameters(meta._totalBias.flatten(), *meta._limits)
        else:
            meta._table.setFunctionParameters(*meta._widths, meta._totalBias.flatten(), *meta._limits)
        meta._force.updateParametersInContext(simulation.context)

    def _gaussian(self, position) -> np.ndarray:
        """One unit-height hill at ``position`` on OpenMM's grid, as ``Metadynamics._addGaussian`` lays it."""
        from functools import reduce

        axes = []
        for x, v in zip(position, self.meta.variables):
            x = (x - v.minValue) / (v.maxValue - v.minValue)
            if v.periodic:
                x = x % 1.0
            dist = np.abs(np.linspace(0, 1.0, num=v.gridWidth) - x)
            if v.periodic:
                dist = np.min(np.array([dist, np.abs(dist - 1)]), axis=0)
                dist[-1] = dist[0]
            axes.append(np.exp(-0.5 * dist * dist / v._scaledVariance))
        return axes[0] if len(axes) == 1 else reduce(np.multiply.outer, reversed(axes))

    def flush(self) -> None:
        """Write this walker's hills (the grid file is written by OpenMM at every deposition)."""
        if self.folder is not None:
            table = np.column_stack([np.reshape(self.centers, (len(self.heights), len(self.axes))),
                                     np.asarray(self.heights, dtype=float)])
            write_atomic(self._record_file(), lambda handle: np.save(handle, table))

    def advance(self, simulation, steps):
        self.meta.step(simulation, steps)

    def values(self, simulation) -> np.ndarray:
        return np.array(self.meta.getCollectiveVariables(simulation))

    def bias_energy(self, simulation, values) -> float:
        state = simulation.context.getState(getEnergy=True, groups={self.group})
        return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    def free_energy(self) -> np.ndarray:
        free = self.meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole).T  # OpenMM: [last, …, first]
        return free - free.min()

    def close(self):
        self.flush()


def _read_hills(path: Path, d: int) -> np.ndarray:
    """A hills table [hills, d + 1] (centres, height), empty if there is no file."""
    if not path.exists():
        return np.zeros((0, d + 1))
    try:
        return np.load(path).reshape(-1, d + 1)
    except (ValueError, OSError) as error:
        raise TrajectoryError(f"{path} is damaged ({error}); start over with --overwrite (overwrite=True)") \
            from None


class _HillsEngine:
    """CV and hills bias evaluated together in one PythonForce."""

    SYNC_EVERY = 10  # depositions between writes of the hills file

    def __init__(self, spec, cv, ranges, widths, periods, bias_factor, height, frequency, out_dir, walker,
                 reprojectable: bool = False):
        self.module = cv.compiled()
        self.evaluate = cv_evaluator(self.module)
        self._positions = np.empty((spec.system.getNumParticles(), 3))
        self.deposits: Optional[list[np.ndarray]] = [] if reprojectable else None  # positions (nm) of each hill
        folder = out_dir / "hills" if out_dir is not None else None
        self.bias = HillsBias(widths, periods, spec.temperature, bias_factor, height, folder, walker)
        self.bias.use_grid(ranges)
        self.frequency = frequency
        self.group = _free_group(spec.system)
        force = openmm.PythonForce(self._compute)
        force.setForceGroup(self.group)
        force.setName("cvplug hills bias")
        spec.system.addForce(force)
        self.axes = [np.linspace(lo, hi, int(np.ceil(5 * (hi - lo) / w))) for (lo, hi), w in zip(ranges, widths)]

    def _compute(self, state: openmm.State):
        """Bias energy (kJ/mol) and forces (kJ/mol/nm) at the state's positions."""
        # State.getPositions(asNumpy=True) wraps the array in units (≈ 50 µs a call here); read it directly, in nm
        state._getVectorAsNumpy(openmm.State.Positions, self._positions)
        s, pullback = self.evaluate(self._positions)
        energy, gradient = self.bias(s)
        return energy, -pullback(gradient)

    def resume(self, simulation) -> None:
        """Drop this walker's hills deposited after the step the simulation resumed from."""
        count = simulation.currentStep // self.frequency
        if len(self.bias.heights) < count:
            raise TrajectoryError(f"this walker's hills file in {self.bias.folder} holds {len(self.bias.heights)} "
                                  f"hills, fewer than its checkpoint ({count}); start over with --overwrite "
                                  "(overwrite=True)")
        self.bias.keep(count)

    def flush(self) -> None:
        """Write this walker's hills."""
        self.bias.save()

    def advance(self, simulation, steps):
        while steps > 0:
            chunk = min(steps, self.frequency - simulation.currentStep % self.frequency)
            simulation.step(chunk)
            steps -= chunk
            if simulation.currentStep % self.frequency == 0:
                positions = self.positions(simulation)
                if self.deposits is not None:
                    self.deposits.append(positions)
                self.bias.deposit(self.cv_values(positions))
                if len(self.bias.heights) % self.SYNC_EVERY == 0:
                    self.bias.sync()

    @staticmethod
    def positions(simulation) -> np.ndarray:
        """Current positions (nm) of the simulation."""
        state = simulation.context.getState(getPositions=True)
        return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    def cv_values(self, positions: np.ndarray) -> np.ndarray:
        """The current CV at ``positions`` [n_atoms, 3] (nm)."""
        return self.evaluate(positions)[0]

    def values(self, simulation) -> np.ndarray:
        return self.cv_values(self.positions(simulation))

    def replace_cv(self, cv) -> None:
        """Switch to a new CV during the run, depositing the hills again, in order, at the new CV values of the
        configurations where they were deposited (:meth:`HillsBias.redeposit`), so the bias keeps pushing away
        from the same configurations."""
        if self.deposits is None:
            raise ValueError("this run keeps no hill configurations; build it with reprojectable=True")
        if cv.metadata["n_components"] != self.bias.centers.shape[1]:
            raise ValueError("the new CV must have as many components as the old one")
        self.module = cv.compiled()
        self.evaluate = cv_evaluator(self.module)
        if self.deposits:
            with torch.no_grad():
                self.bias.redeposit(self.module(torch.from_numpy(np.stack(self.deposits))).double().numpy())

    def bias_energy(self, simulation, values) -> float:
        return self.bias(values)[0]

    def free_energy(self) -> np.ndarray:
        return self.bias.free_energy(self.axes)

    def close(self):
        self.bias.sync()


class _Stepper:
    """Advances the simulation through an engine and appends time, CV values and bias to the colvar file."""

    def __init__(self, engine, simulation: app.Simulation, colvar: Path, names: Sequence[str], report_every: int):
        self.engine, self.simulation, self.colvar, self.report_every = engine, simulation, colvar, report_every
        self.dt = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
        self.header = f"# time_ps {' '.join(names)} bias_kJmol\n"
        self._handle = None

    def resume(self) -> None:
        """Cut the colvar file to the lines of the frames before the step the simulation stands at (its
        checkpoint, or 0), and the engine's hills likewise."""
        lines = self.simulation.currentStep // self.report_every
        data = []
        if self.colvar.exists():
            data = [line for line in self.colvar.read_text().splitlines(keepends=True) if not line.startswith("#")]
        if len(data) < lines:
            raise TrajectoryError(f"{self.colvar} holds {len(data)} lines, fewer than its checkpoint ({lines}); "
                                  "start over with --overwrite (overwrite=True)")
        kept = data[:lines]
        if kept and not kept[-1].endswith("\n"):
            raise TrajectoryError(f"{self.colvar} has a torn line before its checkpoint; start over with "
                                  "--overwrite (overwrite=True)")
        if len(data) != lines or not self.colvar.exists():
            write_atomic(self.colvar, self.header + "".join(kept))
        self.engine.resume(self.simulation)
        self._handle = open(self.colvar, "a")

    def flush(self) -> None:
        """Put the colvar lines and the engine's hills on disk (before a checkpoint)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self.engine.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __call__(self, steps: int) -> None:
        self.engine.advance(self.simulation, steps)
        values = self.engine.values(self.simulation)
        bias = self.engine.bias_energy(self.simulation, values)
        self._handle.write(" ".join(f"{v:.6f}" for v in (self.simulation.currentStep * self.dt, *values, bias))
                           + "\n")


def _integrator(spec: SystemSpec, seed: int, stride: int, bias_group: int, dynamics: Optional[str]):
    if stride == 1:
        return spec.integrator(seed, dynamics)
    if (dynamics or spec.dynamics) != "langevin":
        raise ValueError("stride > 1 needs Langevin dynamics (OpenMM's MTSLangevinIntegrator)")
    groups = {spec.system.getForce(i).getForceGroup() for i in range(spec.system.getNumForces())} - {bias_group}
    integrator = openmm.MTSLangevinIntegrator(spec.temperature, spec.friction, stride * spec.timestep,
                                              [(g, stride) for g in sorted(groups)] + [(bias_group, 1)])
    integrator.setRandomNumberSeed(openmm_seed(seed))
    return integrator


@dataclass
class Metadynamics:
    """A prepared metadynamics run: the Simulation, its bias engine and the stride (see :func:`build_metadynamics`)."""

    simulation: app.Simulation
    engine: object
    stride: int
    _started: bool = False

    def step(self, md_steps: int) -> None:
        """Advance by ``md_steps`` MD steps (a multiple of the stride), depositing hills on the way. The first
        call brings the engine's bias files to the simulation's step (hills after it are dropped)."""
        if not self._started:
            self.engine.resume(self.simulation)
            self._started = True
        self.engine.advance(self.simulation, md_steps // self.stride)


def _check_bias_settings(spec, bias_factor, height, frequency, engine, stride, walker) -> None:
    """Raise ValueError naming the first bias setting out of range (before anything is built or written)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    positive_int("frequency", frequency)
    positive_int("stride", stride)
    if frequency % stride:
        raise ValueError(f"frequency ({frequency}) must be a multiple of stride ({stride})")
    if positive_number("bias_factor", bias_factor) <= 1:
        raise ValueError(f"bias_factor must be > 1 for well-tempered metadynamics, got {bias_factor}")
    positive_number("height (kJ/mol)", height)
    nonnegative_int("walker", walker)
    _check_spec(spec)


def build_metadynamics(spec: SystemSpec, cv: AnyCV, *, bias_factor: float = 8.0, height: float = 1.2,
                       frequency: int = 500, ranges=None, widths=None, engine: str = "hills", stride: int = 1,
                       walker: int = 0, dynamics: Optional[str] = None, seed: int = 0, platform: str = "CPU",
                       threads: Optional[int] = None, out_dir=None, reprojectable: bool = False) -> Metadynamics:
    """Add the bias for ``cv`` to ``spec.system`` and create the Simulation; parameters as in
    :func:`run_metadynamics`. ``out_dir`` holds the bias files (this walker's and the others'); with None the
    bias lives in memory only. Nothing here locks ``out_dir``: :func:`run_metadynamics` owns its output.
    ``reprojectable`` (``"hills"`` engine) keeps the configuration of every hill so that the CV can be replaced
    during the run (``engine.replace_cv``; see :mod:`cvplug.online`)."""
    _check_bias_settings(spec, bias_factor, height, frequency, engine, stride, walker)
    check_compatible(spec.system, cv, spec.topology)
    ranges, widths = bias_grid(cv, ranges, widths)
    periods = [tuple(p) if p is not None else None for p in cv.metadata["periodic"]]
    if engine == "openmm" and len({p is None for p in periods}) > 1:
        raise ValueError("OpenMM's Metadynamics needs all CV components periodic or none; use engine='hills'")
    out_dir = Path(out_dir) if out_dir is not None else None
    if engine == "hills":
        driver = _HillsEngine(spec, cv, ranges, widths, periods, bias_factor, height, frequency // stride, out_dir,
                              walker, reprojectable)
    elif reprojectable:
        raise ValueError("only the 'hills' engine can replace its CV during a run")
    else:
        driver = _OpenMMEngine(spec, cv, ranges, widths, periods, bias_factor, height, frequency // stride,
                               out_dir, walker)
    simulation = make_simulation(spec, platform, seed, threads=threads,
                                 integrator=_integrator(spec, seed, stride, driver.group, dynamics))
    return Metadynamics(simulation, driver, stride)


def _shared(identity: dict) -> dict:
    """What all walkers of one output must agree on."""
    return {key: identity.get(key) for key in ("kind", "system", "cv", "bias")}


def run_metadynamics(spec, cv: AnyCV, steps: int, out_dir, *, bias_factor: float = 8.0,
                     height: float = 1.2, frequency: int = 500, ranges=None, widths=None,
                     report_every: int = 500, engine: str = "hills", stride: int = 1, walker: int = 0,
                     dynamics: Optional[str] = None, seed: int = 0, platform: str = "CPU",
                     threads: Optional[int] = None, progress: bool = True,
                     save_atoms: Optional[Sequence[int]] = None, overwrite: bool = False,
                     on_start: Optional[Callable[[], None]] = None) -> MetadynamicsResult:
    """Run well-tempered metadynamics of ``spec`` biased along ``cv`` for ``steps`` MD steps.

    Parameters
    ----------
    spec : a SystemSpec (its ``system`` gets the bias force) or anything :func:`cvplug.systems.resolve` takes.
    bias_factor : γ > 1 (dimensionless); ΔT = T(γ − 1).
    height : initial Gaussian height (kJ/mol).
    frequency : MD steps between depositions.
    ranges : per component (lower, upper), CV units: the grid of the FES (and of the bias for ``"openmm"``).
        Default: the CV's calibrated suggestion, or its period.
    widths : per component Gaussian standard deviation, CV units.
    report_every : MD steps between saved frames and colvar lines; ``steps`` must be a multiple of it.
    engine : ``"hills"`` (one PythonForce) or ``"openmm"`` (OpenMM's Metadynamics with TorchForces).
    stride : apply the bias every ``stride`` MD steps (multiple-time-step Langevin); ``steps``, ``frequency``
        and ``report_every`` must be multiples of it.
    walker : index of this walker (≥ 0); walkers sharing ``out_dir`` share their bias and write their own files
        (see the module docstring).
    dynamics : ``"langevin"`` or ``"brownian"``, overriding the system's default.
    save_atoms : full-system indices of the atoms the trajectory stores; None: all (see :func:`simulate`).
    overwrite : start over: move a run with other settings (or this one) aside to ``<out_dir>.old-<time>``
        instead of refusing it or resuming it.
    on_start : called once this walker owns ``out_dir`` (locked, identity checked), before it writes there.
    """
    spec = systems.resolve(spec)
    _check_bias_settings(spec, bias_factor, height, frequency, engine, stride, walker)
    steps, report_every = positive_int("steps", steps), positive_int("report_every", report_every)
    if report_every % stride or steps % stride:
        raise ValueError(f"steps ({steps}) and report_every ({report_every}) must be multiples of stride ({stride})")
    if steps % report_every:
        raise ValueError(f"steps ({steps}) must be a multiple of report_every ({report_every})")
    if dynamics not in (None, "langevin", "brownian"):
        raise ValueError(f"dynamics must be 'langevin' or 'brownian', not {dynamics!r}")
    check_compatible(spec.system, cv, spec.topology)
    ranges, widths = bias_grid(cv, ranges, widths)
    atoms = _check_save_atoms(spec, save_atoms)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output {out_dir} is a file; give a folder")
    names = cv.metadata["names"]
    settings = {"engine": engine, "ranges": ranges, "widths": widths, "periods": cv.metadata["periodic"],
                "bias_factor": bias_factor, "height": height, "frequency": frequency, "stride": stride,
                "temperature": spec.temperature, "walker": walker, "names": names}
    identity = {"kind": "bias", "system": system_identity(spec), "cv": cv_fingerprint(cv),
                "bias": {"engine": engine, "bias_factor": bias_factor, "height": height, "ranges": ranges,
                         "widths": widths},
                "walker": walker, "frequency": frequency, "report_every": report_every, "stride": stride,
                "seed": int(seed), "dynamics": dynamics or spec.dynamics, "save_atoms": atoms_identity(atoms)}

    def file(name: str) -> Path:
        return out_dir / walker_name(name, walker)

    trajectory = file("trajectory.dcd" if spec.toy is None else "trajectory.npz")
    found = [file("colvar.dat"), file("metadynamics.json"), trajectory.with_suffix(".state.xml"),
             trajectory, out_dir / "hills" / f"hills.{walker}.npy", out_dir / "bias" / f"hills.{walker}.npy"]
    others = [(path, _shared) for path in sorted(out_dir.glob("identity*.json")) if path != file("identity.json")]
    with claim(file("run.lock"), file("identity.json"), identity, found=found, overwrite=overwrite,
               start_over=lambda lock: move_folder_aside(out_dir, lock), compatible=others,
               what=str(out_dir) + (f" (walker {walker})" if walker else "")):
        if on_start is not None:
            on_start()
        write_json(file("metadynamics.json"), settings)
        run = build_metadynamics(spec, cv, bias_factor=bias_factor, height=height, frequency=frequency,
                                 ranges=ranges, widths=widths, engine=engine, stride=stride, walker=walker,
                                 dynamics=dynamics, seed=seed, platform=platform, threads=threads, out_dir=out_dir)
        driver = run.engine
        stepper = _Stepper(driver, run.simulation, file("colvar.dat"), names, report_every // stride)
        try:
            path = _integrate(spec, steps // stride, trajectory, report_every // stride, run.simulation, stepper,
                              checkpoint_every=max(1, 20 * frequency // report_every), progress=progress,
                              atoms=atoms, resume=stepper.resume, before_checkpoint=stepper.flush)
        finally:
            stepper.close()
        driver.close()  # this walker's hills saved, the other walkers' read once more
        free_energy = driver.free_energy()
        write_atomic(file("fes.npz"), lambda handle: np.savez(
            handle, free_energy=free_energy, names=np.array(names), **{f"axis{k}": a for k, a in enumerate(driver.axes)}))
        from .plots import plot_fes
        plot_fes(driver.axes, free_energy / spec.kT, names, file("fes.png"), units="kT", vmax=25.0)
        colvar = np.loadtxt(file("colvar.dat"), ndmin=2)
    return MetadynamicsResult(out_dir, driver.axes, free_energy, colvar, path)


def reweighting_factors(out_dir, walker: int = 0) -> np.ndarray:
    """Per-frame weights (sum 1) of a finished ``"hills"`` run: w ∝ exp(V_final(s)/kT) at each colvar line of
    ``walker``, V_final the bias of all walkers' hills (and inherited ones) in ``out_dir``.

    The static final-bias estimator of well-tempered metadynamics: exact once the bias has converged,
    otherwise biased towards the last-filled regions. Reads only: the run may still be going.
    """
    out_dir = Path(out_dir)
    settings = read_json(out_dir / walker_name("metadynamics.json", walker))
    if settings is None:
        raise FileNotFoundError(f"no metadynamics settings of walker {walker} in {out_dir}")
    if settings["engine"] != "hills":
        raise ValueError(f"reweighting needs a run with engine='hills'; {out_dir} used {settings['engine']!r}")
    bias = HillsBias(settings["widths"], settings["periods"], settings["temperature"], settings["bias_factor"],
                     settings["height"], folder=out_dir / "hills", walker=settings["walker"], readonly=True)
    colvar = np.loadtxt(out_dir / walker_name("colvar.dat", walker), ndmin=2)
    values = np.array([bias(s)[0] for s in colvar[:, 1:-1]])
    kT = bias.delta_kT / (settings["bias_factor"] - 1)
    weights = np.exp((values - values.max()) / kT)
    return weights / weights.sum()
