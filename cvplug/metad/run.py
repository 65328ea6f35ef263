"""The metadynamics run driver: build a biased simulation, run it with a colvar file, checkpoints and resume, and
write its free energy surface.

:func:`run_metadynamics` runs well-tempered metadynamics (:class:`cvplug.metad.settings.WellTempered`) along a CV
with one of two engines (:mod:`cvplug.metad.engine`; both tested to give the same FES, see tests/metad/test_run.py):
``"hills"`` (default, :mod:`cvplug.metad.hills_engine`) or ``"openmm"`` (:mod:`cvplug.metad.openmm_engine`).
:func:`build_metadynamics` prepares the Simulation and its engine without running or owning any output (the
continuous mode, benchmarks).

Outputs in ``out_dir`` (walker 0; see below for the others): ``colvar.dat`` (time in ps, CV values, bias in
kJ/mol), the trajectory (``trajectory.dcd`` + ``trajectory.pdb``, or ``trajectory.npz`` for toys), ``fes.npz``
(grid axes, free energy in kJ/mol with minimum 0), ``fes.png`` (in kT), the bias (``hills/hills.<walker>.npy``,
or for ``"openmm"`` OpenMM's ``bias/bias_<walker>_<n>.npy`` grid plus ``bias/hills.<walker>.npy``, the hills behind
it), the settings ``metadynamics.json``, the checkpoint ``trajectory.state.xml``, the identity ``identity.json``
and the lock ``run.lock`` (:mod:`cvplug.runs`).

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

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import openmm.app as app

from cvplug import systems
from cvplug.systems import SystemSpec
from ..attach import AnyCV, check_compatible
from ..runs import (atoms_identity, claim, cv_fingerprint, move_folder_aside, nonnegative_int, positive_int,
                    system_identity, walker_name, write_json)
from ..simulate import _check_save_atoms, _check_spec, _integrate, make_simulation
from .colvar import Colvar, read_colvar
from .engine import BiasEngine
from .fes import final_bias_weights, save_fes
from .hills_engine import HillsEngine
from .integrator import Stepper, bias_integrator
from .openmm_engine import OpenMMEngine
from .settings import WellTempered

__all__ = ["BiasedSimulation", "MetadynamicsResult", "build_metadynamics", "run_metadynamics"]


@dataclass
class MetadynamicsResult:
    """Where a metadynamics run wrote its results, the final free energy surface, and its (closed) engine."""

    out_dir: Path
    axes: list[np.ndarray]          # grid points of each component (CV units)
    free_energy: np.ndarray          # kJ/mol, indexed [component 0, component 1, …], minimum 0
    colvar: np.ndarray               # [frames, 1 + d + 1]: time (ps), CV values, bias (kJ/mol)
    trajectory: Path
    engine: BiasEngine
    kT: float                        # kJ/mol

    def reweighting_factors(self) -> np.ndarray:
        """Per-frame weights (sum 1) w ∝ exp(V_final(s)/kT) at each colvar line, from the final bias in memory
        (``"hills"`` engine; see :func:`cvplug.metad.fes.reweighting_factors` for a run on disk)."""
        if not isinstance(self.engine, HillsEngine):
            raise ValueError("reweighting needs a run with engine='hills'")
        return final_bias_weights(self.engine.bias, self.colvar[:, 1:-1], self.kT)


@dataclass
class BiasedSimulation:
    """A prepared metadynamics run: the Simulation, its bias engine and the stride (see :func:`build_metadynamics`)."""

    simulation: app.Simulation
    engine: BiasEngine
    stride: int
    _started: bool = False

    def step(self, md_steps: int) -> None:
        """Advance by ``md_steps`` MD steps (a multiple of the stride), depositing hills on the way. The first
        call brings the engine's bias files to the simulation's step (hills after it are dropped)."""
        if not self._started:
            self.engine.resume(self.simulation)
            self._started = True
        self.engine.advance(self.simulation, md_steps // self.stride)


def build_metadynamics(spec: SystemSpec, cv: AnyCV, settings: Optional[WellTempered] = None, *, walker: int = 0,
                       dynamics: Optional[str] = None, seed: int = 0, platform: str = "CPU",
                       threads: Optional[int] = None, out_dir=None, reprojectable: bool = False, inherited=None,
                       **options) -> BiasedSimulation:
    """Add the bias for ``cv`` to ``spec.system`` and create the Simulation; parameters as in
    :func:`run_metadynamics`. ``out_dir`` holds the bias files (this walker's and the others'); with None the
    bias lives in memory only. Nothing here locks ``out_dir``: :func:`run_metadynamics` owns its output.
    ``reprojectable`` (``"hills"`` engine) keeps the configuration of every hill so that the CV can be replaced
    during the run (``engine.replace_cv``; see :mod:`cvplug.online`)."""
    settings = WellTempered.from_options(settings, **options)
    nonnegative_int("walker", walker)
    _check_spec(spec)
    check_compatible(spec.system, cv, spec.topology)
    settings = settings.for_cv(cv)  # ranges and widths checked before the system gets a force
    out_dir = Path(out_dir) if out_dir is not None else None
    if settings.engine == "hills":
        engine = HillsEngine(spec, cv, settings, out_dir, walker, reprojectable, inherited)
    elif reprojectable or inherited is not None:
        raise ValueError("only the 'hills' engine can replace its CV during a run or inherit hills")
    else:
        engine = OpenMMEngine(spec, cv, settings, out_dir, walker)
    integrator = bias_integrator(spec, seed, settings.stride, engine.group, dynamics)
    simulation = make_simulation(spec, platform, seed, threads=threads, integrator=integrator)
    return BiasedSimulation(simulation, engine, settings.stride)


def _shared(identity: dict) -> dict:
    """What all walkers of one output must agree on."""
    return {key: identity.get(key) for key in ("kind", "system", "cv", "bias")}


def run_metadynamics(spec, cv: AnyCV, steps: int, out_dir, settings: Optional[WellTempered] = None, *,
                     report_every: int = 500, walker: int = 0, dynamics: Optional[str] = None, seed: int = 0,
                     platform: str = "CPU", threads: Optional[int] = None, progress: bool = True,
                     save_atoms: Optional[Sequence[int]] = None, overwrite: bool = False,
                     on_start: Optional[Callable[[], None]] = None, inherited=None, outputs: bool = True,
                     **options) -> MetadynamicsResult:
    """Run well-tempered metadynamics of ``spec`` biased along ``cv`` for ``steps`` MD steps.

    Parameters
    ----------
    spec : a SystemSpec or anything :func:`cvplug.systems.resolve` takes; left as given (the bias force goes on a
        copy of its System, so one spec can serve many runs).
    settings : the bias (:class:`WellTempered`: height kJ/mol, bias factor, frequency in MD steps, widths and
        ranges in CV units, engine, stride); default ``WellTempered()``.
    **options : fields of :class:`WellTempered` replacing those of ``settings`` (``height=0.5``, ``engine="openmm"``).
    report_every : MD steps between saved frames and colvar lines; ``steps`` must be a multiple of it, and both
        multiples of the stride.
    walker : index of this walker (≥ 0); walkers sharing ``out_dir`` share their bias and write their own files
        (see the module docstring).
    dynamics : ``"langevin"`` or ``"brownian"``, overriding the system's default.
    save_atoms : full-system indices of the atoms the trajectory stores; None: all (see :func:`cvplug.simulate.simulate`).
    overwrite : start over: move a run with other settings (or this one) aside to ``<out_dir>.old-<time>``
        instead of refusing it or resuming it.
    on_start : called once this walker owns ``out_dir`` (locked, identity checked), before it writes there.
    inherited : (centres, heights kJ/mol) of hills the ``"hills"`` bias starts from (the learn loop's earlier
        rounds on this CV).
    outputs : write ``fes.npz`` and ``fes.png`` at the end (False: one segment of a longer run).
    """
    spec = systems.resolve(spec)
    spec = dataclasses.replace(spec, system=copy.deepcopy(spec.system))  # the caller's spec stays as given
    settings = WellTempered.from_options(settings, **options)
    stride = settings.stride
    nonnegative_int("walker", walker)
    _check_spec(spec)
    steps, report_every = positive_int("steps", steps), positive_int("report_every", report_every)
    if report_every % stride or steps % stride:
        raise ValueError(f"steps ({steps}) and report_every ({report_every}) must be multiples of stride ({stride})")
    if steps % report_every:
        raise ValueError(f"steps ({steps}) must be a multiple of report_every ({report_every})")
    if dynamics not in (None, "langevin", "brownian"):
        raise ValueError(f"dynamics must be 'langevin' or 'brownian', not {dynamics!r}")
    check_compatible(spec.system, cv, spec.topology)
    settings = settings.for_cv(cv)
    ranges, widths = list(settings.ranges), list(settings.widths)
    atoms = _check_save_atoms(spec, save_atoms)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output {out_dir} is a file; give a folder")
    names = cv.metadata["names"]
    recorded = {"engine": settings.engine, "ranges": ranges, "widths": widths, "periods": cv.metadata["periodic"],
                "bias_factor": settings.bias_factor, "height": settings.height, "frequency": settings.frequency,
                "stride": stride, "temperature": spec.temperature, "walker": walker, "names": names}
    identity = {"kind": "bias", "system": system_identity(spec), "cv": cv_fingerprint(cv),
                "bias": {"engine": settings.engine, "bias_factor": settings.bias_factor, "height": settings.height,
                         "ranges": ranges, "widths": widths},
                "walker": walker, "frequency": settings.frequency, "report_every": report_every, "stride": stride,
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
        write_json(file("metadynamics.json"), recorded)
        run = build_metadynamics(spec, cv, settings, walker=walker, dynamics=dynamics, seed=seed, platform=platform,
                                 threads=threads, out_dir=out_dir, inherited=inherited)
        engine = run.engine
        colvar = Colvar(file("colvar.dat"), names)
        stepper = Stepper(engine, run.simulation, colvar, report_every // stride)
        try:
            path = _integrate(spec, steps // stride, trajectory, report_every // stride, run.simulation, stepper,
                              checkpoint_every=max(1, 20 * settings.frequency // report_every), progress=progress,
                              atoms=atoms, resume=stepper.resume, before_checkpoint=stepper.flush)
        finally:
            colvar.close()
        engine.close()  # this walker's hills saved, the other walkers' read once more
        free_energy = engine.free_energy()
        if outputs:
            save_fes(file("fes.npz"), engine.axes, free_energy, names, spec.kT)
        lines = read_colvar(file("colvar.dat"))
    return MetadynamicsResult(out_dir, engine.axes, free_energy, lines, path, engine, spec.kT)
