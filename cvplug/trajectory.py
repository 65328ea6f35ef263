"""Reading what :func:`cvplug.simulate.simulate` writes: DCD + PDB trajectories of molecules (all atoms or the
saved ones, their indices in ``<out>.atoms.npy``) and ``.npz`` arrays of toy systems.

Toy trajectory format (``.npz``): ``x`` [frames, dim] natural coordinates (nm), ``time`` [frames] (ps),
``system`` (name), ``temperature`` (K), ``dt`` (ps between frames).

What is refused with a :class:`TrajectoryError` rather than read wrongly: a DCD whose size does not match the
frame count in its header (cut short, or more frames than the header says), a topology that cannot be parsed
or whose atom count differs from the trajectory's, and (:func:`check_topology`) a trajectory whose atoms
(count, elements, residue names) are not those of the system it is used with. Paths may hold any characters
(mdtraj's DCD reader takes ASCII file names only; other names are read through a temporary link).
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from cvplug.systems import SystemSpec

__all__ = ["TrajectoryError", "ToyTrajectory", "load_trajectory", "trajectory_positions", "saved_atoms",
           "check_topology"]


class TrajectoryError(ValueError):
    """A trajectory that cannot be read or does not match its topology/system."""


def saved_atoms(path) -> Optional[np.ndarray]:
    """Full-system indices of the atoms a trajectory written by :func:`simulate` holds; None: all atoms."""
    atoms = Path(path).with_suffix(".atoms.npy")
    return np.load(atoms) if atoms.exists() else None


class ToyTrajectory:
    """A toy-system trajectory: ``x`` [frames, dim] (nm), ``time`` [frames] (ps), ``system``, ``temperature``."""

    def __init__(self, x: np.ndarray, time: np.ndarray, system: str, temperature: float):
        self.x, self.time, self.system, self.temperature = x, time, system, temperature

    def __len__(self) -> int:
        return len(self.x)


def load_trajectory(path, top=None):
    """Read a trajectory written by :func:`cvplug.simulate.simulate`: an ``mdtraj.Trajectory`` or a :class:`ToyTrajectory`.

    For DCD files the topology defaults to the PDB beside it. Raises :class:`TrajectoryError` when the file is
    damaged or cut short (a DCD holding fewer or more bytes than the frames its header counts), or when the
    topology cannot be read or has another number of atoms. To check the atoms against a system, use
    :func:`check_topology` (:func:`trajectory_positions` does).
    """
    import mdtraj

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no trajectory at {path}")
    if path.suffix == ".npz":
        try:
            data = np.load(path)
            return ToyTrajectory(data["x"], data["time"], str(data["system"]), float(data["temperature"]))
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise TrajectoryError(f"{path} is not a cvplug toy trajectory (.npz with x, time, system, "
                                  f"temperature): {error}") from error
    top = top if top is not None else path.with_suffix(".pdb")
    topology = _load_topology(top, path) if isinstance(top, (str, Path)) else top
    if isinstance(topology, mdtraj.Trajectory):
        topology = topology.topology
    elif not isinstance(topology, mdtraj.Topology):
        topology = mdtraj.Topology.from_openmm(topology)
    layout = _dcd_layout(path) if path.suffix.lower() == ".dcd" else None
    if layout is not None:
        _check_dcd_size(path, layout)
        if layout.n_atoms != topology.n_atoms:
            raise TrajectoryError(f"cannot read {path} with topology {top}: the trajectory holds {layout.n_atoms} "
                                  f"atoms per frame but the topology {topology.n_atoms}; give the topology it "
                                  "was written with")
    try:
        with _ascii_path(path) as readable:
            trajectory = mdtraj.load(str(readable), top=topology)
    except Exception as error:  # mdtraj raises many kinds (ValueError, OSError, IndexError …) for bad files
        raise TrajectoryError(f"cannot read {path} with topology {top}: {type(error).__name__}: {error}") \
            from error
    if layout is not None and trajectory.n_frames != layout.n_frames:
        raise TrajectoryError(f"{path}: its header counts {layout.n_frames} frames but {trajectory.n_frames} "
                              "were read; the file is damaged")
    return trajectory


def trajectory_positions(trajectory, spec: SystemSpec) -> np.ndarray:
    """Full-system positions [frames, n_atoms, 3] (nm, float64) of a loaded trajectory of ``spec``.

    The trajectory's atoms must be the system's (:func:`check_topology`), else :class:`TrajectoryError`.
    """
    if spec.toy is not None:
        check_topology(trajectory, spec)
        return np.stack([spec.toy.positions(x) for x in trajectory.x])
    if trajectory.n_atoms < spec.n_atoms:
        raise TrajectoryError(f"the trajectory holds {trajectory.n_atoms} of the {spec.n_atoms} atoms of "
                              f"{spec.name}; read its frames with cvplug.trajectory.saved_atoms")
    check_topology(trajectory, spec)
    return trajectory.xyz.astype(np.float64)


def check_topology(trajectory_or_topology, spec: SystemSpec, atoms: Optional[Sequence[int]] = None) -> None:
    """Raise :class:`TrajectoryError` unless the atoms of a trajectory (or topology) are those of ``spec``.

    ``trajectory_or_topology``: an ``mdtraj.Trajectory``, an ``mdtraj.Topology``, an ``openmm.app.Topology`` or
    a :class:`ToyTrajectory` (for toys only the system's name is compared). ``atoms``: the full-system indices
    of the atoms it holds when it holds only some (:func:`saved_atoms`); default all. Compared: the number of
    atoms, each atom's element (where both sides know it) and each atom's residue name (after mdtraj's
    standard renaming, e.g. WAT → HOH, HIE → HIS, since a PDB read back uses the standard names).
    """
    import mdtraj

    if isinstance(trajectory_or_topology, ToyTrajectory) or spec.toy is not None:
        name = getattr(trajectory_or_topology, "system", None)
        if spec.toy is None or not isinstance(trajectory_or_topology, ToyTrajectory):
            raise TrajectoryError(f"a {'toy' if spec.toy is None else 'molecular'} trajectory cannot be used "
                                  f"with the {'molecular' if spec.toy is None else 'toy'} system {spec.name}")
        if name != spec.name:
            raise TrajectoryError(f"this trajectory is of the toy system {name!r}, not of {spec.name!r}")
        return
    found = trajectory_or_topology
    if isinstance(found, mdtraj.Trajectory):
        found = found.topology
    elif not isinstance(found, mdtraj.Topology):
        found = mdtraj.Topology.from_openmm(found)
    expected = mdtraj.Topology.from_openmm(spec.topology)
    if atoms is not None:
        expected = expected.subset(np.asarray(atoms))
    if found.n_atoms != expected.n_atoms:
        hint = ("; if it holds only some atoms, pass their indices (cvplug.trajectory.saved_atoms)"
                if atoms is None and found.n_atoms < expected.n_atoms else "")
        raise TrajectoryError(f"the trajectory has {found.n_atoms} atoms but the system {spec.name} "
                              f"{expected.n_atoms}{hint}")
    differences = []
    for i, (a, b) in enumerate(zip(found.atoms, expected.atoms)):
        ea, eb = _element(a), _element(b)
        if ea and eb and ea != eb:
            differences.append(f"atom {i} is {ea} ({a}) instead of {eb} ({b})")
        elif _residue_name(a.residue.name) != _residue_name(b.residue.name):
            differences.append(f"atom {i} is in residue {a.residue.name} instead of {b.residue.name} ({b})")
    if differences:
        more = f" and {len(differences) - 3} more" if len(differences) > 3 else ""
        raise TrajectoryError(f"the trajectory's atoms are not those of the system {spec.name}: "
                              f"{'; '.join(differences[:3])}{more}; give the topology of this system")


def _element(atom) -> Optional[str]:
    element = atom.element
    symbol = getattr(element, "symbol", None)
    return symbol if symbol and symbol not in ("VS", "EP") else None


def _residue_name(name: str) -> str:
    from mdtraj.formats.pdb import PDBTrajectoryFile

    if not PDBTrajectoryFile._residueNameReplacements:
        PDBTrajectoryFile._loadNameReplacementTables()
    table = PDBTrajectoryFile._residueNameReplacements
    name = name.strip().upper()
    return table.get(name, table.get(name[:3], name[:3]))


def _load_topology(top, path: Path):
    import mdtraj

    top = Path(top)
    if not top.exists():
        raise FileNotFoundError(f"no topology at {top} for the trajectory {path}; give it with top=")
    try:
        with _ascii_path(top) as readable:
            topology = mdtraj.load_topology(str(readable))
    except Exception as error:  # mdtraj raises AttributeError for a PDB with TER/END before its atoms, …
        raise TrajectoryError(f"cannot read the topology {top} of {path} (damaged, or records mdtraj cannot "
                              f"parse, such as TER or END before the atoms): {type(error).__name__}: {error}") \
            from error
    if topology.n_atoms == 0:
        raise TrajectoryError(f"cannot read {path} with topology {top}: the topology holds no atoms (does it end, "
                              "or END, before its atoms?)")
    return topology


@contextmanager
def _ascii_path(path: Path) -> Iterator[Path]:
    """``path``, or where it has non-ASCII characters (mdtraj's C readers encode names as ASCII), a temporary
    ASCII-named link to it (a copy where links cannot be made)."""
    try:
        str(path).encode("ascii")
        plain = True
    except UnicodeEncodeError:
        plain = False
    if plain:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cvplug-") as folder:
        link = Path(folder) / ("trajectory" + "".join(path.suffixes[-1:]))
        try:
            os.symlink(Path(path).resolve(), link)
        except OSError:
            shutil.copyfile(path, link)
        yield link


class _DCDLayout:
    def __init__(self, n_frames: int, n_atoms: int, header: int, frame: int):
        self.n_frames, self.n_atoms, self.header, self.frame = n_frames, n_atoms, header, frame


def _dcd_layout(path: Path) -> Optional[_DCDLayout]:
    """Frame count, atoms, header and frame sizes (bytes) from a DCD's header; None if it is not a plain
    CHARMM/NAMD/OpenMM DCD this function understands (then mdtraj alone decides)."""
    with open(path, "rb") as handle:
        head = handle.read(92)
        if len(head) < 92:
            raise TrajectoryError(f"{path} is too short to be a DCD file ({len(head)} bytes); it is damaged")
        for order in "<>":
            if struct.unpack(order + "i", head[:4])[0] == 84 and head[4:8] == b"CORD":
                break
        else:
            return None
        control = struct.unpack(order + "20i", head[8:88])
        n_frames, fixed, charmm = control[0], control[8], control[19] != 0
        if fixed or n_frames == 0:  # fixed atoms make the first frame larger; some writers never count frames
            return None
        size = handle.read(4)
        if len(size) < 4:
            raise TrajectoryError(f"{path}: the DCD header is cut short; the file is damaged")
        titles = struct.unpack(order + "i", size)[0]
        handle.seek(92 + 4 + titles + 4)
        record = handle.read(12)
        if len(record) < 12:
            raise TrajectoryError(f"{path}: the DCD header is cut short; the file is damaged")
        marker, n_atoms, _ = struct.unpack(order + "3i", record)
        if marker != 4 or n_atoms <= 0:
            return None
    header = 92 + 4 + titles + 4 + 12
    coordinates = 3 * (8 + 4 * n_atoms)
    frame = coordinates + (56 if charmm and control[10] else 0) + (coordinates // 3 if charmm and control[11] else 0)
    return _DCDLayout(n_frames, n_atoms, header, frame)


def _check_dcd_size(path: Path, layout: _DCDLayout) -> None:
    size = path.stat().st_size
    expected = layout.header + layout.n_frames * layout.frame
    if size == expected:
        return
    whole, part = divmod(size - layout.header, layout.frame)
    found = f"{whole} whole frames" + (f" and {part} bytes of another" if part else "")
    if size < expected:
        raise TrajectoryError(f"{path} is cut short: its header counts {layout.n_frames} frames of "
                              f"{layout.n_atoms} atoms but it holds {found} ({size} of {expected} bytes); the "
                              "run that wrote it was interrupted or the copy is incomplete")
    raise TrajectoryError(f"{path} holds more than its header says: {found} ({size} bytes) under a header of "
                          f"{layout.n_frames} frames; two writers may have appended to it or the run that wrote "
                          "it was killed: resume that run to repair it")
