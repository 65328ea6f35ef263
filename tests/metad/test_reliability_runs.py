"""A run never mixes, loses or silently corrupts data (issue 20, items 1-6, 8-10).

One test (or a few) per item: one owner per output (OS lock), walkers as separate writers, checkpoints never ahead
of their data (both engines), run identity, atomic state files, arguments checked where they enter, one-line
errors, Ctrl-C. The kill tests run a scenario in a child process (:class:`Child`), kill it with SIGKILL, finish
the run in this process and check the output with :func:`check_bias` / :func:`check_simulate`: frames = colvar
lines = steps/report_every, no duplicate or missing time, hills = steps/frequency, each hill centre equal to the CV
at its deposition step.
"""
import errno
import json
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from cvplug import CollectiveVariable, systems
from cvplug.features import Cartesians
from cvplug.learn import LearnSettings, learn
from cvplug.metad import build_metadynamics, run_metadynamics
from cvplug.runs import RunInUseError, RunLock, RunMismatchError, walker_name, write_atomic
from cvplug.simulate import SimulationError, simulate

HERE = Path(__file__).resolve()
TOY_DT = 0.001  # ps, the toys' timestep
BIAS = dict(ranges=[(-4.0, 4.0)], widths=[0.15], bias_factor=10.0, height=0.5, frequency=20, report_every=10,
            platform="Reference", progress=False)
BIAS_STEPS = 4000       # 400 colvar lines and frames, 200 hills, a checkpoint every 40 frames
SIM_STEPS = 6000        # ala2-vacuum, 600 frames, a checkpoint every 7 frames
LEARN = dict(method="tica", rounds=2, steps_per_round=2000, report_every=10, n_components=1, height=0.5,
             frequency=100, platform="Reference")


def x_cv(component: int = 0):
    """The toy particle's x (or y) coordinate as a CV."""
    return CollectiveVariable(Cartesians([0], components=(component,)), torch.nn.Identity().double(), n_atoms=1,
                              names=[f"x{component + 1}"], method="analytic").double()


# --- the runs the kill tests interrupt --------------------------------------------------------------------------

def scenario(name: str, out: Path, walker: int = 0, **options):
    """Run (or resume) one of the kill tests' runs into ``out``."""
    if name == "simulate":
        return simulate(systems.load("ala2-vacuum"), SIM_STEPS, out / "md", report_every=10, checkpoint_every=7,
                        platform="Reference", progress=False, **options)
    if name in ("hills", "openmm"):
        steps = options.pop("steps", BIAS_STEPS)
        return run_metadynamics(systems.load("double-well"), x_cv(), steps, out, engine=name, walker=walker,
                                seed=walker, **{**BIAS, **options})
    if name == "learn":
        return learn("three-well", out, LearnSettings(**LEARN), progress=False)
    raise ValueError(name)


def _child(name: str, out: str, walker: int, exit_after_checkpoint: int, options: dict, ready, errors) -> None:
    """The child process: optionally die (os._exit, as SIGKILL would) right after its n-th checkpoint; sets
    ``ready`` once it is about to run and sends a traceback through ``errors`` if the scenario raises."""
    if exit_after_checkpoint:
        import cvplug.simulate as module

        save, written = module._save_checkpoint, []

        def save_then_die(*args):
            save(*args)
            written.append(1)
            if len(written) == exit_after_checkpoint:
                os._exit(9)

        module._save_checkpoint = save_then_die
    ready.set()
    try:
        scenario(name, Path(out), walker, **options)
    except BaseException:
        errors.send(traceback.format_exc())
        raise


# Children are forked from a server that imported these once, not started as new interpreters: ≈ 2.5 s of CPU
# saved per child, about 30 children in this file.
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["torch", "openmm", "pytest", "cvplug.learn", "cvplug.metad", "cvplug.simulate",
                                   "cvplug.plugins.tica"])


class Child:
    """A scenario started in a child process (this module run as ``__main__`` with ``CHILD`` set); returns once it
    is about to run. It has the part of the Popen interface the tests use; ``wait`` gives 9 after
    ``exit_after_checkpoint``, −9 after a SIGKILL."""

    def __init__(self, name: str, out: Path, walker: int = 0, exit_after_checkpoint: int = 0, **options):
        ready = FORKSERVER.Event()
        self._errors, errors = FORKSERVER.Pipe(duplex=False)
        arguments = (name, str(out), walker, exit_after_checkpoint, options, ready, errors)
        self.process = FORKSERVER.Process(target=runpy.run_path, args=(str(HERE),),
                                          kwargs={"init_globals": {"CHILD": arguments}, "run_name": "__main__"})
        self.process.start()
        self.pid = self.process.pid
        while not ready.wait(0.05):
            assert self.process.exitcode is None, f"the child ended before it started: {self.error()}"

    def poll(self):
        """The exit status, None while it runs."""
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"the child still runs after {timeout} s"
        return self.process.exitcode

    def error(self) -> str:
        """The traceback the child sent, if any."""
        return self._errors.recv() if self._errors.poll() else ""


def kill_when(child: Child, ready, timeout: float = 120.0) -> bool:
    """SIGKILL ``child`` as soon as ``ready()``; returns whether it was still running then."""
    deadline = time.monotonic() + timeout
    while not ready() and child.poll() is None:
        assert time.monotonic() < deadline, "the child never got there"
        time.sleep(0.002)
    running = child.poll() is None
    child.kill()
    child.wait()
    return running


def lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if not line.startswith("#"))
    except FileNotFoundError:
        return 0


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# --- what every finished run must look like ---------------------------------------------------------------------

def check_bias(out: Path, steps: int = BIAS_STEPS, report_every: int = 10, frequency: int = 20, walker: int = 0,
               engine: str = "hills", cv_of_frames=lambda x: x[:, 0], bias_factor: float = 10.0) -> None:
    """Frames = colvar lines = steps/report_every, times k·report_every·dt for k = 1 … without gap or duplicate,
    each frame the configuration of its colvar line, hills = steps/frequency, hill i centred at the CV of step
    (i + 1)·frequency; for OpenMM's engine one grid file per walker, the sum of its hills, and the FES from it."""
    def file(name):
        return out / walker_name(name, walker)

    n = steps // report_every
    colvar = np.loadtxt(file("colvar.dat"), ndmin=2)
    assert colvar.shape[0] == n, f"{len(colvar)} colvar lines, expected {n}"
    np.testing.assert_allclose(colvar[:, 0], report_every * TOY_DT * np.arange(1, n + 1), atol=1e-6)
    x = np.load(file("trajectory.npz"))["x"]
    assert len(x) == n, f"{len(x)} frames, expected {n}"
    np.testing.assert_allclose(cv_of_frames(x), colvar[:, 1], atol=2e-6)
    hills = np.load(out / ("hills" if engine == "hills" else "bias") / f"hills.{walker}.npy")
    assert len(hills) == steps // frequency, f"{len(hills)} hills, expected {steps // frequency}"
    deposited = frequency * np.arange(1, len(hills) + 1)  # the MD step of each hill
    on_frame = deposited % report_every == 0
    assert on_frame.any()
    np.testing.assert_allclose(hills[on_frame, 0], colvar[deposited[on_frame] // report_every - 1, 1], atol=2e-6)
    assert np.isfinite(hills).all() and (hills[:, -1] > 0).all()
    if engine == "openmm":
        import openmm
        import openmm.app as app

        grids = sorted((out / "bias").glob(f"bias_{walker}_*.npy"))
        assert len(grids) == 1, grids
        grid = np.load(grids[0])
        variable = app.BiasVariable(openmm.CustomExternalForce("x"), -4.0, 4.0, 0.15)
        nodes = np.linspace(0, 1, variable.gridWidth)
        rebuilt = sum(h * np.exp(-0.5 * (nodes - (c + 4) / 8) ** 2 / variable._scaledVariance) for c, h in hills)
        np.testing.assert_allclose(grid, rebuilt, rtol=1e-9, atol=1e-12)
        if len(list((out / "bias").glob("bias_*.npy"))) == 1:  # one walker: the FES is its grid, counted once
            fes = np.load(file("fes.npz"))["free_energy"]
            expected = -bias_factor / (bias_factor - 1) * grid
            np.testing.assert_allclose(fes, expected - expected.min(), atol=1e-9)


def check_simulate(out: Path, steps: int = SIM_STEPS, report_every: int = 10) -> None:
    """One frame per report, no frame repeated, and the checkpoint at the last step."""
    import openmm

    from cvplug.trajectory import load_trajectory

    trajectory = load_trajectory(out / "md.dcd")
    assert trajectory.n_frames == steps // report_every
    assert (np.abs(np.diff(trajectory.xyz, axis=0)).max(axis=(1, 2)) > 0).all()
    state = openmm.XmlSerializer.deserialize((out / "md.state.xml").read_text())
    assert state.getStepCount() == steps


def check(name: str, out: Path, walker: int = 0) -> None:
    if name == "simulate":
        check_simulate(out)
    elif name in ("hills", "openmm"):
        check_bias(out, engine=name, walker=walker)
    else:  # learn: round 0 unbiased (toy frames, their times), round 1 biased along round 0's CV
        from cvplug import load_cv

        spec = systems.load("three-well")
        n = LEARN["steps_per_round"] // LEARN["report_every"]
        frames = np.load(out / "round_0" / "trajectory.npz")
        assert len(frames["x"]) == n
        np.testing.assert_allclose(frames["time"], LEARN["report_every"] * TOY_DT * np.arange(1, n + 1))
        cv = load_cv(out / "round_0" / "cv.pt")

        def cv_of_frames(x):
            with torch.no_grad():
                return cv(torch.as_tensor(np.stack([spec.toy.positions(p) for p in x]))).double().numpy()[:, 0]

        check_bias(out / "round_1", LEARN["steps_per_round"], LEARN["report_every"], LEARN["frequency"],
                   cv_of_frames=cv_of_frames)
        assert [s["round"] for s in json.loads((out / "progress.json").read_text())] == [0, 1]


def progress_file(name: str, out: Path, walker: int = 0) -> Path:
    if name == "simulate":
        return out / "md.dcd"
    if name == "learn":
        return out / "round_1" / "colvar.dat"
    return out / walker_name("colvar.dat", walker)


# --- 1, 2: one run, one owner; walkers are separate writers -------------------------------------------------------

def test_second_run_on_a_locked_output_refuses_at_once_and_the_lock_dies_with_its_process(tmp_path, capsys):
    from cvplug.cli import main

    cv_file = x_cv().export(tmp_path / "x1.pt")
    argv = ["bias", "--system", "double-well", "--cv", str(cv_file), "--range=-4:4", "--width", "0.15",
            "--steps", str(BIAS_STEPS), "--report-every", "10", "--frequency", "20", "--height", "0.5",
            "--bias-factor", "10", "--platform", "Reference", "--out", str(tmp_path / "out")]
    child = subprocess.Popen([sys.executable, "-m", "cvplug.cli", *argv[:-2], "--steps", "400000",
                              "--out", str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while lines(tmp_path / "out" / "colvar.dat") < 5:  # the child owns the folder and runs
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        assert main(argv[:-2] + ["--steps", "400000", "--out", str(tmp_path / "out")]) == 2
        assert time.monotonic() - started < 10  # at once, not after the other run
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(tmp_path / "out") in err and f"process {child.pid}" in err, err
        assert "cvplug bias --system double-well" in err  # the other process's command
    finally:
        child.kill()  # SIGKILL: the OS releases its lock
        child.wait()
    import openmm

    checkpoint = tmp_path / "out" / "trajectory.state.xml"
    reached = openmm.XmlSerializer.deserialize(checkpoint.read_text()).getStepCount() if checkpoint.exists() else 0
    steps = reached + 400
    assert main(argv[:-2] + ["--steps", str(steps), "--out", str(tmp_path / "out")]) == 0  # resumes, no stale lock
    check_bias(tmp_path / "out", steps)


def test_a_held_lock_refuses_simulate_and_names_the_output(tmp_path):
    lock = RunLock(tmp_path / "md.lock")
    try:
        with pytest.raises(RunInUseError, match=f"{tmp_path / 'md'}.*process {os.getpid()}"):
            simulate(systems.load("three-well"), 100, tmp_path / "md", report_every=10, progress=False)
    finally:
        lock.release()
    simulate(systems.load("three-well"), 100, tmp_path / "md", report_every=10, progress=False)  # free again


def test_two_walkers_write_their_own_files_at_once_and_share_hills(tmp_path):
    other = Child("hills", tmp_path, walker=1)
    scenario("hills", tmp_path, walker=0)
    assert other.wait(timeout=120) == 0, other.error()
    for walker in (0, 1):
        check_bias(tmp_path, walker=walker)
    names = {p.name for p in tmp_path.iterdir()}
    for name in ("colvar.dat", "trajectory.npz", "trajectory.state.xml", "metadynamics.json", "identity.json",
                 "run.lock", "fes.npz"):
        assert name in names and walker_name(name, 1) in names, name
    assert sorted(p.name for p in (tmp_path / "hills").iterdir()) == ["hills.0.npy", "hills.1.npy"]
    settings = [json.loads((tmp_path / walker_name("metadynamics.json", k)).read_text()) for k in (0, 1)]
    assert [s["walker"] for s in settings] == [0, 1]


def test_walkers_must_share_the_cv_and_bias(tmp_path):
    scenario("hills", tmp_path, walker=0)
    with pytest.raises(RunMismatchError, match="identity.json.*cv"):
        run_metadynamics(systems.load("double-well"), x_cv(1), BIAS_STEPS, tmp_path, walker=1, **BIAS)
    with pytest.raises(RunMismatchError, match="height 0.5 → 0.7"):
        scenario("hills", tmp_path, walker=1, height=0.7)
    assert not (tmp_path / "colvar.1.dat").exists() and not (tmp_path / "hills" / "hills.1.npy").exists()


# --- 3, 5: checkpoints never run ahead of data; killed runs resume exactly ------------------------------------------

@pytest.mark.parametrize("engine", ["hills", "openmm"])
def test_killed_right_after_a_checkpoint_keeps_every_hill(tmp_path, engine):
    """report_every 150 and frequency 50 (the issue's 1500/500 scaled down): a checkpoint every 6 frames,
    18 hills, while hills used to be written every 10 depositions. Killed right after the first checkpoint,
    then resumed: 60 hills at the end, one per deposition, OpenMM's grid (the killed process's file replaced,
    not added) their sum."""
    options = dict(report_every=150, frequency=50, steps=3000)
    child = Child(engine, tmp_path, exit_after_checkpoint=1, **options)
    assert child.wait(timeout=120) == 9, child.error()
    hills = np.load(tmp_path / ("hills" if engine == "hills" else "bias") / "hills.0.npy")
    assert len(hills) >= 18  # all hills of the checkpoint (900 steps) are on disk
    scenario(engine, tmp_path, **options)
    check_bias(tmp_path, 3000, 150, 50, engine=engine)


@pytest.mark.parametrize("name", ["simulate", "hills", "openmm"])
def test_kill_at_a_random_moment_then_resume(tmp_path, name):
    rng = np.random.default_rng()
    total = {"simulate": size_of_dcd(SIM_STEPS // 10), "hills": BIAS_STEPS // 10, "openmm": BIAS_STEPS // 10}[name]
    target = int(rng.integers(1, total))
    print(f"SIGKILL once the output reaches {target} of {total}")
    child = Child(name, tmp_path)
    measure = (lambda: size(tmp_path / "md.dcd")) if name == "simulate" else (lambda: lines(tmp_path / "colvar.dat"))
    assert kill_when(child, lambda: measure() >= target), "the run ended before it could be killed"
    scenario(name, tmp_path)
    check(name, tmp_path)


def size_of_dcd(frames: int, atoms: int = 22) -> int:
    return 276 + frames * 3 * (8 + 4 * atoms)


@pytest.mark.slow
def test_twenty_random_kills_across_simulate_bias_learn_and_walkers(tmp_path):
    """20 of 20: four SIGKILLs at random moments each for simulate, bias with each engine, learn and two
    walkers (one of them killed while the other runs on); every run finished after its kill passes the checks.
    A kill lands at a random point of the output's growth (from "before the first write" to "the last frame"),
    or, for learn, at a random time in its rounds, training included."""
    rng = np.random.default_rng()
    failures, moments = [], []
    for trial, name in enumerate(["simulate", "hills", "openmm", "learn", "walkers"] * 4):
        out = tmp_path / f"{trial}-{name}"
        try:
            if name == "learn":
                delay = float(rng.uniform(0.0, 3.0))
                child = Child(name, out)
                time.sleep(delay)
                running = kill_when(child, lambda: True)
                moments.append(f"{name}: {delay:.2f} s{'' if running else ' (had ended)'}")
                scenario(name, out)
                check(name, out)
                continue
            walker = int(rng.integers(0, 2)) if name == "walkers" else 0
            engine = "hills" if name == "walkers" else name
            total = size_of_dcd(SIM_STEPS // 10) if name == "simulate" else BIAS_STEPS // 10
            target = int(rng.integers(0, total))
            measure = (lambda: size(out / "md.dcd")) if name == "simulate" else \
                (lambda: lines(out / walker_name("colvar.dat", walker)))
            if name == "walkers":
                survivor = Child(engine, out, walker=1 - walker)
            child = Child(engine, out, walker=walker)
            running = kill_when(child, lambda: measure() >= target)
            moments.append(f"{name}: {target}/{total}{'' if running else ' (had ended)'}")
            if name == "walkers":
                assert survivor.wait(timeout=180) == 0, survivor.error()
            scenario(engine, out, walker=walker)
            for k in ((0, 1) if name == "walkers" else (0,)):
                check(engine, out, walker=k)
        except AssertionError as error:
            failures.append(f"{name} ({moments[-1] if moments else '?'}): {error}")
    print("kills:", "; ".join(moments))
    assert not failures, failures
    assert len(moments) == 20


# --- 4: run identity ---------------------------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_simulate_rerun_with_other_report_every_is_refused_and_changes_nothing(tmp_path):
    simulate(systems.load("three-well"), 200, tmp_path / "md", report_every=10, progress=False)
    before = _snapshot(tmp_path)
    with pytest.raises(RunMismatchError, match="report_every 10 → 20"):
        simulate(systems.load("three-well"), 400, tmp_path / "md", report_every=20, progress=False)
    assert _snapshot(tmp_path) == before


def test_simulate_into_a_trajectory_of_another_system_is_refused(tmp_path):
    simulate(systems.load("three-well"), 200, tmp_path / "md", report_every=10, progress=False)
    with pytest.raises(RunMismatchError, match="'three-well' → 'double-well'"):
        simulate(systems.load("double-well"), 400, tmp_path / "md", report_every=10, progress=False)
    assert len(np.load(tmp_path / "md.npz")["x"]) == 20


def test_bias_rerun_with_another_frequency_or_cv_is_refused_and_changes_nothing(tmp_path):
    scenario("hills", tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(RunMismatchError, match="frequency 20 → 40"):
        scenario("hills", tmp_path, frequency=40)
    with pytest.raises(RunMismatchError, match="cv 'sha256:"):
        run_metadynamics(systems.load("double-well"), x_cv(1), BIAS_STEPS, tmp_path, **BIAS)
    with pytest.raises(RunMismatchError, match="report_every 10 → 20"):
        scenario("hills", tmp_path, report_every=20)
    assert _snapshot(tmp_path) == before


def test_overwrite_moves_the_old_run_aside(tmp_path):
    out = tmp_path / "bias"
    scenario("hills", out)
    before = _snapshot(out)
    with pytest.warns(UserWarning, match="moved to"):
        scenario("hills", out, frequency=40, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("bias.old-")]
    assert len(aside) == 1 and _snapshot(aside[0]) == before  # nothing deleted
    check_bias(out, frequency=40)
    # simulate: the files of the run move into <out>.old-<time>/, the folder around them stays
    simulate(systems.load("three-well"), 200, tmp_path / "md", report_every=10, progress=False)
    with pytest.warns(UserWarning, match="moved to"):
        simulate(systems.load("double-well"), 100, tmp_path / "md", report_every=10, progress=False, overwrite=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("md.old-")]
    assert len(aside) == 1 and len(np.load(aside[0] / "md.npz")["x"]) == 20
    assert len(np.load(tmp_path / "md.npz")["x"]) == 10


def test_files_without_an_identity_are_not_taken_over(tmp_path):
    (tmp_path / "colvar.dat").write_text("# time_ps x1 bias_kJmol\n0.01 0.5 0.0\n")
    with pytest.raises(RunMismatchError, match="no identity record"):
        scenario("hills", tmp_path)
    (tmp_path / "md.npz").write_bytes(b"someone's data")
    with pytest.raises(RunMismatchError, match="no identity record"):
        simulate(systems.load("three-well"), 100, tmp_path / "md", report_every=10, progress=False)
    assert (tmp_path / "md.npz").read_bytes() == b"someone's data"


def test_learn_rerun_with_other_settings_is_refused_and_more_rounds_resume(tmp_path):
    settings = {**LEARN, "rounds": 1}
    learn("three-well", tmp_path, LearnSettings(**settings), progress=False)
    with pytest.raises(RunMismatchError, match="steps_per_round 2000 → 1000"):
        learn("three-well", tmp_path, LearnSettings(**{**settings, "steps_per_round": 1000}), progress=False)
    with pytest.raises(RunMismatchError, match="'three-well' → 'double-well'"):
        learn("double-well", tmp_path, LearnSettings(**settings), progress=False)
    assert len(learn("three-well", tmp_path, LearnSettings(**LEARN), progress=False)) == 2


def test_cv_fingerprint_is_the_same_in_memory_and_from_its_file(tmp_path):
    from cvplug import load_cv
    from cvplug.runs import cv_fingerprint

    cv = x_cv()
    cv.calibrate(torch.randn(50, 1, 3, dtype=torch.float64))
    assert cv_fingerprint(cv) == cv_fingerprint(load_cv(cv.export(tmp_path / "cv.pt")))
    assert cv_fingerprint(cv) != cv_fingerprint(x_cv())  # other calibration, other bias settings suggested


# --- 6: small state files are written atomically, through one helper ------------------------------------------------

def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "progress.json"
    write_atomic(path, '{"old": 1}')

    def half_then_full_disk(handle):
        handle.write(b'{"new": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(path, half_then_full_disk)
    assert path.read_text() == '{"old": 1}' and [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_a_damaged_progress_file_is_named(tmp_path):
    learn("three-well", tmp_path, LearnSettings(**{**LEARN, "rounds": 1}), progress=False)
    (tmp_path / "progress.json").write_text('[{"round": 0, "md_sec')
    with pytest.raises(ValueError, match=f"{tmp_path / 'progress.json'} is damaged"):
        learn("three-well", tmp_path, LearnSettings(**LEARN), progress=False)


def test_state_files_are_written_through_the_one_helper():
    root = HERE.parents[2]
    offenders = []
    for path in sorted([*root.glob("cvplug/**/*.py"), *root.glob("plugins/**/*.py")]):
        if path.name == "runs.py" or path.relative_to(root).as_posix() == "cvplug/cv.py":
            continue  # cv.py: CV files (not run state) are exported atomically with their checksum (item 7)
        text = path.read_text()
        if "os.replace(" in text or "os.rename(" in text or '".tmp' in text or "'.tmp" in text or ".tmp." in text:
            offenders.append(str(path.relative_to(root)))
    assert not offenders, f"write state files with cvplug.runs.write_atomic: {offenders}"


# --- 8: arguments are checked where they enter -----------------------------------------------------------------------

@pytest.mark.parametrize("options, words", [
    (dict(frequency=-100), "frequency"), (dict(frequency=0), "frequency"), (dict(report_every=0), "report_every"),
    (dict(stride=0), "stride"), (dict(bias_factor=float("inf")), "bias_factor"), (dict(bias_factor=1.0), "> 1"),
    (dict(height=-5.0), "height"), (dict(height=float("nan")), "height"), (dict(widths=[float("nan")]), "width"),
    (dict(ranges=[(4.0, -4.0)]), "range"), (dict(ranges=[(-4.0, float("inf"))]), "range"),
    (dict(walker=-1), "walker"), (dict(report_every=30), "multiple"), (dict(frequency=20, stride=3), "stride"),
    (dict(engine="plumed"), "engine"), (dict(dynamics="newtonian"), "dynamics"), (dict(steps=-10), "steps"),
])
def test_bad_metadynamics_arguments_are_refused_before_anything_runs(tmp_path, options, words):
    settings = {**BIAS, **options}
    steps = settings.pop("steps", BIAS_STEPS)
    started = time.monotonic()
    with pytest.raises(ValueError, match=words):
        run_metadynamics(systems.load("double-well"), x_cv(), steps, tmp_path / "out", **settings)
    assert time.monotonic() - started < 5 and not (tmp_path / "out").exists()


def test_zero_temperature_and_bad_build_arguments_are_refused(tmp_path):
    spec = systems.load("double-well")
    spec.temperature = 0.0
    with pytest.raises(ValueError, match="temperature"):
        run_metadynamics(spec, x_cv(), 100, tmp_path / "out", **{**BIAS, "report_every": 10})
    with pytest.raises(ValueError, match="temperature"):
        build_metadynamics(spec, x_cv(), ranges=[(-4, 4)], widths=[0.15])
    with pytest.raises(ValueError, match="frequency"):
        build_metadynamics(systems.load("double-well"), x_cv(), ranges=[(-4, 4)], widths=[0.15], frequency=-100)
    with pytest.raises(ValueError, match="bias_factor"):
        build_metadynamics(systems.load("double-well"), x_cv(), ranges=[(-4, 4)], widths=[0.15],
                           bias_factor=float("inf"))


@pytest.mark.parametrize("options, words", [
    (dict(steps=0), "steps"), (dict(report_every=0), "report_every"), (dict(steps=105), "multiple"),
    (dict(checkpoint_every=0), "checkpoint_every"), (dict(dynamics="newtonian"), "dynamics"),
    (dict(save_atoms=[5]), "save_atoms"), (dict(steps=100.0), "steps"),
])
def test_bad_simulate_arguments_are_refused(tmp_path, options, words):
    settings = {"steps": 100, "report_every": 10, **options}
    with pytest.raises(ValueError, match=words):
        simulate(systems.load("three-well"), out=tmp_path / "md", progress=False, **settings)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["--frequency", "-100"], "expected a positive integer"), (["--bias-factor", "inf"], "finite"),
    (["--height", "nan"], "finite"), (["--width", "nan"], "finite"), (["--report-every", "0"], "positive"),
    (["--stride", "0"], "positive"),
])
def test_the_cli_refuses_bad_numbers_at_parse_time(tmp_path, capsys, argv, words):
    from cvplug.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bias", "--system", "double-well", "--cv", "x.pt", "--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


# --- 9: OSError and cvplug errors are one line and exit 2 ---------------------------------------------------------

def _bias_argv(tmp_path, out) -> list:
    cv_file = tmp_path / "x1.pt"
    if not cv_file.exists():
        x_cv().export(cv_file)
    return ["bias", "--system", "double-well", "--cv", str(cv_file), "--range=-4:4", "--width", "0.15",
            "--steps", "200", "--report-every", "10", "--frequency", "20", "--platform", "Reference",
            "--out", str(out)]



def test_cli_refused_rerun_changes_nothing_and_overwrite_starts_over(tmp_path, capsys, cli_error):
    from cvplug.cli import main

    out = tmp_path / "out"
    assert main(_bias_argv(tmp_path, out)) == 0
    capsys.readouterr()
    before = _snapshot(out)
    other = _bias_argv(tmp_path, out)
    other[other.index("--frequency") + 1] = "40"
    cli_error(other, str(out), "frequency 20 → 40", "--overwrite")
    assert _snapshot(out) == before  # run.toml included
    cli_error(_bias_argv(tmp_path, out) + ["--walker", "-1"], "walker")
    with pytest.warns(UserWarning, match="moved to"):
        assert main(other + ["--overwrite"]) == 0
    assert "frequency = 40" in (out / "run.toml").read_text()
    assert _snapshot(next(tmp_path.glob("out.old-*"))) == before
    check_bias(out, 200, frequency=40)


def test_out_that_is_a_file_is_one_line(tmp_path, capsys, cli_error):
    (tmp_path / "afile").write_text("not a folder")
    cli_error(_bias_argv(tmp_path, tmp_path / "afile"), "is a file")
    cli_error(["learn", "three-well", "--method", "tica", "--rounds", "1", "--steps", "100",
                              "--report-every", "10", "--out", str(tmp_path / "afile")], "is a file")
    cli_error(["simulate", "three-well", "--steps", "100", "--report-every", "10",
                              "--out", str(tmp_path / "afile" / "md")], "afile")
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_read_only_output_is_one_line(tmp_path, capsys, cli_error):
    if os.geteuid() == 0:  # root writes anywhere but where the kernel refuses everyone
        out = Path("/sys/cvplug-read-only-test")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        out = folder / "out"
    try:
        cli_error(_bias_argv(tmp_path, out), str(out.parent))
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o755)


def test_full_disk_is_one_line_and_keeps_the_old_state(tmp_path, capsys, monkeypatch, cli_error):
    from cvplug.cli import main

    out = tmp_path / "out"
    assert main(_bias_argv(tmp_path, out)) == 0
    before = _snapshot(out)
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("cvplug.runs.os.fsync", full)
    argv = _bias_argv(tmp_path, out)
    argv[argv.index("--steps") + 1] = "400"
    cli_error(argv, "No space left on device")
    monkeypatch.undo()
    assert _snapshot(out) == before  # no half-written file, no stray temporary
    assert main(argv) == 0  # space again: the run resumes
    check_bias(out, 400)


# --- 10: Ctrl-C is an interrupt, never a blow-up ----------------------------------------------------------------------

@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal, also where the suite runs as a shell's background job
    (which starts with SIGINT ignored, and Python keeps it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_inside_the_force(monkeypatch, at_call: int) -> None:
    """SIGINT delivered while the hills engine's PythonForce computes its ``at_call``-th force (as Ctrl-C lands
    there most of the time): Python raises KeyboardInterrupt inside OpenMM's callback."""
    from cvplug.metad.hills_engine import HillsEngine

    compute, calls = HillsEngine._compute, []

    def interrupted(self, state):
        calls.append(1)
        if len(calls) == at_call:
            os.kill(os.getpid(), signal.SIGINT)
        return compute(self, state)

    monkeypatch.setattr(HillsEngine, "_compute", interrupted)


@pytest.mark.parametrize("at_call", [3, 157, 401, 1111, 1999, 2500, 3003, 3999])
def test_ctrl_c_inside_the_bias_force_is_an_interrupt_and_the_run_resumes(tmp_path, monkeypatch, ctrl_c, at_call):
    _interrupt_inside_the_force(monkeypatch, at_call)
    with pytest.raises(KeyboardInterrupt):
        scenario("hills", tmp_path)
    monkeypatch.undo()
    scenario("hills", tmp_path)
    check_bias(tmp_path)


def test_ctrl_c_in_the_cli_exits_130_with_the_resume_hint(tmp_path, capsys, monkeypatch, ctrl_c):
    from cvplug.cli import main

    _interrupt_inside_the_force(monkeypatch, 150)
    assert main(_bias_argv(tmp_path, tmp_path / "out")) == 130
    err = capsys.readouterr().err
    assert "interrupted; run the same command again to resume" in err and "blew up" not in err
    monkeypatch.undo()
    assert main(_bias_argv(tmp_path, tmp_path / "out")) == 0
    check_bias(tmp_path / "out", 200)
    _interrupt_inside_the_force(monkeypatch, 50)  # with --overwrite, rerunning the same command would start over
    assert main(_bias_argv(tmp_path, tmp_path / "again") + ["--overwrite"]) == 130
    assert "run the same command without --overwrite again to resume" in capsys.readouterr().err


def test_a_real_blow_up_is_still_reported_as_one(tmp_path):
    import openmm

    from cvplug.simulate import make_simulation

    spec = systems.load("ala2-vacuum")
    exploding = make_simulation(spec, "Reference", integrator=openmm.LangevinMiddleIntegrator(300, 1, 0.1))
    with pytest.raises(SimulationError, match="blew up"):
        simulate(spec, 5000, tmp_path / "md", report_every=50, progress=False, simulation=exploding)


if __name__ == "__main__":  # a kill test's child (:class:`Child`)
    _child(*globals()["CHILD"])
