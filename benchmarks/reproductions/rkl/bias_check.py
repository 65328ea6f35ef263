"""Bias alanine dipeptide (OBC2, 330 K) along a learned rkl CV with ``cvplug bias`` and report the basins visited.

    python benchmarks/reproductions/rkl/bias_check.py runs/rkl-ala2/mixture-data/seed0/rkl_cv.pt \
        --steps 250000 --out runs/rkl-bias

Runs ``cvplug bias --system ala2-implicit --temperature 330 --cv CV --steps STEPS --out OUT`` (the hills engine
and the command's metadynamics defaults; skipped when OUT already holds the finished run, which resumes) and prints
the fractions of the saved frames in α_R, β and φ > 0 (unweighted: which basins the biased run visits).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cvplug import systems
from cvplug.trajectory import load_trajectory, trajectory_positions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alanine import TEMPERATURE, basin_fractions  # noqa: E402


def main() -> None:
    """Run the biased simulation (or resume it) and print the visited basin fractions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path, help="an exported rkl CV (rkl_cv.pt)")
    parser.add_argument("--steps", type=int, default=250_000, help="2 fs MD steps")
    parser.add_argument("--out", type=Path, default=Path("runs/rkl-bias"))
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("cvplug")), "bias", "--system", "ala2-implicit",
               "--temperature", str(TEMPERATURE), "--cv", str(args.cv), "--steps", str(args.steps),
               "--out", str(args.out)]
    subprocess.run(command, check=True)
    spec = systems.load("ala2-implicit", temperature=TEMPERATURE)
    frames = trajectory_positions(load_trajectory(args.out / "trajectory.dcd"), spec)
    fractions = basin_fractions(spec, frames)
    print(f"{len(frames)} frames: " + ", ".join(f"{k} {v:.3f}" for k, v in fractions.items()))


if __name__ == "__main__":
    main()
