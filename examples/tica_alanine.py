"""Learn a CV of the shipped alanine dipeptide with TICA, then bias it with well-tempered metadynamics.

    python examples/tica_alanine.py --out runs/tica-example                    # about a minute
    python examples/tica_alanine.py --steps 2000 --bias-steps 200 --out /tmp/t # a few seconds

Writes, in --out: md.dcd (+ md.pdb), the training trajectory; tica.pt, the CV; bias/, the metadynamics run
(colvar.dat, hills, fes.npz …), as the `cvplug bias` command writes it.
"""
import argparse
from pathlib import Path

import torch  # noqa: F401  (import torch before openmm)

from cvplug import cli, methods, systems
from cvplug.data import TrainingData
from cvplug.selection import parse_features
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tica-example"))
    parser.add_argument("--steps", type=int, default=50_000, help="MD steps (2 fs) of training data")
    parser.add_argument("--bias-steps", type=int, default=10_000, help="metadynamics steps (2 fs)")
    args = parser.parse_args(argv)

    # 1. Plain MD of a shipped system (alanine dipeptide, OBC2 implicit solvent, 300 K); a frame every 0.1 ps.
    spec = systems.load("ala2-implicit")
    trajectory = load_trajectory(simulate(spec, args.steps, args.out / "md", report_every=50, progress=False))

    # 2. The CV's inputs, from an atom-selection spec (here sin and cos of the backbone torsions φ and ψ).
    features = parse_features("backbone-torsions", spec.topology)
    data = TrainingData.from_trajectories([trajectory], spec, features, lag=5)   # lag 5 frames = 0.5 ps

    # 3. Any registered method is built and fitted the same way; TICA is the linear baseline.
    tica = methods.create("tica", {"n_components": 1}).fit(data)
    print("TICA timescale (frames):", tica.cv.info["timescales_frames"])
    cv_file = tica.cv.export(args.out / "tica.pt")

    # 4. Bias the CV with the `cvplug bias` command (hills engine, ranges and widths from the CV's calibration).
    code = cli.main(["bias", "--system", "ala2-implicit", "--cv", str(cv_file), "--steps", str(args.bias_steps),
                     "--report-every", "100", "--out", str(args.out / "bias")])
    if code != 0:
        raise SystemExit(code)
    return args.out


if __name__ == "__main__":
    main()
