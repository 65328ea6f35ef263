"""The ``cvplug`` command: ``cvplug --help`` lists the subcommands, each has its own ``--help``.

``simulate``, ``bias`` and ``learn`` take the system the same way (``--system`` with a shipped name or the
user's files, see :func:`cvplug.systems.from_files`) and read a run file with ``--config run.toml``: one key per
long option (``steps = 50000``, ``forcefield = ["amber14-all.xml"]``, ``[option]`` for method options); the
command line overrides the file. Each run writes its fully resolved settings to ``run.toml`` in its output
folder (``run.<k>.toml`` for walker k > 0, ``<out>.run.toml`` beside a ``simulate`` trajectory), so
``--config <out>/run.toml`` repeats it. The run file is written once the run owns its output: a run refused
because another one is writing there, or holds other settings, changes nothing (``--overwrite`` starts over,
moving the old output aside).

Errors are one line on stderr and exit status 2: bad arguments, a refused run, a file that cannot be read or
written (missing, read-only, a full disk, an output that is a file). Ctrl-C stops a run with exit status 130;
the same command resumes it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
import warnings
from pathlib import Path

import torch  # noqa: F401  (before openmm)

__all__ = ["main", "build_parser"]

RUN_FILE = "run.toml"


def _int_at_least(minimum: int, kind: str):
    """An argparse type: an integer ≥ ``minimum`` (``kind`` names it in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a range is LOWER:UPPER, e.g. -3.14:3.14, not {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise argparse.ArgumentTypeError(f"the upper bound must exceed the lower one in {text!r}")
    return lo, hi


def _method_option(text: str):
    from .methods import parse_option

    try:
        return parse_option(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _spec(args):
    """The SystemSpec the arguments describe, not yet minimised (see :func:`_minimize`)."""
    from cvplug import systems

    if args.system is None:
        raise ValueError("give the system: --system NAME (see `cvplug systems`) or --system FILE with its "
                         "--positions / --forcefield")
    return systems.from_files(args.system, args.positions, forcefield=args.forcefield or (),
                              include_dir=args.include_dir, topology=args.topology, temperature=args.temperature,
                              timestep=None if args.timestep is None else args.timestep / 1000,
                              friction=args.friction, minimize=False)


def _minimize(args, spec) -> None:
    """Minimise the starting positions of a user's files (after every argument was checked), and say so."""
    from cvplug import systems

    if args.no_minimize or "positions" not in spec.source:
        return
    systems.minimize_energy(spec)
    energies = spec.extras["minimized"]
    print(f"energy-minimised the starting positions: {energies['before']:.1f} → {energies['after']:.1f} kJ/mol "
          "(--no-minimize skips this)", file=sys.stderr)


def _save_atoms(args, spec):
    from .learn import resolve_save_atoms

    return resolve_save_atoms(spec, args.save_atoms)


def _write_run_file(args, path: Path) -> None:
    """The resolved settings of this command as a run file that ``--config`` reads back."""
    import tomli_w

    from .runs import write_atomic

    settings = {k: v for k, v in vars(args).items()
                if k not in ("run", "command", "config", "overwrite") and v is not None}
    settings = {k: ([list(x) for x in v] if k == "range" else dict(v) if k == "option" else v)
                for k, v in settings.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, f"# cvplug {args.command}: repeat with `cvplug {args.command} --config {path}`\n"
                 + tomli_w.dumps(settings))


def _simulate(args) -> None:
    from .simulate import simulate

    spec = _spec(args)
    save_atoms = _save_atoms(args, spec)
    out = Path(args.out)
    _minimize(args, spec)
    path = simulate(spec, args.steps, out, args.report_every, args.seed, args.platform, args.dynamics,
                    save_atoms=save_atoms, overwrite=args.overwrite,
                    on_start=lambda: _write_run_file(args, out.with_suffix(".run.toml")))
    print(f"trajectory written to {path}")


def _well_tempered(args):
    """The metadynamics settings the arguments give (:class:`cvplug.metad.WellTempered`)."""
    from .metad import WellTempered

    return WellTempered.from_options(height=args.height, bias_factor=args.bias_factor, frequency=args.frequency,
                                     ranges=args.range, widths=args.width, stride=args.stride,
                                     engine=getattr(args, "engine", None))


def _bias(args) -> None:
    from .attach import check_compatible
    from .cv import load_cv
    from .metad import run_metadynamics
    from .runs import walker_name

    cv = load_cv(args.cv)
    settings = _well_tempered(args)
    spec = _spec(args)
    check_compatible(spec.system, cv, spec.topology)
    save_atoms = _save_atoms(args, spec)
    _minimize(args, spec)
    if args.walkers > 1 or args.scheduler:
        return _bias_walkers(args, spec, cv, settings, save_atoms)
    run_file = Path(args.out) / walker_name(RUN_FILE, args.walker)
    result = run_metadynamics(spec, cv, args.steps, args.out, settings, report_every=args.report_every,
                              walker=args.walker, seed=args.seed, platform=args.platform, save_atoms=save_atoms,
                              overwrite=args.overwrite, on_start=lambda: _write_run_file(args, run_file))
    print(f"bias, colvar.dat, fes.npz, fes.png and the trajectory are in {result.out_dir}")


def _bias_walkers(args, spec, cv, settings, save_atoms) -> None:
    """``cvplug bias --walkers N [--scheduler ADDRESS]``: N walkers sharing one bias, as Dask tasks."""
    from .runs import move_folder_aside
    from .walkers import dashboard, open_client, run_walkers

    if args.walker:
        raise ValueError("--walker and --walkers exclude each other: --walkers N runs walkers 0 … N-1")
    if args.steps % args.report_every or args.segment % args.report_every:
        raise ValueError(f"--steps ({args.steps}) and --segment ({args.segment}) must be multiples of "
                         f"--report-every ({args.report_every})")
    client = open_client(args.scheduler, args.walkers)
    try:
        where = dashboard(client)
        print(f"{args.walkers} walkers on {client.scheduler.address}" + (f", dashboard {where}" if where else ""))
        out = Path(args.out)
        if args.overwrite and out.exists():
            move_folder_aside(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_run_file(args, out / RUN_FILE)
        run_walkers(spec, Path(args.cv), args.steps, out, walkers=args.walkers, client=client,
                    segment=args.segment, report_every=args.report_every, seed=args.seed, settings=settings,
                    platform=args.platform, save_atoms=save_atoms, on_progress=print)
    finally:
        client.close()
    print(f"each walker's colvar, trajectory and fes files, and the shared hills, are in {args.out}")


def _learn(args) -> None:
    from .learn import LearnSettings, feature_specs, prepare

    settings = LearnSettings(method=args.method, rounds=args.rounds, steps_per_round=args.steps,
                             report_every=args.report_every, n_components=args.n_components, lag=args.lag,
                             features=tuple(args.features or ()), save_atoms=args.save_atoms,
                             bias=_well_tempered(args), seed=args.seed, platform=args.platform,
                             walkers=args.walkers, method_options=dict(args.option or {}))
    settings.check()
    spec = _spec(args)
    run = prepare(spec, args.out, settings, overwrite=args.overwrite)
    args.features = feature_specs(spec, settings.features) or None  # the run file records what was used
    _minimize(args, spec)
    for summary in run.run(on_start=lambda: _write_run_file(args, Path(args.out) / RUN_FILE),
                           scheduler=args.scheduler, segment=args.segment, on_progress=print):
        print(_round_line(summary))
    print(f"CV files, trajectories, FES and summaries are in {args.out}/round_*/")


def _round_line(summary: dict) -> str:
    """One console line per round: time, speed, the CV's range, the FES basins and transitions."""
    speed = f"{summary['ns_per_day']:.1f} ns/day" if summary.get("ns_per_day") else "—"
    ranges = ", ".join(f"{name} {c['min']:.2f}…{c['max']:.2f}" for name, c in summary["cv"].items())
    line = (f"round {summary['round']}: {summary['sampled_ps']:.0f} ps at {speed}; {ranges}; "
            f"{summary['fes_basins']} FES basin(s), {summary['transitions_this_round']} transition(s)")
    if 0 < len(summary.get("phi_positive_fraction", ())) <= 3:  # a few residues: each φ > 0 fraction
        line += "; φ > 0 in " + " / ".join(f"{100 * f:.1f}" for f in summary["phi_positive_fraction"]) + " % of frames"
    return line


def _demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, method=args.method, full=args.full, seed=args.seed, platform=args.platform)


def _info(args) -> None:
    from .cv import load_cv

    print(json.dumps(load_cv(args.cv).metadata, indent=2))


def _systems(args) -> None:
    from cvplug import systems

    for name in systems.names():
        print(f"{name:18s} {systems.describe(name)}")


def _methods(args) -> None:
    import inspect

    from .methods import NEEDS, RUN_OPTIONS, available, get

    for name in sorted(available()):
        method = get(name)
        print(f"{name}: {method.summary}")
        print(f"    needs: {'; '.join(NEEDS[n] for n in method.needs)}")
        options = [f"{k}={'(required)' if v is inspect.Parameter.empty else v!r}"
                   for k, v in method.options().items() if k not in RUN_OPTIONS]
        print(f"    options (--option KEY=VALUE): {', '.join(options)}")
    if not available():
        print("no methods registered")


def _system_options(p, positional: bool) -> None:
    group = p.add_argument_group("system (a shipped name or your files)")
    if positional:
        group.add_argument("system_name", nargs="?", metavar="SYSTEM", help="the same as --system")
    group.add_argument("--system", help="a name from `cvplug systems`, or a file: OpenMM system.xml, AMBER "
                                        ".prmtop/.parm7, GROMACS .top, or a .pdb/.cif with --forcefield")
    group.add_argument("--positions", help="starting positions: state.xml or .pdb/.cif (for system.xml), "
                                           ".inpcrd/.rst7/.crd (AMBER), .gro (GROMACS)")
    group.add_argument("--forcefield", nargs="+", metavar="XML",
                       help="OpenMM force-field files for a PDB/PDBx, e.g. amber14-all.xml amber14/tip3pfb.xml")
    group.add_argument("--include-dir", help="GROMACS include directory (default: OpenMM's)")
    group.add_argument("--topology", help="a PDB/PDBx giving atom names to a system.xml read with a state.xml")
    group.add_argument("--temperature", type=_positive_float,
                       help="K (default 300 for your files; shipped systems keep theirs)")
    group.add_argument("--timestep", type=_positive_float, help="fs (default 2 for your files)")
    group.add_argument("--friction", type=_positive_float, help="Langevin friction, 1/ps (default 1)")
    group.add_argument("--no-minimize", action="store_true",
                       help="skip the energy minimisation of your files' starting positions")
    group.add_argument("--save-atoms", metavar="SELECTION",
                       help="mdtraj selection of the atoms trajectories store (default: all but water and ions)")


def _run_options(p, steps: int, report_every: int) -> None:
    p.add_argument("--config", metavar="TOML", help="run file with one key per long option; the command line "
                                                    "overrides it")
    p.add_argument("--steps", type=_positive_int, default=steps, help="MD steps (default %(default)s)")
    p.add_argument("--report-every", type=_positive_int, default=report_every,
                   help="steps between saved frames (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--platform", default="CPU", help="OpenMM platform: Reference, CPU, CUDA, OpenCL "
                                                     "(default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: move an earlier run in --out aside to <out>.old-<time> instead of resuming "
                        "it (or refusing it, when its settings differ)")


def _walker_options(p, walkers_help: str) -> None:
    from .walkers import SEGMENT

    group = p.add_argument_group("walkers on Dask (see the docs' 'More than one machine')")
    group.add_argument("--walkers", type=_positive_int, default=1, help=walkers_help)
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler (tcp://host:port) for the walkers; default: a local cluster "
                            "sized to this machine")
    group.add_argument("--segment", type=_positive_int, default=SEGMENT,
                       help="MD steps per Dask task; a lost worker costs at most one (default %(default)s)")


def _bias_options(p) -> None:
    from .metad import WellTempered

    defaults = WellTempered()
    group = p.add_argument_group("well-tempered metadynamics")
    group.add_argument("--bias-factor", type=_positive_float, default=defaults.bias_factor,
                       help="bias factor γ > 1 (default %(default)s)")
    group.add_argument("--height", type=_positive_float, default=defaults.height,
                       help="initial Gaussian height, kJ/mol (default %(default)s)")
    group.add_argument("--frequency", type=_positive_int, default=defaults.frequency,
                       help="steps between Gaussian depositions (default %(default)s)")
    group.add_argument("--range", type=_range, action="append",
                       help="LOWER:UPPER of a component, repeat per component; write --range=-3:3 when LOWER is "
                            "negative (default: from the CV)")
    group.add_argument("--width", type=_positive_float, action="append",
                       help="Gaussian width of a component, CV units (repeat; default: from the CV)")
    group.add_argument("--stride", type=_positive_int, default=defaults.stride,
                       help="apply the bias every STRIDE steps (MTS Langevin; default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The ``cvplug`` argument parser (every subcommand and option, each with its help)."""
    from .learn import LearnSettings
    from .metad import WellTempered

    learn_defaults = LearnSettings()
    parser = argparse.ArgumentParser(prog="cvplug", description="Machine-learned collective variables for OpenMM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("simulate", help="run unbiased MD/BD and write a trajectory")
    _system_options(p, positional=True)
    _run_options(p, 50_000, 500)
    p.add_argument("--out", help="trajectory path: .dcd (+ .pdb) for molecules, .npz for toys (required)")
    p.add_argument("--dynamics", choices=["langevin", "brownian"], help="override the system's default dynamics")
    p.set_defaults(run=_simulate)

    p = commands.add_parser("bias", help="well-tempered metadynamics along a CV file")
    _system_options(p, positional=False)
    p.add_argument("--cv", help="a CV file written by CollectiveVariable.export or `cvplug learn` (required)")
    _run_options(p, 100_000, 500)
    p.add_argument("--out", default="bias-output", help="output folder; a second run resumes it "
                                                        "(default %(default)s)")
    _bias_options(p)
    p.add_argument("--engine", choices=["hills", "openmm"], default=WellTempered.engine,
                   help="hills: CV and bias in one PythonForce (default); openmm: OpenMM's Metadynamics")
    p.add_argument("--walker", type=int, default=0,
                   help="walker index of this process; walkers sharing --out share the bias")
    _walker_options(p, "run N walkers sharing the bias as Dask tasks (default %(default)s: one, in this process)")
    p.set_defaults(run=_bias)

    p = commands.add_parser("learn", help="alternate MD, CV learning and biasing for several rounds")
    _system_options(p, positional=True)
    p.add_argument("--method", default=learn_defaults.method,
                   help="a name from `cvplug methods` (default %(default)s)")
    p.add_argument("--option", type=_method_option, action="append", metavar="KEY=VALUE",
                   help="a method option (repeat), e.g. --option epochs=50; `cvplug methods` lists them")
    p.add_argument("--features", action="append", metavar="SPEC",
                   help="CV inputs (repeat): backbone-torsions, torsions:I,J,K,L;…, distances:SEL, contacts:SEL, "
                        "positions:SEL (default: backbone torsions of peptides, else aligned heavy atoms)")
    p.add_argument("--rounds", type=_positive_int, default=learn_defaults.rounds,
                   help="rounds: 1 unbiased, then biased (default %(default)s)")
    _run_options(p, learn_defaults.steps_per_round, learn_defaults.report_every)
    p.add_argument("--n-components", type=_positive_int, default=learn_defaults.n_components,
                   help="CV components (default %(default)s)")
    p.add_argument("--lag", type=_positive_int, default=learn_defaults.lag,
                   help="frames between the members of a training pair (default %(default)s)")
    _bias_options(p)
    _walker_options(p, "metadynamics walkers sharing the bias in each biased round, as Dask tasks, started from "
                       "frames spread over the CV (default %(default)s: one, in this process)")
    p.add_argument("--out", help="output folder; a second run resumes it (required)")
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
    commands.add_parser("methods", help="list the CV-learning methods, what they need and their options") \
        .set_defaults(run=_methods)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _apply_config(parser: argparse.ArgumentParser, args, argv) -> None:
    """Fill ``args`` from ``args.config`` wherever the command line did not set the option."""
    sub = _subparser(parser, args.command)
    path = Path(args.config)
    try:
        config = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no run file at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    dests = {a.dest: a for a in sub._actions if a.dest not in ("help", "config")}
    given = _given(sub, argv[1:])
    for key, value in config.items():
        dest = key.replace("-", "_")
        if dest not in dests:
            raise ValueError(f"{path}: unknown key {key!r} for `cvplug {args.command}`; keys are the long "
                             f"options: {', '.join(sorted(d for d in dests if d != 'system_name'))}")
        if dest in given:
            continue
        setattr(args, dest, _from_config(dests[dest], value, f"{path}: {key}"))


def _from_config(action: argparse.Action, value, where: str):
    """A run-file value checked as the command line would check it."""
    if action.dest == "option":
        return list(value.items()) if isinstance(value, dict) else [_method_option(v) for v in value]
    many = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*")
    if many and not isinstance(value, list):
        value = [value]
    if action.dest == "range":  # "LOWER:UPPER" as on the command line, or [LOWER, UPPER] as run files write it
        value = [":".join(map(str, v)) if isinstance(v, list) else v for v in value]
    if action.type is None or isinstance(value, bool):
        return value
    try:
        return [action.type(str(v)) for v in value] if many else action.type(str(value))
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{where}: {error}") from None


def _given(sub: argparse.ArgumentParser, argv) -> set:
    """The destinations the command line sets explicitly."""
    saved = [(a, a.default) for a in sub._actions]
    try:
        for action in sub._actions:
            action.default = argparse.SUPPRESS
        namespace, _ = sub.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
    return set(vars(namespace))


def main(argv=None) -> int:
    """Run the ``cvplug`` command with ``argv`` (default: the process's arguments); returns the exit status
    (0, 2 for an error, 130 for Ctrl-C)."""
    from .cv import CVFileError  # noqa: F401  (a ValueError: one line, exit 2)

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = lambda message, category, *_: f"cvplug {args.command}: warning: {message}\n"
    try:
        if getattr(args, "config", None):
            _apply_config(parser, args, argv)
        if getattr(args, "system_name", None):
            if args.system and args.system != args.system_name:
                raise ValueError(f"two systems given: {args.system_name!r} and --system {args.system!r}")
            args.system = args.system_name
        if hasattr(args, "system_name"):
            del args.system_name
        for required in ("out", "cv"):
            if hasattr(args, required) and getattr(args, required) is None:
                raise ValueError(f"give --{required} (on the command line or in the --config file)")
        args.run(args)
    except (ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else repr(error)
        print(f"cvplug {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "the same command without --overwrite" if getattr(args, "overwrite", False) else "the same command"
        print(f"\ncvplug {args.command}: interrupted; run {again} again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
