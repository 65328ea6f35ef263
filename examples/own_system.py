"""Bring your own system: build it from a PDB and OpenMM force-field XMLs, learn a CV, export it, attach it.

    python examples/own_system.py --out runs/own-system                        # shipped alanine PDB, amber14
    python examples/own_system.py --pdb my.pdb --forcefield amber14-all.xml amber14/tip3pfb.xml --out runs/mine
    python examples/own_system.py --steps 2000 --epochs 2 --md-steps 50 --out /tmp/o   # a few seconds

Writes, in --out: md.dcd (+ md.pdb), cv.pt (a DynAE CV of the backbone torsions), restrained.csv (the CV every
10 steps of a short run with the CV held by a harmonic restraint, OpenMM's CustomCVForce + TorchForce).
"""
import argparse
import copy
from importlib import resources
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (import torch before openmm)
import openmm
from openmm import app, unit

from cvplug import attach, load_cv, methods, systems
from cvplug.constants import get_platform, openmm_seed
from cvplug.data import TrainingData
from cvplug.selection import parse_features
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory

ALANINE_PDB = resources.files("cvplug.systems") / "data" / "alanine-dipeptide" / "alanine-dipeptide.pdb"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdb", default=str(ALANINE_PDB), help="your structure (default: alanine dipeptide)")
    parser.add_argument("--forcefield", nargs="+", default=["amber14-all.xml"], help="OpenMM force-field XMLs")
    parser.add_argument("--out", type=Path, default=Path("runs/own-system"))
    parser.add_argument("--steps", type=int, default=50_000, help="MD steps (2 fs) of training data")
    parser.add_argument("--epochs", type=int, default=None, help="DynAE epochs (default: DynAE's own)")
    parser.add_argument("--md-steps", type=int, default=1000, help="steps of the restrained run")
    args = parser.parse_args(argv)

    # 1. A SystemSpec from your files: the OpenMM System, topology, minimised positions, 300 K, 2 fs.
    spec = systems.from_files(args.pdb, forcefield=args.forcefield)
    trajectory = load_trajectory(simulate(spec, args.steps, args.out / "md", report_every=50, progress=False))

    # 2. Learn a 2-component DynAE CV of the backbone torsions (lag pairs 1 frame = 0.1 ps apart) and export it.
    data = TrainingData.from_trajectories([trajectory], spec, parse_features("backbone-torsions", spec.topology))
    options = {"n_components": 2} if args.epochs is None else {"n_components": 2, "epochs": args.epochs}
    dynae = methods.create("dynae", options, progress=False).fit(data)
    cv_file = dynae.cv.export(args.out / "cv.pt")

    # 3. Attach the exported CV to a copy of the System: a harmonic restraint k/2 (z0 − z0*)² in kJ/mol.
    cv = load_cv(cv_file)                       # checks the file's atoms against the system when attached
    system = copy.deepcopy(spec.system)
    with torch.no_grad():
        start = float(dynae.cv(torch.as_tensor(spec.positions[None], dtype=torch.float32))[0, 0])
    restraint = attach(system, cv, energy="0.5*k*(z0-target)^2", parameters={"k": 100.0, "target": start})

    # 4. Run it with plain OpenMM and record the CV.
    integrator = openmm.LangevinMiddleIntegrator(spec.temperature * unit.kelvin, spec.friction / unit.picosecond,
                                                 spec.timestep * unit.picoseconds)
    integrator.setRandomNumberSeed(openmm_seed(0))
    simulation = app.Simulation(spec.topology, system, integrator, get_platform("CPU"))
    simulation.context.setPositions(spec.positions)
    values = []
    for _ in range(max(1, args.md_steps // 10)):
        simulation.step(10)
        values.append(restraint.values(simulation.context))
    np.savetxt(args.out / "restrained.csv", np.array(values), delimiter=",", header=",".join(restraint.names))
    print(f"z0 held near {start:.3f}: mean {np.mean(values, axis=0)[0]:.3f} over {len(values)} samples")
    return args.out


if __name__ == "__main__":
    main()
