"""Who owns a run's output, what defines a run, and how its small state files are written.

Every run that writes an output (:func:`cvplug.simulate.simulate`, :func:`cvplug.metad.run_metadynamics`, each
walker of it, :func:`cvplug.learn.learn`) goes through :func:`claim` before it writes anything:

1. **One run, one owner.** It takes an OS file lock (``fcntl.flock``) on a lock file of that output (``run.lock``,
   ``run.<walker>.lock``, ``<out>.lock``), which it holds until it ends; the OS releases it when the process dies,
   so a killed run never leaves a stale lock. A second run on the same output refuses at once, naming the output
   and the process that holds it (its pid and command are written into the lock file). Locks are advisory and
   local: two machines writing one folder over NFS are not stopped.
2. **Run identity.** The run records what defines it (the system, the CV, the method and its settings, the walker)
   in an identity file (``identity.json``, ``identity.<walker>.json``, ``<out>.identity.json``). A rerun with the
   same identity resumes; one with another identity refuses and lists the differences — unless it is asked to
   start over (``overwrite=True``, ``--overwrite``), which moves the old output aside to ``<out>.old-<time>``.
   Nothing is deleted. Output files without an identity record (an older cvplug, or made by hand) are treated
   like a different run.

Every small state file (progress, settings, run files, identities, checkpoints) is written by
:func:`write_atomic`: a temporary file in the same folder, flushed to disk, then renamed over the old one, so a
reader — or a run killed or out of disk space mid-write — sees the old file or the new one, never half of one.

The argument checks shared by the run entry points (:func:`positive_int`, :func:`positive_number`) live here
too: a run's arguments are what its identity records.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import math
import numbers
import os
import socket
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

__all__ = ["RunError", "RunInUseError", "RunMismatchError", "write_atomic", "write_json", "read_json", "RunLock",
           "claim", "move_folder_aside", "move_files_aside", "walker_name", "system_identity", "cv_fingerprint",
           "tensors_fingerprint", "atoms_identity", "positive_int", "positive_number", "nonnegative_int"]


class RunError(ValueError):
    """A run that cannot start on its output (in use, or holding another run)."""


class RunInUseError(RunError):
    """Another process is writing the output."""


class RunMismatchError(RunError):
    """The output holds another run (other system, CV or settings)."""


# --- atomic writes ---------------------------------------------------------------------------------------------

def write_atomic(path, data: Union[str, bytes, Callable[[Any], None]],
                 verify: Optional[Callable[[Path], None]] = None) -> Path:
    """Write ``data`` to ``path`` atomically: text, bytes, or a function that writes to a binary file handle
    (``lambda handle: np.save(handle, array)``). The file is flushed to disk before it replaces the old one;
    ``verify(temporary_path)``, if given, checks it first (an exception keeps the old file)."""
    path = Path(path)
    temporary = path.with_name(f".tmp.{path.name}.{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_json(path, value) -> Path:
    """``value`` as indented JSON, written atomically."""
    return write_atomic(path, json.dumps(value, indent=2) + "\n")


def read_json(path, default=None):
    """The JSON in ``path`` (``default`` if there is no file); a damaged file raises a ValueError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is damaged ({error}); restore it, or start over with --overwrite "
                       "(overwrite=True), which moves the old run aside") from None


# --- locks -----------------------------------------------------------------------------------------------------

def _holder(path: Path) -> str:
    """Who holds the lock ``path``, as its lock file says."""
    try:
        info = dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
    except OSError:
        info = {}
    if "pid" not in info:
        return "another process"
    where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    return (f"process {info['pid']}{where} ({info.get('command', '?')!r}, started "
            f"{info.get('started', '?')})")


class RunLock:
    """An exclusive OS lock (``fcntl.flock``) on ``path``, released by :meth:`release` or when the process
    dies. Raises :class:`RunInUseError` at once if another process (or another lock in this one) holds it."""

    def __init__(self, path, what: Optional[str] = None):
        self.path = Path(path)
        self.what = what or str(self.path.parent)
        self._fd: Optional[int] = None
        self._acquire()

    def _acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunInUseError(f"{self.what} is being written by another run: {_holder(self.path)}; wait for "
                                    "it to end or choose another output") from None
            raise
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        command = " ".join(["cvplug" if program == "cli.py" else program, *sys.argv[1:]])  # python -m cvplug.cli
        os.write(fd, f"pid {os.getpid()}\nhost {socket.gethostname()}\ncommand {command}\nstarted {started}\n"
                 .encode())
        self._fd = fd

    def moved(self) -> bool:
        """Whether the lock file no longer sits at ``path`` (its folder was moved aside)."""
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    def renew(self) -> None:
        """Lock ``path`` again after the old lock file moved away with its folder."""
        old = self._fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire()
        if old is not None:
            os.close(old)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


# --- starting over ---------------------------------------------------------------------------------------------

def _aside(path: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.old-{stamp}-{n}")
    return target


def move_folder_aside(folder, own_lock: Optional[RunLock] = None) -> Path:
    """Rename ``folder`` to ``<folder>.old-<time>``; refuses while a run other than ``own_lock``'s holds a lock
    in it (another walker) or when it is the current folder or holds it. Returns the new name."""
    folder = Path(folder)
    here = Path.cwd().resolve()
    if folder.resolve() == here or folder.resolve() in here.parents:
        raise RunError(f"cannot move {folder} aside to start over: it is the folder you are in; give an output "
                       "folder of its own")
    for lock in sorted(folder.glob("*.lock")):
        if (own_lock is None or lock != own_lock.path) and _held(lock):
            raise RunInUseError(f"cannot start {folder} over: another run writes in it ({_holder(lock)})")
    target = _aside(folder)
    os.rename(folder, target)
    return target


def move_files_aside(files: Sequence[Path], base: Path) -> Path:
    """Move ``files`` (those that exist) into a new folder ``<base>.old-<time>``; returns that folder."""
    target = _aside(Path(base))
    target.mkdir()
    for path in files:
        if Path(path).exists():
            os.rename(path, target / Path(path).name)
    return target


# --- identity --------------------------------------------------------------------------------------------------

def _normalise(value):
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _differences(recorded: dict, now: dict) -> list[str]:
    old, new = _flatten(recorded), _flatten(now)
    missing = object()
    return [f"{key} {old.get(key, '(none)')!r} → {new.get(key, '(none)')!r}" for key in sorted(set(old) | set(new))
            if old.get(key, missing) != new.get(key, missing)]


def _starting_over(what: str, moved_to: Path) -> None:
    warnings.warn(f"starting {what} over: the earlier run was moved to {moved_to}", stacklevel=3)


@contextmanager
def claim(lock: Path, record: Path, identity: dict, *, found: Sequence[Path], overwrite: bool,
          start_over: Callable[[RunLock], Path], what: str,
          compatible: Sequence[tuple[Path, Callable[[dict], dict]]] = ()) -> Iterator[RunLock]:
    """Own an output for the duration of a ``with`` block: lock it, check or record its identity.

    ``lock``, ``record``: the lock and identity files; ``identity``: a JSON-able dict of what defines the run;
    ``found``: files whose presence means a run was there (an output without ``record`` holding any of them is
    another run); ``start_over(lock)`` moves the old run aside and returns where to (``overwrite``);
    ``what``: the output as messages name it. ``compatible``: (identity file of a run sharing the output, a
    function giving the part of an identity both must agree on) — other walkers of one bias.
    """
    identity = _normalise(identity)
    Path(lock).parent.mkdir(parents=True, exist_ok=True)
    held = RunLock(lock, what)
    try:
        recorded = read_json(record)
        problems = []
        if recorded is None and any(Path(p).exists() for p in found):
            problems.append("holds files of a run with no identity record (an older cvplug, or made by hand), "
                            "so cvplug cannot tell whether it is this run")
        elif recorded is not None and recorded != identity:
            problems.append(f"holds another run: {'; '.join(_differences(recorded, identity))}")
        for path, shared in compatible:
            other = read_json(path)
            if other is not None and shared(other) != shared(identity):
                problems.append(f"is shared with a run ({Path(path).name}) whose settings differ: "
                                f"{'; '.join(_differences(shared(other), shared(identity)))}")
        if problems and not overwrite:
            raise RunMismatchError(f"{what} {'; it also '.join(problems)}. Rerun with the same settings to resume, "
                                   "choose another output, or start over with --overwrite (overwrite=True), which "
                                   "moves the old run aside")
        if overwrite and (problems or recorded is not None or any(Path(p).exists() for p in found)):
            moved_to = start_over(held)
            if held.moved():
                held.renew()
            _starting_over(what, moved_to)
        Path(record).parent.mkdir(parents=True, exist_ok=True)
        write_json(record, identity)
        yield held
    finally:
        held.release()


def walker_name(name: str, walker: int) -> str:
    """The file ``name`` of walker ``walker``: walker 0 keeps it (``colvar.dat``), walker k > 0 inserts ``.k``
    before the first dot (``colvar.1.dat``, ``trajectory.1.dcd``)."""
    if walker == 0:
        return name
    stem, dot, rest = name.partition(".")
    return f"{stem}.{walker}{dot}{rest}"


def system_identity(spec) -> dict:
    """What defines a system for a run: its source (:attr:`SystemSpec.source`, or its name) and the conditions.
    A System built in Python (no source) is fingerprinted by its serialised XML."""
    import openmm

    source = dict(spec.source) if spec.source else {"system": spec.name}
    if not spec.source and spec.toy is None:
        try:
            xml = openmm.XmlSerializer.serialize(spec.system)
            source["xml_sha256"] = hashlib.sha256(xml.encode()).hexdigest()
        except Exception:  # a force that cannot be serialised (PythonForce): the name and atom count must do
            pass
    return {"source": source, "n_atoms": spec.n_atoms, "temperature": spec.temperature, "timestep": spec.timestep,
            "friction": spec.friction, "dynamics": spec.dynamics}


_CV_KEYS = ("method", "n_atoms", "atoms", "features", "n_components", "names", "periodic", "units", "periodic_box",
            "dtype", "info")


def cv_fingerprint(cv) -> str:
    """A SHA-256 of what a CV computes: its metadata (versions left out) and every tensor of its TorchScript
    module. A CollectiveVariable and the file it exported give the same fingerprint."""
    digest = hashlib.sha256()
    metadata = _normalise({key: cv.metadata.get(key) for key in _CV_KEYS})
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    return tensors_fingerprint(cv.compiled().state_dict(), digest)


def tensors_fingerprint(tensors: dict, digest=None) -> str:
    """A SHA-256 ("sha256:…") of named tensors (a state_dict): each name, dtype, shape and bytes, in name order,
    fed into ``digest`` (a fresh SHA-256 by default, or one already fed with other content)."""
    import torch

    digest = digest or hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def atoms_identity(atoms) -> Optional[str]:
    """The saved atoms of a run as a short record: None (all), or their count and a hash of the indices."""
    if atoms is None:
        return None
    atoms = np.asarray(atoms, dtype=np.int64)
    return f"{len(atoms)} atoms, sha256:{hashlib.sha256(atoms.tobytes()).hexdigest()[:16]}"


# --- argument checks -------------------------------------------------------------------------------------------

def positive_int(name: str, value) -> int:
    """``value`` as an int ≥ 1, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    """``value`` as an int ≥ 0, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")
    return int(value)


def positive_number(name: str, value, above: float = 0.0) -> float:
    """``value`` as a finite float > ``above``, else a ValueError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number > above):
        raise ValueError(f"{name} must be a finite number > {above:g}, got {value!r}")
    return number
