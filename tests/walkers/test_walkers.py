"""Walkers as Dask tasks (cvplug.walkers): a lost worker costs one segment and loses or repeats nothing."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cvplug import CollectiveVariable, systems
from cvplug.features import Cartesians

DASK = str(Path(sys.executable).with_name("dask"))


def x1_cv(path: Path) -> Path:
    """The double well's x1 as a CV file."""
    cv = CollectiveVariable(Cartesians([0], components=(0,)), torch.nn.Identity().double(), n_atoms=1,
                            names=["x1"], method="analytic").double()
    return cv.export(path)


def bias_argv(cv_file: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["bias", "--system", "double-well", "--cv", str(cv_file), "--range=-4:4", "--width", "0.15",
            "--steps", str(steps), "--report-every", "10", "--frequency", "20", "--height", "0.5",
            "--bias-factor", "10", "--platform", "Reference", "--out", str(out), *extra]


def rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_walkers_must_be_positive_at_parse_time(capsys, tmp_path):
    from cvplug.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(bias_argv(tmp_path / "x.pt", tmp_path / "out", 100, "--walkers", "0"))
    assert exit_info.value.code == 2
    assert "argument --walkers: expected a positive integer, got '0'" in capsys.readouterr().err


def test_unreachable_scheduler_fails_fast_naming_it(cli_error, tmp_path):
    started = time.monotonic()
    cli_error(bias_argv(x1_cv(tmp_path / "x1.pt"), tmp_path / "out", 100, "--walkers", "2",
                        "--scheduler", "tcp://127.0.0.1:9"), "tcp://127.0.0.1:9")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out" / "colvar.dat").exists()  # refused before any MD


def test_the_run_file_can_name_the_scheduler(cli_error, tmp_path):
    cv_file = x1_cv(tmp_path / "x1.pt")
    config = tmp_path / "run.toml"
    config.write_text(f'system = "double-well"\ncv = "{cv_file}"\nrange = ["-4:4"]\nwidth = [0.15]\n'
                      'steps = 100\nreport-every = 10\nwalkers = 2\nscheduler = "tcp://127.0.0.1:9"\n')
    cli_error(["bias", "--config", str(config), "--out", str(tmp_path / "out")], "tcp://127.0.0.1:9")


def test_segments_bias_a_copy_and_leave_the_shared_spec_as_sent(tmp_path):
    """Tasks on one worker share the spec Dask sent: a segment that added its bias force to it would bias the
    next segment twice (and the spec could no longer be sent on, hanging the run). run_metadynamics leaves the
    caller's spec as given."""
    from cvplug.metad import WellTempered
    from cvplug.walkers import _run_segment

    spec, cv_file = systems.load("double-well"), str(x1_cv(tmp_path / "x1.pt"))
    forces = spec.system.getNumForces()
    options = dict(settings=WellTempered(height=0.5, frequency=20, widths=(0.15,), ranges=((-4.0, 4.0),)),
                   report_every=10, platform="Reference")
    for target in (100, 200):
        assert _run_segment(spec, cv_file, target, str(tmp_path / "out"), 0, 0, options) == target
    assert spec.system.getNumForces() == forces
    assert rows(tmp_path / "out" / "colvar.dat") == 1 + 20  # header, then one line per 10 steps


@contextlib.contextmanager
def dask_cluster(folder: Path, *worker_options: list[str]):
    """A Dask scheduler and one single-threaded worker per entry of ``worker_options`` (extra `dask worker`
    arguments; no nanny: the worker is the process) on 127.0.0.1; yields the address and the worker processes."""
    scheduler_file = folder / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    logs = open(folder / "dask.log", "w")
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(scheduler_file)], stdout=logs, stderr=logs, env=env)
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        assert time.monotonic() < deadline and scheduler.poll() is None, (folder / "dask.log").read_text()
        time.sleep(0.2)
    workers = [subprocess.Popen([DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", *options],
                                stdout=logs, stderr=logs, env=env) for options in worker_options]
    address = json.loads(scheduler_file.read_text())["address"]
    try:
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait()
        logs.close()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two plain workers."""
    with dask_cluster(tmp_path, [], []) as started:
        yield started


@pytest.fixture
def gpu_cluster(tmp_path):
    """A scheduler, a plain worker and one that declares a GPU (`--resources GPU=1`; none needs to exist)."""
    with dask_cluster(tmp_path, [], ["--resources", "GPU=1"]) as started:
        yield started


@pytest.mark.slow
def test_a_killed_worker_costs_one_segment_and_nothing_is_lost_or_counted_twice(cluster, tmp_path):
    address, workers = cluster
    steps, out = 6000, tmp_path / "out"
    argv = bias_argv(x1_cv(tmp_path / "x1.pt"), out, steps, "--walkers", "2", "--scheduler", address,
                     "--segment", "1000")
    run = subprocess.Popen([sys.executable, "-m", "cvplug.cli", *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while min(rows(out / "colvar.dat"), rows(out / "colvar.1.dat")) < 250:  # both walkers in their 2nd segment
            if run.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            workers[0].send_signal(signal.SIGKILL)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:  # a hung run fails this test instead of holding the suite
            run.kill()
            output, _ = run.communicate()
    assert workers[0].poll() is not None, f"the run ended before both walkers reached step 2500:\n{output}"
    assert run.returncode == 0, output
    for walker, suffix in enumerate(("", ".1")):
        colvar = np.loadtxt(out / f"colvar{suffix}.dat", ndmin=2)
        np.testing.assert_allclose(colvar[:, 0], np.arange(1, steps // 10 + 1) * 10 * 0.001, rtol=1e-9)  # ps
        frames = np.load(out / f"trajectory{suffix}.npz")["x"]
        assert len(frames) == steps // 10
        np.testing.assert_allclose(frames[:, 0], colvar[:, 1], atol=1e-6)  # each frame with its colvar line
        hills = np.load(out / "hills" / f"hills.{walker}.npy")
        assert len(hills) == steps // 20
    assert "walkers: 12,000/12,000 steps" in output
    # fes.npz is the FES of the shared bias: both walkers' hills (σ 0.15, γ 10), F = −γ/(γ − 1) V
    from cvplug.metad.hills import read_hills

    fes = np.load(out / "fes.npz")
    x = fes["axis0"]
    hills = [read_hills(out / "hills" / f"hills.{walker}.npy", 1) for walker in (0, 1)]
    centres, heights = np.concatenate([c[:, 0] for c, _ in hills]), np.concatenate([h for _, h in hills])
    bias = (heights * np.exp(-0.5 * ((x[:, None] - centres) / 0.15) ** 2)).sum(axis=1)
    np.testing.assert_allclose(fes["free_energy"], -10 / 9 * (bias - bias.max()), atol=1e-9)


def test_spread_starts_at_the_last_row_and_takes_the_farthest_each_time():
    from cvplug.learn import _spread

    values = np.array([[0.0], [0.1], [5.0], [2.4], [0.2]])
    assert _spread(values, 3, [None]) == [4, 2, 3]  # from 0.2: 5.0, then 2.4 (2.2 from the nearest chosen)
    angles = np.array([[3.0], [-3.0], [0.0]])  # ±3 rad are 0.28 rad apart across the period
    assert _spread(angles, 2, [(-np.pi, np.pi)]) == [2, 0]
    assert _spread(angles[:1], 2, [None]) == [0, 0]  # fewer rows than walkers: rows repeat


def test_learn_rounds_with_two_walkers_share_the_bias_and_resume(tmp_path, capsys):
    """`cvplug learn --walkers 2` on the three-well toy: round 0 one unbiased run; rounds 1 and 2 two walkers
    each (Dask, local cluster), started apart along the CV, sharing one bias that round 2 inherits from round 1's
    hills of both walkers; a rerun finds every round done, and other walker counts are refused."""
    from cvplug import load_cv
    from cvplug.cli import main
    from cvplug.learn import LearnSettings, prepare

    out = tmp_path / "learn"
    argv = ["learn", "three-well", "--method", "tica", "--rounds", "3", "--steps", "2000", "--report-every", "20",
            "--n-components", "1", "--platform", "Reference", "--walkers", "2", "--segment", "1000", "--out",
            str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("walkers: 4,000/4,000 steps (100 %)") == 2
    for k in (1, 2):
        for suffix in ("", ".1"):
            assert len(np.load(out / f"round_{k}" / f"trajectory{suffix}.npz")["x"]) == 100
            assert len(np.load(out / f"round_{k}" / "hills" / f"hills.{suffix.strip('.') or 0}.npy")) == 20
    inherited = np.load(out / "round_2" / "hills" / "inherited.npy")
    assert len(inherited) == 2 * 20                                      # both walkers' round-1 hills
    summary = (out / "round_2" / "summary.json").read_text()
    assert '"frames": 200' in summary and '"sampled_ps": 4.0' in summary
    assert '"train_worker": "tcp://' in summary and '"train_device": "cpu"' in summary  # a task on the cluster

    run = prepare("three-well", out, LearnSettings(method="tica", rounds=3, steps_per_round=2000, report_every=20,
                                                   n_components=1, platform="Reference", walkers=2))
    assert run.run() and len(run.frames) == 5 and run.round_of == [0, 1, 1, 2, 2]   # resumed: all read back
    weights = run.per_round(run.weights)
    np.testing.assert_allclose([w.sum() for w in weights], 1.0)
    starts = run.walker_starts(1, load_cv(out / "round_0" / "cv.pt"))
    np.testing.assert_allclose(starts[0], run.frames[0][-1].reshape(-1, 3), atol=1e-6)  # round 0's last frame
    assert np.abs(starts[1] - starts[0]).max() > 0.5                                   # and one far from it
    assert main([*argv[:-6], "--walkers", "3", "--out", str(out)]) == 2                   # other walker counts


def test_learn_trains_each_round_as_one_task_on_the_worker_that_declares_a_gpu(gpu_cluster, tmp_path):
    """With walkers, each round's training is a Dask task; a method that can train on CUDA asks for the GPU
    resource, so the scheduler places it on the worker that declares one (whose torch then picks its device)."""
    from distributed import Client

    from cvplug.learn import LearnSettings, prepare
    from cvplug.walkers import gpu_resources

    address, _ = gpu_cluster
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
        gpu = [a for a, w in client.scheduler_info()["workers"].items() if w["resources"].get("GPU")]
        assert gpu_resources(client) == {"GPU": 1} and len(gpu) == 1
    settings = LearnSettings(method="dynae", rounds=2, steps_per_round=1000, report_every=20, n_components=1,
                             platform="Reference", walkers=2, method_options={"epochs": 2, "min_steps": 1})
    summaries = prepare("three-well", tmp_path / "learn", settings, progress=False).run(scheduler=address,
                                                                                        segment=1000)
    assert [s["train_worker"] for s in summaries] == gpu * 2
    assert {s["train_device"] for s in summaries} == {"cuda" if torch.cuda.is_available() else "cpu"}


def test_cuda_training_without_a_gpu_worker_is_refused_before_any_md(tmp_path):
    from cvplug.learn import LearnSettings, prepare

    settings = LearnSettings(method="dynae", rounds=2, steps_per_round=1000, report_every=20, n_components=1,
                             platform="Reference", walkers=2, method_options={"device": "cuda"})
    run = prepare("three-well", tmp_path / "learn", settings, progress=False)
    with pytest.raises(ValueError, match="no worker of the Dask cluster declares a GPU"):
        run.run()
    assert not (tmp_path / "learn" / "round_0" / "trajectory.npz").exists() and run.client is None
