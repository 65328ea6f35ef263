"""Alanine dipeptide (ACE-ALA-NME, AMBER ff96, mbondi2 radii) in vacuum, OBC2 implicit solvent and TIP3P water.

Backbone dihedrals (0-based atom indices): phi = 4-6-8-14, psi = 6-8-14-16.
Files: the MIT-licensed test-system data of openmmtools 0.27.0, in ``systems/data``.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import openmm.app as app
import openmm.unit as unit

from .spec import SystemSpec

PHI_ATOMS = (4, 6, 8, 14)
PSI_ATOMS = (6, 8, 14, 16)


def data_file(folder: str, suffix: str) -> str:
    """Path of a shipped file, e.g. ``data_file("alanine-dipeptide", "prmtop")``."""
    return str(resources.files("cvplug.systems") / "data" / folder / f"alanine-dipeptide.{suffix}")


def basin_report(spec: SystemSpec, positions: np.ndarray, weights: np.ndarray) -> dict:
    """Fractions of frames in the β, α_R and φ > 0 basins (plain, and reweighted with ``weights``)."""
    import torch

    from cvplug.analysis import ala2_basins
    from cvplug.features import Dihedrals

    angles = Dihedrals([PHI_ATOMS, PSI_ATOMS])(torch.as_tensor(positions)).numpy()
    return {"basins": ala2_basins(angles[:, 0], angles[:, 1]),
            "basins_reweighted": ala2_basins(angles[:, 0], angles[:, 1], weights)}


def _make(name: str, folder: str, description: str, temperature: float, **create_options) -> SystemSpec:
    prmtop = app.AmberPrmtopFile(data_file(folder, "prmtop"))
    inpcrd = app.AmberInpcrdFile(data_file(folder, "crd"))
    system = prmtop.createSystem(constraints=app.HBonds, **create_options)
    box = None
    if inpcrd.boxVectors is not None:
        box = np.array([v.value_in_unit(unit.nanometer) for v in inpcrd.boxVectors])
        system.setDefaultPeriodicBoxVectors(*inpcrd.boxVectors)
    positions = np.array(inpcrd.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    peptide = [a for a in prmtop.topology.atoms() if a.residue.name in ("ACE", "ALA", "NME")]
    heavy = tuple(a.index for a in peptide if a.element.symbol != "H")
    return SystemSpec(name=name, system=system, topology=prmtop.topology, positions=positions,
                      temperature=temperature, timestep=0.002, friction=1.0, box_vectors=box,
                      description=description, report=basin_report,
                      extras={"phi_atoms": PHI_ATOMS, "psi_atoms": PSI_ATOMS, "heavy_atoms": heavy,
                              "peptide_atoms": tuple(a.index for a in peptide)})


def vacuum(temperature: float = 300.0) -> SystemSpec:
    """Alanine dipeptide (AMBER ff96) in vacuum at ``temperature`` (K), registered as ``ala2-vacuum``."""
    return _make("ala2-vacuum", "alanine-dipeptide", "alanine dipeptide in vacuum, no cutoff, H-bonds constrained",
                 temperature, nonbondedMethod=app.NoCutoff, implicitSolvent=None)


def implicit(temperature: float = 300.0) -> SystemSpec:
    """Alanine dipeptide in OBC2 implicit solvent at ``temperature`` (K), registered as ``ala2-implicit``."""
    return _make("ala2-implicit", "alanine-dipeptide", "alanine dipeptide in OBC2 implicit solvent, no cutoff",
                 temperature, nonbondedMethod=app.NoCutoff, implicitSolvent=app.OBC2)


def explicit(temperature: float = 300.0) -> SystemSpec:
    """Alanine dipeptide in TIP3P water (PME, 1 nm cutoff) at ``temperature`` (K), registered as
    ``ala2-explicit``."""
    return _make("ala2-explicit", "alanine-dipeptide-explicit",
                 "alanine dipeptide in TIP3P water, PME with 1 nm cutoff, rigid water", temperature,
                 nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer, rigidWater=True)


FACTORIES = {"ala2-vacuum": vacuum, "ala2-implicit": implicit, "ala2-explicit": explicit}
