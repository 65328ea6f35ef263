"""Strategy 2: a pool of worker processes, each with its own OpenMM Context, sharing a batch between them.

Workers are started with ``spawn`` (safe with threads, CUDA and OpenMM), lazily at the first call, and each runs
the single-Context strategy with ``threads`` CPU threads, so that workers × threads ≤ cores by default. They are
stopped by :meth:`WorkerPool.close`, when the pool is garbage-collected, at interpreter exit, and when a call is
interrupted (Ctrl-C) or a worker dies. Workers ignore SIGINT (the parent decides) and exit by themselves when the
parent disappears, since their pipe to it closes. A script that uses the pool must guard its entry point with
``if __name__ == "__main__":`` (spawn re-imports the main module in every worker).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
import weakref
from typing import Mapping, Optional

import numpy as np
import openmm

from .context import usable_cores
from .single import SingleContext

__all__ = ["WorkerPool"]

_STOP_SECONDS = 5.0  # how long close() waits for workers to finish before terminating them


def _serve(connection, system_xml: str, platform: str, threads: int, properties: dict,
           box_vectors: Optional[np.ndarray]) -> None:
    """A worker's life: build a SingleContext, then answer position batches until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _answer(connection, system_xml, platform, threads, properties, box_vectors)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # skip interpreter teardown (torch's takes seconds); a worker holds nothing to flush


def _answer(connection, system_xml: str, platform: str, threads: int, properties: dict,
            box_vectors: Optional[np.ndarray]) -> None:
    try:
        try:
            evaluator = SingleContext(openmm.XmlSerializer.deserialize(system_xml), platform, threads, properties,
                                      box_vectors)
        except Exception as error:  # reported to the parent, which raises it
            connection.send(("error", f"{type(error).__name__}: {error}"))
            return
        connection.send(("ready", None))
        while (positions := connection.recv()) is not None:
            try:
                connection.send(("ok", evaluator(positions)))
            except Exception as error:
                connection.send(("error", f"{type(error).__name__}: {error}"))
    except (EOFError, BrokenPipeError, ConnectionResetError):
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
    system : the OpenMM System (constraints ignored: energies are those of the given positions).
    workers : number of worker processes (default: the usable cores).
    platform : OpenMM platform of every worker's Context.
    threads : CPU threads per worker (default: cores // workers, at least 1).
    properties, box_vectors : see :func:`cvplug.bridge.context.make_context`.
    """

    def __init__(self, system: openmm.System, workers: Optional[int] = None, platform: str = "CPU",
                 threads: Optional[int] = None, properties: Optional[Mapping[str, str]] = None,
                 box_vectors: Optional[np.ndarray] = None):
        cores = usable_cores()
        self.workers = int(workers or cores)
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.threads = int(threads or max(1, cores // self.workers))
        self._arguments = (openmm.XmlSerializer.serialize(system), platform, self.threads, dict(properties or {}),
                           box_vectors)
        self._processes: list = []
        self._connections: list = []
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (empty before the first call and after close)."""
        return [process.pid for process in self._processes]

    def start(self) -> None:
        """Start the workers and wait until each has built its Context (called by the first evaluation)."""
        if self._processes:
            return
        spawn = multiprocessing.get_context("spawn")
        for _ in range(self.workers):
            parent_end, child_end = spawn.Pipe()
            process = spawn.Process(target=_serve, args=(child_end, *self._arguments), daemon=True,
                                    name="cvplug-bridge-worker")
            process.start()
            child_end.close()
            self._processes.append(process)
            self._connections.append(parent_end)
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._connections)
        try:
            self._gather(self._connections)
        except RuntimeError:
            self.close()
            raise

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.start()
        chunks = [chunk for chunk in np.array_split(positions, self.workers) if len(chunk)]
        connections = self._connections[:len(chunks)]
        try:
            for connection, chunk in zip(connections, chunks):
                connection.send(chunk)
        except BaseException:
            self.close()
            raise
        results = self._gather(connections)
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def _gather(self, connections: list) -> list:
        """Every worker's answer; stops the pool if one died or the wait was interrupted."""
        try:
            answers = [connection.recv() for connection in connections]
        except EOFError:
            self.close()
            raise RuntimeError("a bridge worker process died (out of memory or killed?); the pool was stopped "
                               "and restarts at the next call") from None
        except BaseException:  # e.g. KeyboardInterrupt: unread answers would desynchronise the pool
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
