"""Metadynamics walkers as Dask tasks: N walkers share one well-tempered bias, on one machine or many.

Each walker is the ordinary resumable metadynamics run of :func:`cvplug.metad.run_metadynamics` with its own
index ``k`` in one shared output folder: it owns its files (``colvar.k.dat``, ``trajectory.k.*`` …) and reads
the other walkers' hills every 10 depositions (``"hills"`` engine; every deposition with ``"openmm"``),
PLUMED-style multiple walkers. Its steps are cut into *segments*: one Dask task runs walker k from its last
checkpoint up to the end of segment j, and a segment ends in a checkpoint. A task lost with its worker is rerun by
the scheduler from that walker's last checkpoint, and the run cuts back whatever was written after it, so nothing
is lost or counted twice.

The cluster is Dask distributed (https://distributed.dask.org): an embedded ``LocalCluster`` sized to the
machine by default, or any running scheduler by address (``dask scheduler`` / ``dask worker``, or
dask-jobqueue on SLURM/PBS/SGE). Workers must see the output folder at the same path (a shared filesystem).
We write only the segment loop; scheduling, retries after a lost worker and the dashboard are Dask's.

A learn run with walkers also trains each round's CV as one task on the cluster (:func:`cvplug.learn.fit_method`),
on a worker that declares a ``GPU`` resource where one does (:func:`gpu_resources`).
"""
from __future__ import annotations

import logging
import math
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

__all__ = ["ClusterError", "WalkerProgress", "open_client", "gpu_resources", "dashboard", "segment_targets",
           "run_walkers"]

CONNECT_TIMEOUT = 10.0  # s, to reach a scheduler given by address
SEGMENT = 50_000  # MD steps per task by default: a lost worker costs at most that much of one walker


class ClusterError(ValueError):
    """The Dask cluster cannot be used (unreachable scheduler, no workers)."""


def open_client(scheduler: Optional[str] = None, walkers: int = 1, threads: int = 1):
    """A Dask ``Client``: to the scheduler at ``scheduler`` (e.g. ``"tcp://10.0.0.5:8786"``), or to a new
    ``LocalCluster`` of ``min(walkers, cores // threads)`` single-threaded worker processes, where ``threads``
    is the number of OpenMM CPU threads each walker uses. The client owns that cluster: closing it closes both.

    Raises :class:`ClusterError` naming the address when the scheduler cannot be reached within
    :data:`CONNECT_TIMEOUT` seconds.
    """
    import dask
    from distributed import Client

    from .bridge.context import usable_cores

    if scheduler:
        try:
            _probe(scheduler)
            with dask.config.set({"distributed.comm.timeouts.connect": f"{CONNECT_TIMEOUT:g}s"}):
                return Client(scheduler, timeout=f"{CONNECT_TIMEOUT:g}s")
        except (OSError, TimeoutError, ValueError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT:g} s "
                               f"({type(error).__name__}); check the address and that `dask scheduler` runs "
                               "there") from None
    workers = max(1, min(walkers, usable_cores() // max(1, threads)))
    return Client(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                  silence_logs=logging.ERROR)


def _probe(address: str) -> None:
    """Open and close a TCP connection to a ``tcp://`` or ``tls://`` scheduler address (OSError if none within
    :data:`CONNECT_TIMEOUT`): a refused port fails at once, where Dask's client retries until its timeout."""
    from distributed.comm.addressing import parse_address, parse_host_port

    protocol, location = parse_address(address)
    if protocol in ("tcp", "tls"):
        socket.create_connection(parse_host_port(location), timeout=CONNECT_TIMEOUT).close()


def gpu_resources(client) -> Optional[dict]:
    """``{"GPU": 1}`` (the resources a task asks for to run on a GPU worker) when a worker of ``client``'s cluster
    declares a ``GPU`` resource (``dask worker ADDRESS --resources GPU=1``), else None."""
    workers = client.scheduler_info()["workers"].values()
    return {"GPU": 1} if any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers) else None


def dashboard(client) -> Optional[str]:
    """The address of the Dask dashboard of ``client``'s cluster, or None where it does not run."""
    try:
        import bokeh  # noqa: F401  (the dashboard needs it)
    except ImportError:
        return None
    return client.dashboard_link


def segment_targets(steps: int, segment: int, multiple: int) -> list[int]:
    """The step counts at which the segments of a walker of ``steps`` MD steps end: every ``segment`` steps
    (rounded up to a multiple of ``multiple``, the frame interval) and at ``steps``.

    >>> segment_targets(1000, 300, 100)
    [300, 600, 900, 1000]
    """
    segment = max(multiple, math.ceil(segment / multiple) * multiple)
    return list(range(segment, steps, segment)) + [steps]


def _run_segment(spec, cv_path: str, target: int, out_dir: str, walker: int, seed: int, options: dict,
                 start=None) -> int:
    """One task: walker ``walker`` from its last checkpoint (or from ``start`` positions [n_atoms, 3], nm, or the
    spec's) to step ``target``; returns ``target``. ``spec`` is shared by the tasks on a worker and stays as sent
    (run_metadynamics biases a copy of its System)."""
    import dataclasses

    import torch  # noqa: F401  (before openmm)

    from .cv import load_cv
    from .metad import run_metadynamics

    torch.set_num_threads(1)
    if start is not None:
        spec = dataclasses.replace(spec, positions=start)
    run_metadynamics(spec, load_cv(cv_path), target, out_dir, walker=walker, seed=seed + walker, progress=False,
                     outputs=False, **options)
    return target


@dataclass
class WalkerProgress:
    """What the console shows: MD steps done over all walkers, and the total rate."""

    done: int
    total: int
    seconds: float
    timestep: float  # ps

    @property
    def ns_per_day(self) -> float:
        """Total simulated time of all walkers per wall-clock day, ns/day."""
        return self.done * self.timestep * 1e-3 / max(self.seconds, 1e-9) * 86400.0

    def __str__(self) -> str:
        return (f"walkers: {self.done:,}/{self.total:,} steps ({100 * self.done / self.total:.0f} %), "
                f"{self.ns_per_day:.1f} ns/day in total")


def run_walkers(spec, cv_path, steps: int, out_dir, *, walkers: int, client, segment: int, report_every: int,
                seed: int = 0, starts=None, retries: int = 3,
                on_progress: Optional[Callable[[WalkerProgress], None]] = None, **options) -> list[int]:
    """Run ``walkers`` metadynamics walkers of ``steps`` MD steps each on ``client``'s cluster.

    ``spec`` is a SystemSpec (sent to the workers), ``cv_path`` a CV file all workers can read, ``segment`` the
    MD steps of one task; ``options`` go to :func:`cvplug.metad.run_metadynamics` (bias settings, engine,
    platform …). Walker k uses seed ``seed + k``. The segments of one walker run in order; the walkers run side
    by side. ``starts``: per walker, the positions [n_atoms, 3] (nm) it starts from (default: the spec's). A task
    whose worker dies is rerun (``retries`` times) from the walker's last checkpoint.
    ``on_progress`` is called after every finished segment. At the end, ``fes.npz`` and ``fes.png`` hold the FES
    of the shared bias (all walkers' hills). Returns the steps each walker reached.
    """
    from distributed import as_completed

    from .metad.fes import save_fes, shared_free_energy

    targets = segment_targets(steps, segment, report_every)
    cv_path, out_dir = str(Path(cv_path).resolve()), str(Path(out_dir).resolve())
    timestep = spec.timestep
    reached = [0] * walkers
    spec_future = client.scatter(spec, broadcast=True)
    options = dict(options, report_every=report_every)
    run = uuid.uuid4().hex[:8]

    def submit(walker: int, index: int):
        start = None if starts is None else starts[walker]
        future = client.submit(_run_segment, spec_future, cv_path, targets[index], out_dir, walker, seed, options,
                               start, key=f"walker-{walker}-segment-{index}-{run}", retries=retries, pure=False)
        future.walker, future.index = walker, index
        return future

    started = time.perf_counter()
    queue = as_completed([submit(k, 0) for k in range(walkers)])
    for future in queue:
        reached[future.walker] = future.result()
        if future.index + 1 < len(targets):
            queue.add(submit(future.walker, future.index + 1))
        if on_progress is not None:
            on_progress(WalkerProgress(sum(reached), walkers * steps, time.perf_counter() - started, timestep))
    save_fes(Path(out_dir) / "fes.npz", *shared_free_energy(out_dir))
    return reached
