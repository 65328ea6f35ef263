"""Reference basin weights of alanine dipeptide (AMBER ff96, OBC2, 330 K) from well-tempered metadynamics on (φ, ψ).

Independent runs (seeds 0 … n−1) of OpenMM's own well-tempered metadynamics with native CustomTorsionForce CVs on
the true backbone dihedrals (γ = 6, h0 = 1 kJ/mol, σ = 0.35 rad every 500 steps, 2 fs, 330 K, CPU platform, one
thread). Each run gives the weights of the backbone basins of :data:`cvplug.analysis.ALA2_BASINS` (α_R, β and
φ > 0, the α_L/C7ax region) two ways:

* ``fes``: integrated exp(−F/kT) of the run's final free-energy estimate F = −(γ/(γ−1)) V on the 72 × 72 grid;
* ``reweighted``: the frames of the run's second half (one per 500 steps), each weighted by exp(V_final(s)/kT).

The reference is the mean over runs of the ``fes`` weights with the standard error over runs (and the spread of
the runs, min–max); ``reweighted`` is printed beside it as a check. Writes ``ala2_reference.json`` next to this
script (or ``--out``). Run: ``python benchmarks/reproductions/rkl/ala2_reference.py --runs 5 --ns 3``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before openmm)
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug import systems
from cvplug.analysis import ala2_basins
from cvplug.runs import write_json
from cvplug.simulate import make_simulation

OUT = Path(__file__).resolve().parent / "ala2_reference.json"
SETTINGS = dict(bias_factor=6.0, height=1.0, width=0.35, frequency=500, grid=73, temperature=330.0,
                system="ala2-implicit")


def _variables(spec) -> list:
    variables = []
    for atoms in (spec.extras["phi_atoms"], spec.extras["psi_atoms"]):
        force = openmm.CustomTorsionForce("theta")
        force.addTorsion(*atoms, [])
        variables.append(app.BiasVariable(force, -np.pi, np.pi, SETTINGS["width"], True,
                                          gridWidth=SETTINGS["grid"]))
    return variables


def run(ns: float, seed: int) -> dict:
    """One metadynamics run of ``ns`` ns: basin weights from its final FES and from reweighted frames."""
    spec = systems.load(SETTINGS["system"], temperature=SETTINGS["temperature"])
    meta = app.Metadynamics(spec.system, _variables(spec), spec.temperature * unit.kelvin,
                            SETTINGS["bias_factor"], SETTINGS["height"] * unit.kilojoule_per_mole,
                            SETTINGS["frequency"])
    simulation = make_simulation(spec, seed=seed, threads=1)
    steps, every = int(round(ns * 1000 / spec.timestep)), SETTINGS["frequency"]
    started, cvs = time.perf_counter(), []
    for _ in range(steps // every):
        meta.step(simulation, every)
        cvs.append(meta.getCollectiveVariables(simulation))
    wall = time.perf_counter() - started
    kT = spec.kT
    free = meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)[:-1, :-1]     # [psi, phi], periodic
    axis = np.linspace(-np.pi, np.pi, SETTINGS["grid"])[:-1]
    psi_grid, phi_grid = np.meshgrid(axis, axis, indexing="ij")
    fes_weights = ala2_basins(phi_grid.ravel(), psi_grid.ravel(), np.exp(-(free - free.min()) / kT).ravel())
    cvs = np.asarray(cvs)[len(cvs) // 2:]                                             # second half: (phi, psi)
    bias = -free * (SETTINGS["bias_factor"] - 1) / SETTINGS["bias_factor"]            # V_final on the grid
    step = axis[1] - axis[0]
    index = np.round((cvs + np.pi) / step).astype(int) % len(axis)
    log_w = bias[index[:, 1], index[:, 0]] / kT
    reweighted = ala2_basins(cvs[:, 0], cvs[:, 1], np.exp(log_w - log_w.max()))
    return {"seed": seed, "ns": ns, "wall_s": wall, "fes": fes_weights, "reweighted": reweighted,
            "biased_frames_fraction_phi_pos": float(np.mean(cvs[:, 0] > 0)),
            "free_energy_kJ_mol": (free - free.min()).tolist()}


def summarise(runs: list[dict]) -> dict:
    """Mean, standard error (over runs) and min–max of each basin weight, for both estimates."""
    out = {}
    for how in ("fes", "reweighted"):
        out[how] = {}
        for basin in runs[0][how]:
            values = np.array([r[how][basin] for r in runs])
            out[how][basin] = {"mean": float(values.mean()), "stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
                               "min": float(values.min()), "max": float(values.max())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="independent runs (seeds 0 … runs − 1)")
    parser.add_argument("--ns", type=float, default=3.0, help="simulated time per run (ns)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runs = []
    for seed in range(args.runs):
        runs.append(run(args.ns, seed))
        r = runs[-1]
        print(f"seed {seed}: {r['wall_s']:.0f} s; FES weights " +
              ", ".join(f"{k} {v:.4f}" for k, v in r["fes"].items()) + "; reweighted " +
              ", ".join(f"{k} {v:.4f}" for k, v in r["reweighted"].items()), flush=True)
        summary = summarise(runs) if len(runs) > 1 else None
        write_json(args.out, {"settings": {**SETTINGS, "ns_per_run": args.ns, "runs": len(runs),
                                           "total_ns": args.ns * len(runs)},
                              "basins_deg": {"beta (C7eq/C5)": "phi < 0 and (psi > 120 or psi < -150)",
                                             "alpha_R": "phi < 0 and -120 < psi < 50",
                                             "phi>0 (alpha_L/C7ax)": "0 < phi < 120"},
                              "summary": summary,
                              "runs": [{k: v for k, v in r.items() if k != "free_energy_kJ_mol"} for r in runs],
                              "mean_free_energy_kJ_mol":
                                  np.round(np.mean([r["free_energy_kJ_mol"] for r in runs], 0), 3).tolist()})
    for how, basins in summarise(runs).items():
        print(how + ": " + "; ".join(f"{b} {s['mean']:.4f} ± {s['stderr']:.4f} ({s['min']:.4f}–{s['max']:.4f})"
                                     for b, s in basins.items()))


if __name__ == "__main__":
    main()
