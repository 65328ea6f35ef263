"""Shutdown of the bridge's worker pool: dead workers, garbage collection, an interrupted or killed parent."""
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cvplug import systems
from cvplug.bridge import OpenMMEnergy

pytestmark = pytest.mark.slow  # each test starts worker processes (seconds each)

PARENT = """
import faulthandler, signal
faulthandler.register(signal.SIGUSR1)  # the test asks for a traceback if this process does not exit
# Ctrl-C raises KeyboardInterrupt, as in a terminal, even when the test runs in the background (a shell starts
# background jobs with SIGINT ignored, and Python then keeps it ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
import torch
from cvplug import systems
from cvplug.bridge import OpenMMEnergy
if __name__ == "__main__":
    spec = systems.load("ala2-vacuum")
    energy = OpenMMEnergy(spec, platform="Reference", batch_strategy="pool", workers=2)
    x = torch.tensor(spec.positions).repeat(64, 1, 1)
    energy(x)
    print(*energy.evaluator.pids, flush=True)
    while True:
        energy(x)
"""


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids, seconds=20.0) -> list:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def test_dead_worker_stops_the_pool_and_the_next_call_restarts_it():
    spec = systems.load("ala2-vacuum")
    energy = OpenMMEnergy(spec, platform="Reference", batch_strategy="pool", workers=2)
    x = torch.tensor(spec.positions).repeat(4, 1, 1)
    first = energy(x)
    os.kill(energy.evaluator.pids[0], signal.SIGKILL)
    with pytest.raises(RuntimeError, match="worker process died"):
        energy(x)
    assert multiprocessing.active_children() == []
    torch.testing.assert_close(energy(x), first, rtol=0, atol=0)
    pids = energy.evaluator.pids
    del energy
    gc.collect()
    assert wait_until_gone(pids, seconds=10) == [] and multiprocessing.active_children() == []


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_or_killed_parent_leaves_no_workers(how, tmp_path):
    stderr = tmp_path / "parent.err"
    with stderr.open("w") as err:
        parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, stderr=err, text=True,
                                  start_new_session=True)
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        time.sleep(0.5)  # mid-evaluation
        os.killpg(parent.pid, how)  # like Ctrl-C in a terminal: the whole process group gets SIGINT
        try:
            parent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            parent.send_signal(signal.SIGUSR1)  # faulthandler: where the parent is stuck
            time.sleep(1)
            pytest.fail(f"the parent did not exit within 30 s of {how.name}; its stderr:\n{stderr.read_text()}")
        assert wait_until_gone(pids) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()
