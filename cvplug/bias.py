"""Well-tempered metadynamics on a CV, through OpenMM's ``Metadynamics``, with FES output and restarts.

Well-tempered metadynamics (Barducci, Bussi & Parrinello, PRL 100, 020603, 2008) deposits Gaussians of height
``height·exp(−V(s)/(k_B ΔT))`` every ``frequency`` steps along the CV s, with ΔT = T(γ − 1) for bias factor γ;
the free energy is F(s) = −γ/(γ − 1) V(s). OpenMM evaluates the bias from a grid; the CV's components are
openmm-torch TorchForces inside the CustomCVForce that OpenMM builds.

Outputs in ``out_dir``: ``bias/`` (OpenMM bias files; a run restarted on the same folder continues from
them), ``colvar.dat`` (time in ps, CV values, bias energy in kJ/mol), ``trajectory.dcd`` + ``trajectory.pdb``
(or ``trajectory.npz`` for toys), ``fes.npz`` (grid axes and free energy in kJ/mol, minimum at 0),
``fes.png``, ``state.xml`` (checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch  # noqa: F401  (before openmm)
import openmm.app as app
import openmm.unit as unit

from cvplug.systems import SystemSpec
from .attach import AnyCV, check_compatible, cv_forces
from .simulate import simulate, make_simulation

__all__ = ["MetadynamicsResult", "run_metadynamics", "bias_grid"]


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


def run_metadynamics(spec: SystemSpec, cv: AnyCV, steps: int, out_dir, *, bias_factor: float = 8.0,
                     height: float = 1.2, frequency: int = 500, ranges=None, widths=None,
                     report_every: int = 500, seed: int = 0, platform: str = "CPU",
                     threads: Optional[int] = None, progress: bool = True) -> MetadynamicsResult:
    """Run well-tempered metadynamics of ``spec`` biased along ``cv`` for ``steps`` steps.

    Parameters
    ----------
    bias_factor : γ > 1 (dimensionless); ΔT = T(γ − 1).
    height : initial Gaussian height (kJ/mol).
    frequency : steps between depositions.
    ranges : per component (lower, upper) of the bias grid, in CV units; default: the CV's suggestion or
        its period.
    widths : per component Gaussian standard deviation, in CV units.
    report_every : steps between saved frames and colvar lines (a multiple of ``frequency`` or a divisor).
    A second call on the same ``out_dir`` resumes the run: it reloads the bias and the checkpoint.
    """
    if bias_factor <= 1:
        raise ValueError(f"bias_factor must be > 1 for well-tempered metadynamics, got {bias_factor}")
    check_compatible(spec.system, cv, spec.topology)
    ranges, widths = bias_grid(cv, ranges, widths)
    periodic = [p is not None for p in cv.metadata["periodic"]]
    if len(set(periodic)) > 1:
        raise ValueError("OpenMM's Metadynamics needs all CV components periodic or none")
    out_dir = Path(out_dir)
    (out_dir / "bias").mkdir(parents=True, exist_ok=True)
    variables = [app.BiasVariable(force, lo, hi, width, is_periodic)
                 for force, (lo, hi), width, is_periodic in zip(cv_forces(cv), ranges, widths, periodic)]
    system = spec.system
    meta = app.Metadynamics(system, variables, spec.temperature * unit.kelvin, bias_factor,
                            height * unit.kilojoule_per_mole, frequency, saveFrequency=frequency,
                            biasDir=str(out_dir / "bias"))
    bias_group = system.getForce(system.getNumForces() - 1).getForceGroup()
    simulation = make_simulation(spec, platform, seed, threads=threads)
    stepper = _MetadynamicsStepper(meta, simulation, bias_group, out_dir / "colvar.dat", cv.metadata["names"])
    trajectory = simulate(spec, steps, out_dir / "trajectory", report_every, seed, platform,
                          simulation=simulation, advance=stepper,
                          checkpoint_every=max(1, 20 * frequency // report_every), progress=progress)
    axes = [np.linspace(lo, hi, v.gridWidth) for (lo, hi), v in zip(ranges, variables)]
    # OpenMM's grid is indexed [last component, …, first]; transpose to [first, …, last].
    free_energy = meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole).T
    free_energy = free_energy - free_energy.min()
    np.savez(out_dir / "fes.npz", free_energy=free_energy, names=np.array(cv.metadata["names"]),
             **{f"axis{k}": a for k, a in enumerate(axes)})
    from .plots import plot_fes
    plot_fes(axes, free_energy, cv.metadata["names"], out_dir / "fes.png")
    return MetadynamicsResult(out_dir, axes, free_energy, np.loadtxt(out_dir / "colvar.dat", ndmin=2), trajectory)


class _MetadynamicsStepper:
    """Advances a simulation through Metadynamics and appends time, CV values and bias to the colvar file."""

    def __init__(self, meta: app.Metadynamics, simulation: app.Simulation, bias_group: int, colvar: Path,
                 names: Sequence[str]):
        self.meta, self.simulation, self.bias_group, self.colvar = meta, simulation, bias_group, colvar
        if not colvar.exists():
            colvar.write_text(f"# time_ps {' '.join(names)} bias_kJmol\n")

    def __call__(self, steps: int) -> None:
        simulation = self.simulation
        self.meta.step(simulation, steps)
        state = simulation.context.getState(getEnergy=True, groups={self.bias_group})
        time = simulation.currentStep * simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
        values = self.meta.getCollectiveVariables(simulation)
        bias = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        with open(self.colvar, "a") as handle:
            handle.write(" ".join(f"{v:.6f}" for v in (time, *values, bias)) + "\n")
