"""Strategy 2: a pool of worker processes, each with its own OpenMM Context, sharing a batch between them.

Each worker builds its evaluator (a :class:`~cvplug.bridge.single.SingleContext`, or a
:class:`~cvplug.bridge.replicated.ReplicatedContext` for a pool of replicated systems) from a picklable factory.
Workers are started with ``spawn`` (safe with threads, CUDA and OpenMM), lazily at the first call, which takes
seconds (every worker imports torch). They are stopped by :meth:`WorkerPool.close`, when the pool is
garbage-collected, at interpreter exit, and when a call is interrupted (Ctrl-C) or a worker dies. Workers ignore
SIGINT (the parent decides) and exit by themselves when the parent disappears, since their pipe to it closes.
Each worker runs on its own share of the usable cores (:func:`core_shares`), so workers do not compete for a
core and a one-thread Context never waits for another core to wake up.
A script that uses the pool must guard its entry point with ``if __name__ == "__main__":`` (spawn re-imports
the main module in every worker).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
import weakref
from typing import Callable, Optional, Sequence

import numpy as np

from .context import Evaluator, on_cores

__all__ = ["WorkerPool", "core_shares"]

_STOP_SECONDS = 5.0  # how long close() waits for workers to finish before terminating them


def core_shares(workers: int) -> list[frozenset[int]]:
    """Disjoint shares of the usable cores, one per worker (cores // workers each; shared round-robin when there
    are more workers than cores)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cores:
        return [frozenset()] * workers
    size = max(1, len(cores) // workers)
    return [frozenset(cores[(i * size + k) % len(cores)] for k in range(size)) for i in range(workers)]


def _serve(connection, make_evaluator: Callable[[], Evaluator], cores: frozenset[int]) -> None:
    """A worker's life: build the evaluator on ``cores``, then answer position batches until told to stop or
    orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with on_cores(cores):
            _answer(connection, make_evaluator)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # skip interpreter teardown (torch's takes seconds); a worker holds nothing to flush


def _answer(connection, make_evaluator: Callable[[], Evaluator]) -> None:
    try:
        try:
            evaluator = make_evaluator()
        except Exception as error:  # reported to the parent, which raises it
            connection.send(("error", f"{type(error).__name__}: {error}"))
            return
        connection.send(("ready", None))
        while (positions := connection.recv()) is not None:
            try:
                connection.send(("ok", evaluator(positions)))
            except Exception as error:
                connection.send(("error", f"{type(error).__name__}: {error}"))
    except (EOFError, ConnectionError):
        return  # the parent has gone or closed the pipe


def _shutdown(processes: list, connections: list) -> None:
    """Ask workers to stop, close the pipes, and terminate the ones that have not exited in time."""
    for connection in connections:
        try:
            connection.send(None)
        except (OSError, ValueError):
            pass
        connection.close()
    deadline = time.monotonic() + _STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join()
    processes.clear()
    connections.clear()


class WorkerPool:
    """Evaluates energies (kJ/mol) and forces (kJ/mol/nm) of positions [B, n, 3] (nm) in ``workers`` processes.

    Parameters
    ----------
    make_evaluator : picklable factory of each worker's evaluator, e.g.
        ``functools.partial(SingleContext, system, "CPU", threads)``; give each worker cores // workers threads.
    workers : number of worker processes.
    """

    def __init__(self, make_evaluator: Callable[[], Evaluator], workers: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.make_evaluator, self.workers = make_evaluator, int(workers)
        self._processes: list = []
        self._connections: list = []
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (empty before the first call and after close)."""
        return [process.pid for process in self._processes]

    def start(self) -> None:
        """Start the workers and wait until each has built its evaluator (done by the first evaluation)."""
        if self._processes:
            return
        spawn = multiprocessing.get_context("spawn")
        for cores in core_shares(self.workers):
            parent_end, child_end = spawn.Pipe()
            process = spawn.Process(target=_serve, args=(child_end, self.make_evaluator, cores), daemon=True,
                                    name="cvplug-bridge-worker")
            process.start()
            child_end.close()
            self._processes.append(process)
            self._connections.append(parent_end)
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._connections)
        try:
            self._talk(self._connections)
        except RuntimeError:
            self.close()
            raise

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.start()
        chunks = [chunk for chunk in np.array_split(positions, self.workers) if len(chunk)]
        results = self._talk(self._connections[:len(chunks)], chunks)
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def _talk(self, connections: list, messages: Sequence = ()) -> list:
        """Send each message to its worker, then gather every worker's answer. Stops the pool if a worker died
        or the wait was interrupted (unread answers would desynchronise it); raises a worker's error.
        """
        try:
            for connection, message in zip(connections, messages):
                connection.send(message)
            answers = [connection.recv() for connection in connections]
        except (EOFError, ConnectionError):
            self.close()
            raise RuntimeError("a bridge worker process died (out of memory or killed?); the pool was stopped "
                               "and restarts at the next call") from None
        except BaseException:  # e.g. KeyboardInterrupt
            self.close()
            raise
        errors = [detail for status, detail in answers if status == "error"]
        if errors:
            raise RuntimeError(f"a bridge worker failed: {errors[0]}")
        return [detail for _, detail in answers]

    def close(self) -> None:
        """Stop the workers (idempotent); a later call starts new ones."""
        if self._finalizer is not None:
            self._finalizer()
        self._processes, self._connections, self._finalizer = [], [], None
