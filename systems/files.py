"""Build a :class:`SystemSpec` from the files a user has, or from a shipped name.

Accepted inputs (the suffix picks the reader; OpenMM reads everything it can, ParmEd the rest):

=====================================  ==========================================================
``system``                             ``positions``
=====================================  ==========================================================
OpenMM System XML (``.xml``)           State XML (``.xml``: positions + box) or PDB/PDBx
AMBER prmtop (``.prmtop``, ``.parm7``) ``.inpcrd``, ``.rst7``, ``.crd``, ``.rst``; old-format
                                       (pre-AMBER 7) prmtops are read by ParmEd
GROMACS top (``.top``)                 ``.gro`` (a box of zeros, as GROMACS writes for no box,
                                       means not periodic)
PDB/PDBx (``.pdb``, ``.cif``,          none: the file holds them; ``forcefield`` names OpenMM
``.pdbx``)                             force-field XMLs
=====================================  ==========================================================

Built systems use PME with a 1.0 nm cutoff when there is a periodic box, no cutoff otherwise, H-bond
constraints and rigid water; a System XML is used as serialized. Units are OpenMM's: nm, ps, K, kJ/mol.

Examples
--------
>>> from cvplug.systems import from_files
>>> spec = from_files("protein.prmtop", "protein.rst7", temperature=310)  # doctest: +SKIP
>>> spec.source["temperature"], spec.extras["minimized"]["after"] < spec.extras["minimized"]["before"]  # doctest: +SKIP
(310.0, True)
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from cvplug.constants import get_platform

from .spec import SystemSpec

__all__ = ["SystemInputError", "from_files", "from_openmm", "resolve", "minimize_energy"]

SYSTEM_KINDS = {".xml": "xml", ".prmtop": "amber", ".parm7": "amber", ".top": "gromacs",
                ".pdb": "pdb", ".cif": "pdb", ".pdbx": "pdb"}
POSITION_SUFFIXES = {"xml": (".xml", ".pdb", ".cif", ".pdbx"), "amber": (".inpcrd", ".rst7", ".crd", ".rst"),
                     "gromacs": (".gro",)}
NEEDS_POSITIONS = {"xml": "an OpenMM System XML needs positions: a State XML or a PDB/PDBx file",
                   "amber": "an AMBER prmtop needs positions: an inpcrd/rst7/crd file",
                   "gromacs": "a GROMACS top needs positions: a gro file"}
STRUCTURE_SUFFIXES = (".pdb", ".cif", ".pdbx")
CUTOFF = 1.0  # nm, for PME
MINIMIZE_TOLERANCE = 10.0  # kJ/mol/nm
MINIMIZE_ITERATIONS = 1000
DEFAULTS = {"temperature": 300.0, "timestep": 0.002, "friction": 1.0}
UNITS = {"temperature": unit.kelvin, "timestep": unit.picosecond, "friction": unit.picosecond**-1}


class SystemInputError(ValueError):
    """A system cannot be built from the given inputs; the one-line message says what is wrong and what to do."""


class _Built(NamedTuple):
    """What a reader produces: OpenMM System, Topology, positions [n, 3] nm, box [3, 3] nm or None, and a
    description of what was read (e.g. ``"AMBER prmtop + inpcrd, no cutoff, HBonds"``)."""

    system: openmm.System
    topology: app.Topology
    positions: np.ndarray
    box: Optional[np.ndarray]
    read: str


def resolve(system, **options) -> SystemSpec:
    """A :class:`SystemSpec` as it is (then ``options`` must be empty); anything else goes to :func:`from_files`.
    An ``openmm.System`` alone is refused: it has no positions (see :func:`from_openmm`)."""
    if isinstance(system, openmm.System):
        raise SystemInputError("an openmm.System has no positions: wrap it with cvplug.systems.from_openmm(system, "
                               "positions, topology) or pass its files")
    if isinstance(system, SystemSpec):
        if options:
            raise SystemInputError(f"system is already a SystemSpec ({system.name!r}); drop the options "
                                   f"{', '.join(sorted(options))} or pass a name or file path instead")
        return system
    return from_files(system, **options)


def from_files(system, positions=None, *, forcefield: Sequence[str] = (), include_dir=None, topology=None,
               temperature=None, timestep=None, friction=None, minimize: bool = True) -> SystemSpec:
    """Build a :class:`SystemSpec` from a shipped name or from files (see the module docstring for the types).

    Parameters
    ----------
    system : a name registered in ``cvplug.systems`` or the path of the system file.
    positions : path of the coordinates (State XML, PDB/PDBx, inpcrd/rst7/crd, gro); None for a PDB/PDBx system.
    forcefield : OpenMM force-field XML names or paths, for a PDB/PDBx system (e.g. ``("amber14-all.xml",
        "amber14/tip3pfb.xml")``).
    include_dir : GROMACS include folder (``share/gromacs/top``); None lets OpenMM choose.
    topology : PDB/PDBx path giving the topology of a System XML whose positions come from a State XML.
    temperature : temperature in K (default 300; a shipped system keeps its own unless given).
    timestep : integration step in ps (default 0.002).
    friction : Langevin friction in 1/ps (default 1).
    minimize : minimise the starting positions (user files only; tolerance 10 kJ/mol/nm, at most 1000
        iterations, CPU platform) and record ``extras["minimized"] = {"before": E0, "after": E1}`` in kJ/mol.
    """
    given = {"temperature": temperature, "timestep": timestep, "friction": friction}
    conditions = {key: _positive(key, value) for key, value in given.items() if value is not None}
    if _is_shipped(system):
        _check_no_files(system, positions=positions, forcefield=forcefield, include_dir=include_dir,
                        topology=topology)
        return _shipped(system, conditions)
    conditions = {**DEFAULTS, **conditions}
    path, kind = _system_file(system)
    forcefield = _forcefield_names(forcefield)
    _check_options(kind, positions=positions, forcefield=forcefield, include_dir=include_dir, topology=topology)
    positions_path = _positions_file(kind, positions)
    topology_path = _existing(topology, "topology") if topology is not None else None
    built = _READERS[kind](path, positions_path, forcefield=forcefield, include_dir=include_dir,
                           topology=topology_path)
    source = {"system": str(path), "positions": _absolute(positions_path), "topology": _absolute(topology_path),
              "forcefield": forcefield, "include_dir": _absolute(include_dir),
              **conditions, "minimize": bool(minimize)}
    spec = SystemSpec(name=path.stem, system=built.system, topology=built.topology, positions=built.positions,
                      box_vectors=built.box, description=f"{built.read}, {conditions['temperature']:g} K",
                      source=source, **conditions)
    if minimize:
        minimize_energy(spec)
    return spec


def from_openmm(system: openmm.System, positions, topology: Optional[app.Topology] = None, *, temperature=None,
                timestep=None, friction=None) -> SystemSpec:
    """A :class:`SystemSpec` of an OpenMM ``System`` built in Python: ``positions`` [n_atoms, 3] in nm (or an
    OpenMM Quantity), ``topology`` (default: one "UNK" residue, elements from the masses); temperature in K,
    timestep in ps, friction in 1/ps (defaults 300, 0.002, 1). Not minimised (see :func:`minimize_energy`)."""
    conditions = {**DEFAULTS, **{key: _positive(key, value) for key, value in
                                 {"temperature": temperature, "timestep": timestep, "friction": friction}.items()
                                 if value is not None}}
    positions = _nm(positions) if unit.is_quantity(positions) else np.asarray(positions, dtype=float)
    if positions.shape != (system.getNumParticles(), 3):
        raise SystemInputError(f"positions must be [{system.getNumParticles()}, 3] (nm) for this System, got "
                               f"{positions.shape}")
    box = _box(system.getDefaultPeriodicBoxVectors()) if system.usesPeriodicBoundaryConditions() else None
    built = _finish(system, topology or _plain_topology(system), positions, box, "an openmm.System")
    return SystemSpec(name="system", system=built.system, topology=built.topology, positions=built.positions,
                      box_vectors=built.box, description=f"an openmm.System, {conditions['temperature']:g} K",
                      **conditions)


# --- arguments --------------------------------------------------------------------------------------------------

def _positive(name: str, value) -> float:
    """``value`` as a positive finite float in the unit of ``name`` (a bare number or an OpenMM Quantity)."""
    try:
        number = float(value.value_in_unit(UNITS[name]) if unit.is_quantity(value) else value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise SystemInputError(f"{name} must be a positive finite number in {UNITS[name].get_symbol()}, "
                               f"not {value!r}")
    return number


def _is_shipped(system) -> bool:
    from . import names  # the registry imports this module

    return isinstance(system, str) and system in names()


def _shipped(name: str, conditions: dict) -> SystemSpec:
    """The registered system ``name`` as its factory builds it (not minimised), with ``conditions`` applied."""
    from . import load

    spec = load(name)
    for key, value in conditions.items():
        setattr(spec, key, value)
    spec.source = {"system": name, **conditions}
    return spec


def _check_no_files(name: str, **files) -> None:
    given = [key for key, value in files.items() if value not in (None, (), [])]
    if given:
        raise SystemInputError(f"{name!r} is a shipped system with its own files; drop {', '.join(given)} "
                               "or pass the path of your own system file")


def _existing(path, what: str) -> Path:
    resolved = Path(path).expanduser().absolute()
    if not resolved.is_file():
        raise SystemInputError(f"{what} file not found: {resolved}; check the path")
    return resolved


def _system_file(system) -> tuple[Path, str]:
    """The absolute path of the system file and its kind (``"xml"``, ``"amber"``, ``"gromacs"``, ``"pdb"``)."""
    if not isinstance(system, (str, os.PathLike)):
        raise SystemInputError(f"system must be a shipped name, a file path or a SystemSpec, not "
                               f"{type(system).__name__}")
    suffix = Path(system).suffix.lower()
    if suffix not in SYSTEM_KINDS:
        from . import names

        what = f"suffix {suffix!r}" if suffix else f"{str(system)!r} is not a shipped name and has no suffix"
        raise SystemInputError(f"unknown system file type ({what}); accepted: {', '.join(SYSTEM_KINDS)} "
                               f"or a shipped name ({', '.join(names())})")
    return _existing(system, "system"), SYSTEM_KINDS[suffix]


def _positions_file(kind: str, positions) -> Optional[Path]:
    if kind == "pdb":
        return None
    if positions is None:
        raise SystemInputError(NEEDS_POSITIONS[kind])
    suffix = Path(positions).suffix.lower()
    if suffix not in POSITION_SUFFIXES[kind]:
        raise SystemInputError(f"unknown positions file type {suffix!r} for this system; accepted: "
                               f"{', '.join(POSITION_SUFFIXES[kind])}")
    return _existing(positions, "positions")


def _forcefield_names(forcefield) -> list[str]:
    """Force-field names as a list; names that are existing files become absolute paths."""
    names = [forcefield] if isinstance(forcefield, (str, os.PathLike)) else list(forcefield)
    return [str(Path(n).absolute()) if Path(n).is_file() else str(n) for n in names]


def _check_options(kind: str, *, positions, forcefield, include_dir, topology) -> None:
    """Reject options the system kind does not use, so that nothing is silently ignored."""
    if kind == "pdb" and positions is not None:
        raise SystemInputError("a PDB/PDBx system takes its positions from the file itself; drop positions=")
    if kind == "pdb" and not forcefield:
        raise SystemInputError("a PDB/PDBx file needs force-field XMLs: pass forcefield=, e.g. "
                               "('amber14-all.xml', 'amber14/tip3pfb.xml')")
    if kind != "pdb" and forcefield:
        raise SystemInputError("forcefield= applies to a PDB/PDBx system only; this system file carries its "
                               "own parameters")
    if kind != "gromacs" and include_dir is not None:
        raise SystemInputError("include_dir= applies to a GROMACS .top only; drop it")
    if topology is not None and (kind != "xml" or positions is None or Path(positions).suffix.lower() != ".xml"):
        raise SystemInputError("topology= applies to a System XML with a State XML only; drop it")
    if topology is not None and Path(topology).suffix.lower() not in STRUCTURE_SUFFIXES:
        raise SystemInputError(f"topology must be a PDB/PDBx file ({', '.join(STRUCTURE_SUFFIXES)}), "
                               f"not {Path(topology).suffix!r}")


def _absolute(path) -> Optional[str]:
    """``path`` as an absolute path string, None stays None."""
    return None if path is None else str(Path(path).absolute())


# --- readers ----------------------------------------------------------------------------------------------------

def _nm(quantity) -> np.ndarray:
    """An OpenMM length (Quantity of Vec3s or an array) as a float64 numpy array in nm."""
    return np.array(quantity.value_in_unit(unit.nanometer), dtype=np.float64)


def _box(vectors) -> Optional[np.ndarray]:
    """Box vectors [3, 3] in nm, or None for no box (missing or all zero)."""
    if vectors is None:
        return None
    box = np.array([_nm(v) for v in vectors])
    return box if np.any(box) else None


def _vectors(box: Optional[np.ndarray]):
    return None if box is None else [openmm.Vec3(*row) for row in box] * unit.nanometer


def _create_options(box: Optional[np.ndarray]) -> tuple[dict, str]:
    """``createSystem`` keywords for a system with or without a periodic box, and their description."""
    options = {"constraints": app.HBonds, "rigidWater": True}
    if box is None:
        return {**options, "nonbondedMethod": app.NoCutoff}, "no cutoff, HBonds"
    return ({**options, "nonbondedMethod": app.PME, "nonbondedCutoff": CUTOFF * unit.nanometer},
            f"PME {CUTOFF:g} nm, HBonds")


def _check_count(n_system: int, system_path, n_positions: int, positions_path) -> None:
    if n_system != n_positions:
        raise SystemInputError(f"atom counts differ: {n_system} in {system_path} but {n_positions} in "
                               f"{positions_path}; pass matching files")


def _finish(system: openmm.System, topology: app.Topology, positions: np.ndarray, box, read: str) -> _Built:
    """Give system and topology the box (if any) and bundle the result."""
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*_vectors(box))
        topology.setPeriodicBoxVectors(_vectors(box))
    return _Built(system, topology, positions, box, read)


def _read_structure(path: Path):
    """An OpenMM PDBFile or PDBxFile, by suffix."""
    return app.PDBFile(str(path)) if path.suffix.lower() == ".pdb" else app.PDBxFile(str(path))


def _from_amber(path: Path, positions_path: Path, **_) -> _Built:
    """AMBER prmtop + coordinates; an old-format prmtop that OpenMM cannot parse goes to ParmEd."""
    coordinates = app.AmberInpcrdFile(str(positions_path))
    positions = _nm(coordinates.getPositions(asNumpy=True))
    box = _box(coordinates.boxVectors)
    try:
        prmtop = app.AmberPrmtopFile(str(path), periodicBoxVectors=_vectors(box))
    except Exception as error:  # pre-AMBER 7 files (no %FLAG lines) fail with an IndexError or similar
        return _from_old_amber(path, positions_path, positions, box, error)
    _check_count(prmtop.topology.getNumAtoms(), path, len(positions), positions_path)
    options, described = _create_options(box)
    return _finish(prmtop.createSystem(**options), prmtop.topology, positions, box,
                   f"AMBER prmtop + {positions_path.suffix[1:]}, {described}")


def _from_old_amber(path: Path, positions_path: Path, positions: np.ndarray, box, openmm_error) -> _Built:
    import parmed

    try:
        structure = parmed.load_file(str(path))
    except Exception as error:
        raise SystemInputError(f"cannot read AMBER prmtop {path}: OpenMM says {_first_line(openmm_error)!r}, "
                               f"ParmEd says {_first_line(error)!r}; check the file") from error
    _check_count(len(structure.atoms), path, len(positions), positions_path)
    if box is not None:
        structure.box_vectors = _vectors(box)
    options, described = _create_options(box)
    return _finish(structure.createSystem(**options), structure.topology, positions, box,
                   f"AMBER prmtop (old format, read by ParmEd) + {positions_path.suffix[1:]}, {described}")


def _from_gromacs(path: Path, positions_path: Path, *, include_dir, **_) -> _Built:
    """GROMACS top + gro (a gro box of zeros means not periodic)."""
    gro = app.GromacsGroFile(str(positions_path))
    positions = _nm(gro.getPositions(asNumpy=True))
    box = _box(gro.getPeriodicBoxVectors())
    try:
        top = app.GromacsTopFile(str(path), periodicBoxVectors=_vectors(box),
                                 includeDir=None if include_dir is None else str(include_dir))
    except ValueError as error:
        hint = "pass include_dir= (GROMACS share/gromacs/top)" if "#include" in str(error) else "check the file"
        raise SystemInputError(f"cannot read GROMACS top {path}: {_first_line(error)}; {hint}") from error
    _check_count(top.topology.getNumAtoms(), path, len(positions), positions_path)
    options, described = _create_options(box)
    return _finish(top.createSystem(**options), top.topology, positions, box, f"GROMACS top + gro, {described}")


def _from_pdb(path: Path, _positions, *, forcefield: list[str], **_) -> _Built:
    """PDB/PDBx + OpenMM force-field XMLs."""
    structure = _read_structure(path)
    field = _load_forcefield(forcefield)
    box = _box(structure.topology.getPeriodicBoxVectors())
    options, described = _create_options(box)
    try:
        system = field.createSystem(structure.topology, **options)
    except ValueError as error:
        if "No template found" not in str(error):
            raise
        unmatched = field.getUnmatchedResidues(structure.topology)
        raise SystemInputError(_template_message(path, error, unmatched)) from error
    return _finish(system, structure.topology, _nm(structure.getPositions(asNumpy=True)), box,
                   f"{path.suffix[1:].upper()} + {', '.join(Path(n).name for n in forcefield)}, {described}")


def _load_forcefield(names: list[str]) -> app.ForceField:
    field = app.ForceField()
    for name in names:
        try:
            field.loadFile(name)
        except Exception as error:  # missing file, bad XML, clashing definitions
            raise SystemInputError(f"cannot load force field {name!r} ({_first_line(error)}); pass a file from "
                                   "openmm/app/data (e.g. 'amber14-all.xml') or the path of an ffxml") from error
    return field


def _template_message(path: Path, error: ValueError, unmatched: list) -> str:
    """One line naming the residues without a template and OpenMM's hint (e.g. "missing 1 H atom")."""
    labels = [f"{r.name} {r.id}" + (f" chain {r.chain.id}" if r.chain.id.strip() else "") for r in unmatched]
    named = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
    text = " ".join(str(error).split("For more information")[0].split())
    hint = re.sub(r"^.*?No template found for .*?\)\.?", "", text).strip().rstrip(".")
    detail = f"; OpenMM on {labels[0]}: {hint}" if hint and labels else ""
    return (f"{path}: the force field has no template for residue {named}{detail}; add a force-field XML that "
            "defines it, or add missing hydrogens (e.g. PDBFixer or openmm.app.Modeller.addHydrogens)")


def _from_xml(path: Path, positions_path: Path, *, topology: Optional[Path], **_) -> _Built:
    """Serialized OpenMM System + State XML (optionally a PDB/PDBx topology) or PDB/PDBx, used as serialized."""
    if positions_path.suffix.lower() == ".xml":
        state = _deserialize(positions_path, openmm.State, "State")
        positions, box = _nm(state.getPositions(asNumpy=True)), _box(state.getPeriodicBoxVectors())
        structure = _read_structure(topology) if topology is not None else None
        what = "State XML" + (f" + {topology.suffix[1:].upper()} topology" if structure else "")
    else:
        structure = _read_structure(positions_path)
        positions, box = _nm(structure.getPositions(asNumpy=True)), _box(structure.topology.getPeriodicBoxVectors())
        what = positions_path.suffix[1:].upper()
    system = _deserialize(path, openmm.System, "System")
    _check_count(system.getNumParticles(), path, len(positions), positions_path)
    if structure is not None:
        _check_count(structure.topology.getNumAtoms(), topology or positions_path, len(positions), positions_path)
        top, note = structure.topology, ""
    else:
        top, note = _plain_topology(system), "; topology: one residue UNK, elements from masses (pass topology=)"
    if not system.usesPeriodicBoundaryConditions():
        box = None
    elif box is None:
        box = _box(system.getDefaultPeriodicBoxVectors())
    return _finish(system, top, positions, box, f"OpenMM System XML + {what}, as serialized{note}")


def _deserialize(path: Path, kind: type, what: str):
    try:
        obj = openmm.XmlSerializer.deserialize(path.read_text())
    except Exception as error:
        raise SystemInputError(f"cannot read {path} as an OpenMM {what} XML ({_first_line(error)}); write it "
                               f"with openmm.XmlSerializer.serialize") from error
    if not isinstance(obj, kind):
        raise SystemInputError(f"{path} holds a serialized {type(obj).__name__}, not a {what}; pass a {what} XML")
    return obj


def _plain_topology(system: openmm.System) -> app.Topology:
    """One chain, one residue "UNK"; elements guessed from the masses (massless particles and virtual sites: None)."""
    topology = app.Topology()
    residue = topology.addResidue("UNK", topology.addChain())
    for i in range(system.getNumParticles()):
        mass = system.getParticleMass(i).value_in_unit(unit.dalton)
        element = None if mass == 0 or system.isVirtualSite(i) else app.Element.getByMass(mass)
        topology.addAtom(f"{element.symbol if element else 'X'}{i + 1}", element, residue)
    return topology


_READERS = {"xml": _from_xml, "amber": _from_amber, "gromacs": _from_gromacs, "pdb": _from_pdb}


# --- energy minimisation ----------------------------------------------------------------------------------------

def minimize_energy(spec: SystemSpec) -> None:
    """Minimise ``spec.positions`` in place (CPU platform) and record the energies in ``spec.extras``.

    The CPU platform sums forces over its threads in no fixed order, so two minimisations of the same input can
    stop at positions ~0.01 nm and ~0.1 kJ/mol apart (alanine dipeptide); only ``Threads=1`` repeats them
    bitwise, at several times the cost for a solvated protein.
    """
    context = openmm.Context(spec.system, openmm.VerletIntegrator(spec.timestep),
                             get_platform("CPU"))
    if spec.box_vectors is not None:
        context.setPeriodicBoxVectors(*_vectors(spec.box_vectors))
    context.setPositions(spec.positions)
    before = _energy(context)
    openmm.LocalEnergyMinimizer.minimize(context, MINIMIZE_TOLERANCE, MINIMIZE_ITERATIONS)
    spec.positions = _nm(context.getState(getPositions=True).getPositions(asNumpy=True))
    spec.extras["minimized"] = {"before": before, "after": _energy(context)}
    spec.source["minimize"] = True


def _energy(context: openmm.Context) -> float:
    """Potential energy in kJ/mol."""
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
