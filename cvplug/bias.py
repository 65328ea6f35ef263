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

Outputs in ``out_dir``: ``colvar.dat`` (time in ps, CV values, bias in kJ/mol), the trajectory
(``trajectory.dcd`` + ``trajectory.pdb``, or ``trajectory.npz`` for toys), ``fes.npz`` (grid axes, free energy in
kJ/mol with minimum 0), ``fes.png``, the bias (``hills/hills.<walker>.npy`` or OpenMM's ``bias/``) and the
checkpoint ``trajectory.state.xml``. Calling again on the same ``out_dir`` resumes the run, also after a kill:
the trajectory, ``colvar.dat`` and (``"hills"`` engine) the hills are cut back to the checkpoint first.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import systems
from cvplug.systems import SystemSpec
from .attach import AnyCV, check_compatible, cv_forces
from .evaluate import cv_evaluator
from .hills import HillsBias
from .simulate import make_simulation, simulate

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
    widths = widths or meta["info"].get("bias_width") or [0.05 * (hi - lo) for lo, hi in ranges]
    if len(widths) != d or min(widths) <= 0:
        raise ValueError(f"give a positive Gaussian width for each of the {d} components, got {widths}")
    return [tuple(map(float, r)) for r in ranges], [float(w) for w in widths]


def _free_group(system: openmm.System) -> int:
    used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    free = sorted(set(range(32)) - used)
    if not free:
        raise ValueError("all 32 force groups are in use; free one for the bias")
    return free[-1]


class _OpenMMEngine:
    """OpenMM's Metadynamics with one TorchForce per component."""

    def __init__(self, spec, cv, ranges, widths, periods, bias_factor, height, frequency, out_dir, walker):
        variables = [app.BiasVariable(force, lo, hi, width, period is not None)
                     for force, (lo, hi), width, period in zip(cv_forces(cv), ranges, widths, periods)]
        files = {}
        if out_dir is not None:
            (out_dir / "bias").mkdir(parents=True, exist_ok=True)
            files = {"saveFrequency": frequency, "biasDir": str(out_dir / "bias")}
        self.meta = app.Metadynamics(spec.system, variables, spec.temperature * unit.kelvin, bias_factor,
                                     height * unit.kilojoule_per_mole, frequency, **files)
        self.group = spec.system.getForce(spec.system.getNumForces() - 1).getForceGroup()
        self.axes = [np.linspace(lo, hi, v.gridWidth) for (lo, hi), v in zip(ranges, variables)]

    def resume(self, simulation) -> None:
        """OpenMM's bias files cannot be cut back: after a kill they may hold hills laid after the checkpoint."""

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
        pass


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
        self.bias.keep(simulation.currentStep // self.frequency)

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
    """Advances the simulation through an engine and appends time, CV values and bias to colvar.dat."""

    def __init__(self, engine, simulation: app.Simulation, colvar: Path, names: Sequence[str]):
        self.engine, self.simulation, self.colvar = engine, simulation, colvar
        self.dt = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
        self._resumed = False
        if not colvar.exists():
            colvar.write_text(f"# time_ps {' '.join(names)} bias_kJmol\n")

    def _resume(self, lines: int) -> None:
        """Keep the first ``lines`` colvar lines: those written after the checkpoint the run resumed from go."""
        text = self.colvar.read_text().splitlines(keepends=True)
        header = [line for line in text if line.startswith("#")]
        data = [line for line in text if not line.startswith("#")]
        if len(data) > lines:
            temporary = self.colvar.with_name(f".tmp.{self.colvar.name}")
            temporary.write_text("".join(header + data[:lines]))
            os.replace(temporary, self.colvar)

    def __call__(self, steps: int) -> None:
        if not self._resumed:  # the simulation now stands at its checkpoint (or at step 0)
            self._resume(self.simulation.currentStep // steps)
            self.engine.resume(self.simulation)
            self._resumed = True
        self.engine.advance(self.simulation, steps)
        values = self.engine.values(self.simulation)
        bias = self.engine.bias_energy(self.simulation, values)
        with open(self.colvar, "a") as handle:
            handle.write(" ".join(f"{v:.6f}" for v in (self.simulation.currentStep * self.dt, *values, bias)) + "\n")


def _integrator(spec: SystemSpec, seed: int, stride: int, bias_group: int, dynamics: Optional[str]):
    if stride == 1:
        return spec.integrator(seed, dynamics)
    if (dynamics or spec.dynamics) != "langevin":
        raise ValueError("stride > 1 needs Langevin dynamics (OpenMM's MTSLangevinIntegrator)")
    groups = {spec.system.getForce(i).getForceGroup() for i in range(spec.system.getNumForces())} - {bias_group}
    integrator = openmm.MTSLangevinIntegrator(spec.temperature, spec.friction, stride * spec.timestep,
                                              [(g, stride) for g in sorted(groups)] + [(bias_group, 1)])
    integrator.setRandomNumberSeed(int(seed) % (2**31 - 2) + 1)
    return integrator


@dataclass
class Metadynamics:
    """A prepared metadynamics run: the Simulation, its bias engine and the stride (see :func:`build_metadynamics`)."""

    simulation: app.Simulation
    engine: object
    stride: int

    def step(self, md_steps: int) -> None:
        """Advance by ``md_steps`` MD steps (a multiple of the stride), depositing hills on the way."""
        self.engine.advance(self.simulation, md_steps // self.stride)


def build_metadynamics(spec: SystemSpec, cv: AnyCV, *, bias_factor: float = 8.0, height: float = 1.2,
                       frequency: int = 500, ranges=None, widths=None, engine: str = "hills", stride: int = 1,
                       walker: int = 0, dynamics: Optional[str] = None, seed: int = 0, platform: str = "CPU",
                       threads: Optional[int] = None, out_dir=None, reprojectable: bool = False) -> Metadynamics:
    """Add the bias for ``cv`` to ``spec.system`` and create the Simulation; parameters as in
    :func:`run_metadynamics`. ``out_dir`` holds the bias files; with None the bias lives in memory only.
    ``reprojectable`` (``"hills"`` engine) keeps the configuration of every hill so that the CV can be replaced
    during the run (``engine.replace_cv``; see :mod:`cvplug.online`)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if stride < 1 or frequency % stride:
        raise ValueError(f"frequency ({frequency}) must be a multiple of stride ({stride})")
    if bias_factor <= 1:
        raise ValueError(f"bias_factor must be > 1 for well-tempered metadynamics, got {bias_factor}")
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


def run_metadynamics(spec, cv: AnyCV, steps: int, out_dir, *, bias_factor: float = 8.0,
                     height: float = 1.2, frequency: int = 500, ranges=None, widths=None,
                     report_every: int = 500, engine: str = "hills", stride: int = 1, walker: int = 0,
                     dynamics: Optional[str] = None, seed: int = 0, platform: str = "CPU",
                     threads: Optional[int] = None, progress: bool = True,
                     save_atoms: Optional[Sequence[int]] = None) -> MetadynamicsResult:
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
    report_every : MD steps between saved frames and colvar lines.
    engine : ``"hills"`` (one PythonForce) or ``"openmm"`` (OpenMM's Metadynamics with TorchForces).
    stride : apply the bias every ``stride`` MD steps (multiple-time-step Langevin); ``frequency`` and
        ``report_every`` must be multiples of it.
    walker : index of this walker; runs sharing ``out_dir`` with different walkers share their bias
        (``"hills"`` engine).
    dynamics : ``"langevin"`` or ``"brownian"``, overriding the system's default.
    save_atoms : full-system indices of the atoms the trajectory stores; None: all (see :func:`simulate`).
    """
    spec = systems.resolve(spec)
    if report_every % stride or steps % stride:
        raise ValueError(f"steps ({steps}) and report_every ({report_every}) must be multiples of stride ({stride})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ranges, widths = bias_grid(cv, ranges, widths)
    (out_dir / "metadynamics.json").write_text(json.dumps({
        "engine": engine, "ranges": ranges, "widths": widths, "periods": cv.metadata["periodic"],
        "bias_factor": bias_factor, "height": height, "frequency": frequency, "stride": stride,
        "temperature": spec.temperature, "walker": walker, "names": cv.metadata["names"]}, indent=2))
    run = build_metadynamics(spec, cv, bias_factor=bias_factor, height=height, frequency=frequency, ranges=ranges,
                             widths=widths, engine=engine, stride=stride, walker=walker, dynamics=dynamics,
                             seed=seed, platform=platform, threads=threads, out_dir=out_dir)
    driver = run.engine
    stepper = _Stepper(driver, run.simulation, out_dir / "colvar.dat", cv.metadata["names"])
    try:
        trajectory = simulate(spec, steps // stride, out_dir / "trajectory", report_every // stride, seed, platform,
                              simulation=run.simulation, advance=stepper,
                              checkpoint_every=max(1, 20 * frequency // report_every), progress=progress,
                              save_atoms=save_atoms)
    finally:
        driver.close()
    free_energy = driver.free_energy()
    np.savez(out_dir / "fes.npz", free_energy=free_energy, names=np.array(cv.metadata["names"]),
             **{f"axis{k}": a for k, a in enumerate(driver.axes)})
    from .plots import plot_fes
    plot_fes(driver.axes, free_energy, cv.metadata["names"], out_dir / "fes.png")
    return MetadynamicsResult(out_dir, driver.axes, free_energy, np.loadtxt(out_dir / "colvar.dat", ndmin=2),
                              trajectory)


def reweighting_factors(out_dir) -> np.ndarray:
    """Per-frame weights (sum 1) of a finished ``"hills"`` run: w ∝ exp(V_final(s)/kT) at each colvar line.

    The static final-bias estimator of well-tempered metadynamics: exact once the bias has converged,
    otherwise biased towards the last-filled regions.
    """
    out_dir = Path(out_dir)
    settings = json.loads((out_dir / "metadynamics.json").read_text())
    if settings["engine"] != "hills":
        raise ValueError(f"reweighting needs a run with engine='hills'; {out_dir} used {settings['engine']!r}")
    bias = HillsBias(settings["widths"], settings["periods"], settings["temperature"], settings["bias_factor"],
                     settings["height"], folder=out_dir / "hills", walker=settings["walker"])
    colvar = np.loadtxt(out_dir / "colvar.dat", ndmin=2)
    values = np.array([bias(s)[0] for s in colvar[:, 1:-1]])
    kT = bias.delta_kT / (settings["bias_factor"] - 1)
    weights = np.exp((values - values.max()) / kT)
    return weights / weights.sum()
