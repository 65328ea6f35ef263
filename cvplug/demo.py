"""The main job: alanine dipeptide in implicit solvent, biased along a TorchScript CV, to its free energy surface.

This first version biases the analytic backbone dihedrals (φ, ψ), exported and attached through exactly the
path a learned CV takes (TorchScript file → TorchForces in a CustomCVForce → OpenMM Metadynamics).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cvplug import systems
from .analysis import ala2_basins, project_fes
from .bias import run_metadynamics
from .cv import ANGLE, CollectiveVariable, load_cv
from .features import Dihedrals
from .plots import plot_fes

__all__ = ["phi_psi_cv", "run_demo"]


def phi_psi_cv(spec: systems.SystemSpec) -> CollectiveVariable:
    """The backbone dihedrals (φ, ψ) of alanine dipeptide, in radians, as a CollectiveVariable."""
    return CollectiveVariable(Dihedrals([spec.extras["phi_atoms"], spec.extras["psi_atoms"]]), torch.nn.Identity(),
                              n_atoms=spec.n_atoms, names=["phi", "psi"], periodic=[ANGLE, ANGLE], units="rad",
                              method="analytic", periodic_box=spec.periodic)


def run_demo(out_dir="demo-output", steps: int = 150_000, seed: int = 0, platform: str = "CPU",
             progress: bool = True) -> dict:
    """Run the demo; returns the basin populations and output paths, and prints a summary."""
    out_dir = Path(out_dir)
    spec = systems.load("ala2-implicit")
    cv_path = phi_psi_cv(spec).export(out_dir / "phi_psi.pt")
    cv = load_cv(cv_path)
    start = time.perf_counter()
    result = run_metadynamics(spec, cv, steps, out_dir, bias_factor=8.0, height=2.0, frequency=250,
                              widths=[0.35, 0.35], report_every=250, seed=seed, platform=platform,
                              progress=progress)
    seconds = time.perf_counter() - start
    phi, psi = result.colvar[:, 1], result.colvar[:, 2]
    basins = ala2_basins(phi, psi)
    fes_phi = project_fes(result.free_energy, spec.kT, keep=0)
    np.savez(out_dir / "fes_phi.npz", phi=result.axes[0], free_energy=fes_phi)
    plot_fes(result.axes[:1], fes_phi, ["phi (rad)"], out_dir / "fes_phi.png")
    simulated_ns = steps * spec.timestep / 1000
    lines = [
        f"cvplug demo: alanine dipeptide (OBC2, {spec.temperature:.0f} K), well-tempered metadynamics on (phi, psi)",
        f"  CV file           {cv_path}  (TorchScript, {cv.method}, components {cv.names})",
        f"  simulated         {simulated_ns:.2f} ns in {seconds:.0f} s ({steps / seconds:.0f} steps/s)",
        "  frames per basin  " + ", ".join(f"{name}: {100 * fraction:.1f}%" for name, fraction in basins.items()),
        f"  FES (phi, psi)    {out_dir / 'fes.npz'}, {out_dir / 'fes.png'}",
        f"  FES along phi     {out_dir / 'fes_phi.npz'}, {out_dir / 'fes_phi.png'}",
        f"  trajectory        {result.trajectory} (+ trajectory.pdb), CV time series {out_dir / 'colvar.dat'}",
    ]
    print("\n".join(lines))
    return {"basins": basins, "result": result, "seconds": seconds}
