"""The ``cvplug`` command: ``cvplug --help`` lists the subcommands, each has its own ``--help``."""
from __future__ import annotations

import argparse
import json
import sys

import torch  # noqa: F401  (before openmm)

__all__ = ["main"]


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a range is LOWER:UPPER, e.g. -3.14:3.14, not {text!r}") from None
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"the upper bound must exceed the lower one in {text!r}")
    return lo, hi


def _simulate(args) -> None:
    from cvplug import systems
    from .simulate import simulate

    path = simulate(systems.load(args.system), args.steps, args.out, args.report_every, args.seed, args.platform,
                    args.dynamics)
    print(f"trajectory written to {path}")


def _bias(args) -> None:
    from cvplug import systems
    from .bias import run_metadynamics
    from .cv import load_cv

    result = run_metadynamics(systems.load(args.system), load_cv(args.cv), args.steps, args.out,
                              bias_factor=args.bias_factor, height=args.height, frequency=args.frequency,
                              ranges=args.range, widths=args.width, report_every=args.report_every,
                              engine=args.engine, stride=args.stride, walker=args.walker,
                              seed=args.seed, platform=args.platform)
    print(f"bias, colvar.dat, fes.npz, fes.png and the trajectory are in {result.out_dir}")


def _learn(args) -> None:
    from .learn import LearnSettings, learn

    settings = LearnSettings(method=args.method, rounds=args.rounds, steps_per_round=args.steps,
                             report_every=args.report_every, latent_dim=args.latent_dim, lag=args.lag,
                             stride=args.stride, seed=args.seed, platform=args.platform)
    summaries = learn(args.system, args.out, settings)
    for summary in summaries:
        print(f"round {summary['round']}: {json.dumps(summary['this_round'].get('basins', summary['this_round']))}")
    print(f"CV files, trajectories, FES and summaries are in {args.out}/round_*/")


def _demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, method=args.method, full=args.full, seed=args.seed, platform=args.platform)


def _info(args) -> None:
    from .cv import load_cv

    print(json.dumps(load_cv(args.cv).metadata, indent=2))


def _systems(args) -> None:
    from cvplug import systems

    for name in systems.names():
        print(f"{name:18s} {systems.load(name).description}")


def _methods(args) -> None:
    from .methods import available

    found = available()
    print("\n".join(f"{name:10s} {target}" for name, target in sorted(found.items())) or "no methods registered")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvplug", description="Machine-learned collective variables for OpenMM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, steps):
        p.add_argument("--steps", type=int, default=steps, help=f"MD steps (default {steps})")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--platform", default="CPU", help="OpenMM platform: Reference, CPU, CUDA, OpenCL")

    p = commands.add_parser("simulate", help="run unbiased MD/BD and write a trajectory")
    p.add_argument("system", help="a name from `cvplug systems`")
    common(p, 50_000)
    p.add_argument("--report-every", type=int, default=500, help="steps between saved frames")
    p.add_argument("--out", required=True, help="trajectory path: .dcd (+ .pdb) for molecules, .npz for toys")
    p.add_argument("--dynamics", choices=["langevin", "brownian"], help="override the system's default dynamics")
    p.set_defaults(run=_simulate)

    p = commands.add_parser("bias", help="well-tempered metadynamics along a CV file")
    p.add_argument("--system", required=True, help="a name from `cvplug systems`")
    p.add_argument("--cv", required=True, help="a CV file written by CollectiveVariable.export")
    common(p, 100_000)
    p.add_argument("--out", default="bias-output", help="output folder (a second run resumes it)")
    p.add_argument("--bias-factor", type=float, default=8.0, help="well-tempered bias factor (> 1)")
    p.add_argument("--height", type=float, default=1.2, help="initial Gaussian height, kJ/mol")
    p.add_argument("--frequency", type=int, default=500, help="steps between Gaussian depositions")
    p.add_argument("--range", type=_range, action="append", help="LOWER:UPPER of a component, repeat per component; write --range=-3:3 when LOWER is negative")
    p.add_argument("--width", type=float, action="append", help="Gaussian width of a component (repeat)")
    p.add_argument("--report-every", type=int, default=500, help="steps between saved frames and colvar lines")
    p.add_argument("--engine", choices=["hills", "openmm"], default="hills",
                   help="hills: CV and bias in one PythonForce (default); openmm: OpenMM's Metadynamics")
    p.add_argument("--stride", type=int, default=1, help="apply the bias every STRIDE steps (MTS Langevin)")
    p.add_argument("--walker", type=int, default=0, help="walker index; walkers sharing --out share the bias")
    p.set_defaults(run=_bias)

    p = commands.add_parser("learn", help="alternate MD, CV learning and biasing for several rounds")
    p.add_argument("system", help="a name from `cvplug systems`")
    p.add_argument("--method", default="dynae", help="a name from `cvplug methods` (default dynae)")
    p.add_argument("--rounds", type=int, default=4, help="rounds: 1 unbiased, then biased (default 4)")
    common(p, 50_000)
    p.add_argument("--report-every", type=int, default=50, help="steps between frames used for training")
    p.add_argument("--latent-dim", type=int, default=2, help="CV components (default 2)")
    p.add_argument("--lag", type=int, default=1, help="frames between the members of a training pair")
    p.add_argument("--stride", type=int, default=1, help="apply the bias every STRIDE steps (MTS Langevin)")
    p.add_argument("--out", required=True, help="output folder (a second run resumes it)")
    p.set_defaults(run=_learn)

    p = commands.add_parser("demo", help="the main job: alanine dipeptide from one basin to its FES with a learned CV")
    p.add_argument("--method", default="dynae",
                   help="CV method (default dynae); 'analytic' biases the true phi/psi instead")
    p.add_argument("--full", action="store_true", help="3 ns in 6 rounds instead of 0.4 ns in 4 (see README)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--platform", default="CPU", help="OpenMM platform: Reference, CPU, CUDA, OpenCL")
    p.add_argument("--out", default="demo-output", help="output folder (a second run resumes it)")
    p.set_defaults(run=_demo)

    p = commands.add_parser("info", help="print the metadata of a CV file")
    p.add_argument("cv", help="a CV file")
    p.set_defaults(run=_info)

    commands.add_parser("systems", help="list the shipped systems").set_defaults(run=_systems)
    commands.add_parser("methods", help="list the registered CV-learning methods").set_defaults(run=_methods)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"cvplug {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ncvplug {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
