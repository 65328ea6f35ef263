"""CV input features from atom selections, written as short strings in mdtraj's selection language.

A feature spec is one string; a CV's inputs are one spec or a list of them, concatenated in order:

=========================  =======================================================================================
``backbone-torsions``      sin and cos of the φ and ψ torsions of every residue that has them (mdtraj's
                           definitions), as :class:`~cvplug.features.Dihedrals` with ``sincos``: all sin φ, sin ψ,
                           then all cos φ, cos ψ (φ of every residue first, then ψ)
``torsions:QUAD;QUAD…``    sin and cos of explicit torsions; QUAD = four 0-based atom indices separated by commas,
                           e.g. ``torsions:4,6,8,14;6,8,14,16``
``distances:SELECTION``    distances (nm) between all pairs of the selected atoms
``contacts:SELECTION``     the rational switching function s(r) = (1 − (r/r0)^n)/(1 − (r/r0)^m) of all pair
                           distances (:class:`~cvplug.features.Contacts`); options follow the selection after
                           semicolons: ``contacts:name CA;r0=0.6`` (nm; default 0.8), ``;n=6``, ``;m=12``
``positions:SELECTION``    Cartesian coordinates (nm) of the selected atoms, Kabsch-aligned to the reference
=========================  =======================================================================================

SELECTION is any mdtraj selection (``name CA``, ``resid 0 to 4 and not element H``, ``index 1 4 5 6``); see
"Atom Selection" in mdtraj's documentation. Atom indices are 0-based indices into the whole system, as in
OpenMM. Specs that do not parse or select nothing raise :class:`SelectionError` with a one-line message.

Examples
--------
>>> import torch
>>> from cvplug import systems
>>> spec = systems.load("ala2-vacuum")
>>> features = parse_features(["backbone-torsions", "contacts:not element H;r0=0.45"], spec.topology,
...                           spec.positions)
>>> features.parts[0].describe()["quadruplets"]
[[4, 6, 8, 14], [6, 8, 14, 16]]
>>> features(torch.tensor(spec.positions[None], dtype=torch.float32)).shape
torch.Size([1, 49])
>>> default_feature_specs(spec.topology)
['backbone-torsions']
"""
from __future__ import annotations

import re
import warnings
from typing import Optional, Sequence, Union

import mdtraj
import numpy as np
import torch

from .features import Cartesians, Concatenate, Contacts, Dihedrals, Feature, PairwiseDistances

__all__ = ["SelectionError", "FEATURE_KINDS", "select_atoms", "solute_atoms", "phi_quadruplets", "parse_features",
           "default_feature_specs"]

#: The kinds of feature spec :func:`parse_features` understands, each with the shape of its spec.
FEATURE_KINDS = {
    "backbone-torsions": "backbone-torsions",
    "torsions": "torsions:I,J,K,L;I,J,K,L…",
    "distances": "distances:SELECTION",
    "contacts": "contacts:SELECTION[;r0=NM][;n=N][;m=M]",
    "positions": "positions:SELECTION",
}
#: Pairwise features with more outputs than this draw a UserWarning (they are slow and rarely useful).
MAX_PAIRWISE_OUTPUTS = 5000
#: Elements of monatomic ions: a one-atom residue of one of these (and not water) counts as an ion.
ION_ELEMENTS = frozenset({"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Zn", "Mn", "Fe", "Co", "Ni", "Cu",
                          "Cd", "Hg", "F", "Cl", "Br", "I"})


class SelectionError(ValueError):
    """A feature spec or atom selection that cannot be used; the message says what is wrong and what to write."""


def _mdtraj_topology(topology) -> mdtraj.Topology:
    """An mdtraj view of ``topology`` with atom and residue names stripped of blanks (old-format AMBER prmtops
    read by ParmEd give names such as 'CA  ', which 'name CA' and the φ/ψ finders would miss)."""
    if isinstance(topology, mdtraj.Topology):
        top, owned = topology, False
    elif hasattr(topology, "atoms") and hasattr(topology, "residues") and hasattr(topology, "getNumAtoms"):
        top, owned = mdtraj.Topology.from_openmm(topology), True
    else:
        raise TypeError(f"expected an openmm.app.Topology or an mdtraj.Topology, got {type(topology).__name__} "
                        "(for a ParmEd Structure pass its .topology)")
    padded = any(a.name != a.name.strip() for a in top.atoms) or any(r.name != r.name.strip() for r in top.residues)
    if padded:
        top = top if owned else top.copy()
        for atom in top.atoms:
            atom.name = atom.name.strip()
        for residue in top.residues:
            residue.name = residue.name.strip()
    return top


def select_atoms(topology, selection: str) -> list[int]:
    """0-based indices (sorted) of the atoms of ``topology`` (openmm.app.Topology or mdtraj.Topology) that
    ``selection`` (mdtraj's selection language, e.g. ``"name CA"`` or ``"resid 1 and not element H"``) picks.

    Raises SelectionError when the selection does not parse or matches no atom.
    """
    top = _mdtraj_topology(topology)
    if not isinstance(selection, str) or not selection.strip():
        raise SelectionError(f"empty atom selection {selection!r}; write an mdtraj selection such as 'name CA' "
                             "or 'not element H'")
    try:
        atoms = top.select(selection.strip())
    except Exception as error:  # mdtraj raises ValueError, pyparsing errors, KeyError … for bad selections
        reason = " ".join(str(error).split()) or type(error).__name__
        found = re.search(r"found .*?\(at char \d+\)", reason)  # pyparsing lists every keyword it expected
        reason = found.group(0) if found else (reason if len(reason) <= 120 else reason[:117] + "...")
        raise SelectionError(f"cannot parse the atom selection {selection!r} ({reason}); write mdtraj's "
                             "selection language, e.g. 'name CA', 'resname ALA and not element H', 'index 4 to 16'"
                             ) from None
    if len(atoms) == 0:
        raise SelectionError(f"the atom selection {selection!r} matches no atom of the topology "
                             f"({top.n_atoms} atoms, residues {_residue_summary(top)}); check names and residue "
                             "numbering (resid is 0-based, resSeq is the file's numbering)")
    return [int(i) for i in atoms]


def _residue_summary(top: mdtraj.Topology, limit: int = 6) -> str:
    names = []
    for residue in top.residues:
        if residue.name not in names:
            names.append(residue.name)
    return " ".join(names[:limit]) + (" …" if len(names) > limit else "")


def _is_ion(residue) -> bool:
    if residue.n_atoms != 1 or residue.is_water:
        return False
    element = next(residue.atoms).element
    return element is not None and element.symbol in ION_ELEMENTS


def solute_atoms(topology) -> list[int]:
    """0-based indices (sorted) of every atom that is neither water nor a monatomic ion (a one-atom residue of
    an element in :data:`ION_ELEMENTS`); water is what mdtraj recognises as water (HOH, WAT, TIP3 …)."""
    top = _mdtraj_topology(topology)
    return sorted(atom.index for residue in top.residues if not residue.is_water and not _is_ion(residue)
                  for atom in residue.atoms)


def _heavy(top: mdtraj.Topology, atoms: Sequence[int]) -> list[int]:
    return [i for i in atoms if top.atom(i).element is not None
            and top.atom(i).element.symbol not in ("H", "D") and top.atom(i).element.mass > 0]


def phi_quadruplets(topology) -> list[tuple[int, int, int, int]]:
    """The backbone φ torsions (C−N−CA−C, 0-based atom indices) of every residue that has one; [] for
    non-peptides."""
    return [tuple(int(i) for i in q) for q in mdtraj.geometry.indices_phi(_mdtraj_topology(topology))]


def _backbone_quadruplets(top: mdtraj.Topology) -> list[tuple[int, int, int, int]]:
    phi = mdtraj.geometry.indices_phi(top)
    psi = mdtraj.geometry.indices_psi(top)
    return [tuple(int(i) for i in q) for q in list(phi) + list(psi)]


def default_feature_specs(topology) -> list[str]:
    """The feature specs cvplug uses for a molecule unless told otherwise: ``["backbone-torsions"]`` when the
    topology has at least one φ or ψ torsion (peptides, proteins), else ``["positions:SELECTION"]`` with the
    heavy atoms of everything but water and ions (see :func:`solute_atoms`), or all those atoms when fewer
    than 3 of them are heavy (methane). SELECTION is a readable one where it picks exactly those atoms, else
    an ``index …`` list."""
    top = _mdtraj_topology(topology)
    if _backbone_quadruplets(top):
        return ["backbone-torsions"]
    solute = solute_atoms(top)
    heavy = _heavy(top, solute)
    if len(heavy) >= 3:
        atoms, readable = heavy, ("not element H", "not water and not element H")
    else:
        atoms, readable = solute, ("all", "not water")
    if len(atoms) < 3:
        raise SelectionError(f"the topology has {len(atoms)} atom(s) outside water and ions, too few for aligned "
                             "positions; pass features explicitly, e.g. 'distances:not water'")
    for selection in readable:
        try:
            if top.select(selection).tolist() == atoms:
                return [f"positions:{selection}"]
        except Exception:  # e.g. atoms without an element: fall back to explicit indices
            pass
    return ["positions:index " + " ".join(map(str, atoms))]


def _split_kind(spec: str) -> tuple[str, Optional[str]]:
    kind, sep, rest = spec.partition(":")
    return kind.strip().lower(), (rest if sep else None)


def _unknown_kind(spec: str) -> SelectionError:
    return SelectionError(f"unknown feature spec {spec!r}; write one of " + ", ".join(FEATURE_KINDS.values()))


def _check_pairwise(spec: str, atoms: Sequence[int]) -> None:
    if len(atoms) < 2:
        raise SelectionError(f"{spec!r} selects {len(atoms)} atom but a pairwise feature needs at least 2; "
                             "widen the selection")
    n_pairs = len(atoms) * (len(atoms) - 1) // 2
    if n_pairs > MAX_PAIRWISE_OUTPUTS:
        warnings.warn(f"{spec!r} gives {n_pairs} pairs (> {MAX_PAIRWISE_OUTPUTS}): slow to evaluate and to train "
                      "on; consider a smaller selection such as 'name CA'", UserWarning, stacklevel=4)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _contact_options(spec: str, options: Sequence[str]) -> dict:
    values = {}
    for option in options:
        match = re.fullmatch(rf"\s*(r0|n|m)\s*=\s*({_NUMBER})\s*", option)
        if match is None:
            raise SelectionError(f"bad contacts option {option.strip()!r} in {spec!r}; write e.g. "
                                 "'contacts:name CA;r0=0.6' (r0 in nm; n and m are the switching exponents)")
        values[match.group(1)] = float(match.group(2))
    r0, n, m = values.get("r0", 0.8), values.get("n", 6.0), values.get("m", 12.0)
    if r0 <= 0 or not 0 < n < m:
        raise SelectionError(f"{spec!r} needs r0 > 0 (nm) and 0 < n < m, got r0={r0:g}, n={n:g}, m={m:g}")
    return {"r0": r0, "n": n, "m": m}


def _torsions(spec: str, body: str, n_atoms: int) -> list[tuple[int, int, int, int]]:
    quadruplets = []
    for text in body.split(";"):
        if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*){3}", text):
            raise SelectionError(f"malformed torsion {text.strip()!r} in {spec!r}; write four 0-based atom indices "
                                 "separated by commas, torsions separated by ';', e.g. 'torsions:4,6,8,14;6,8,14,16'")
        quad = tuple(int(i) for i in text.split(","))
        if max(quad) >= n_atoms:
            raise SelectionError(f"atom index {max(quad)} in {spec!r} is out of range: the topology has {n_atoms} "
                                 f"atoms (indices 0 to {n_atoms - 1})")
        if len(set(quad)) != 4:
            raise SelectionError(f"torsion {text.strip()!r} in {spec!r} repeats an atom; a torsion needs four "
                                 "different atoms")
        quadruplets.append(quad)
    return quadruplets


def _reference_positions(reference, n_atoms: int, spec: str) -> torch.Tensor:
    if reference is None:
        raise SelectionError(f"{spec!r} aligns to a reference structure: pass reference= (positions "
                             f"[{n_atoms}, 3] in nm)")
    if hasattr(reference, "value_in_unit"):  # an OpenMM Quantity
        import openmm.unit as unit

        reference = reference.value_in_unit(unit.nanometer)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape != (n_atoms, 3):
        raise SelectionError(f"the reference positions must be [{n_atoms}, 3] (nm, the whole system), got shape "
                             f"{reference.shape}")
    return torch.as_tensor(reference, dtype=torch.get_default_dtype())


def _parse_one(spec: str, top: mdtraj.Topology, reference) -> Feature:
    if not isinstance(spec, str):
        raise SelectionError(f"a feature spec is a string, got {type(spec).__name__} {spec!r}; write e.g. "
                             "'backbone-torsions' or 'distances:name CA'")
    kind, body = _split_kind(spec)
    if kind not in FEATURE_KINDS:
        raise _unknown_kind(spec)
    if kind == "backbone-torsions":
        if body is not None and body.strip():
            raise SelectionError(f"{spec!r}: backbone-torsions takes no selection; write 'backbone-torsions', or "
                                 "'torsions:I,J,K,L;…' for chosen torsions")
        quadruplets = _backbone_quadruplets(top)
        if not quadruplets:
            raise SelectionError("the topology has no backbone φ or ψ torsion (no peptide bonds); write "
                                 "'torsions:I,J,K,L;…' or 'positions:not element H' instead")
        return Dihedrals(quadruplets, sincos=True)
    if body is None or not body.strip():
        raise SelectionError(f"{spec!r} needs a {'list of torsions' if kind == 'torsions' else 'selection'} "
                             f"after the colon; write {FEATURE_KINDS[kind]}")
    if kind == "torsions":
        return Dihedrals(_torsions(spec, body, top.n_atoms), sincos=True)
    if kind == "contacts":
        selection, *options = body.split(";")
        options = _contact_options(spec, options)
        atoms = select_atoms(top, selection)
        _check_pairwise(spec, atoms)
        return Contacts(atoms=atoms, **options)
    atoms = select_atoms(top, body)
    if kind == "distances":
        _check_pairwise(spec, atoms)
        return PairwiseDistances(atoms=atoms)
    # positions
    if len(atoms) < 3:
        raise SelectionError(f"{spec!r} selects {len(atoms)} atom{'s' if len(atoms) != 1 else ''} but aligned "
                             "positions need at least 3 (fewer have no defined orientation); widen the selection")
    return Cartesians(atoms, reference=_reference_positions(reference, top.n_atoms, spec)[atoms])


def parse_features(specs: Union[str, Sequence[str]], topology, reference=None) -> Feature:
    """The feature module that ``specs`` describe (grammar in the module docstring).

    Parameters
    ----------
    specs : one feature spec, or a list of them; a list gives a :class:`~cvplug.features.Concatenate` of the
        features in its order (a one-element list gives the feature itself).
    topology : openmm.app.Topology or mdtraj.Topology of the whole system (indices are into it).
    reference : positions [n_atoms, 3] of the whole system (nm; array or OpenMM Quantity): the structure
        ``positions:`` features are aligned to. Needed only for those.

    Raises
    ------
    SelectionError
        A ValueError with a one-line message for an unknown kind, a malformed torsion, an index out of range, a
        selection that does not parse or matches nothing, fewer than 2 atoms for distances or contacts, fewer
        than 3 for positions.

    Warns
    -----
    UserWarning
        When a pairwise feature exceeds :data:`MAX_PAIRWISE_OUTPUTS` outputs.
    """
    top = _mdtraj_topology(topology)
    if isinstance(specs, str):
        specs = [specs]
    specs = list(specs)
    if not specs:
        raise SelectionError("no feature spec given; write e.g. 'backbone-torsions' or ['distances:name CA']")
    features = []
    for spec in specs:  # a plain loop: the pairwise warning points at the caller (stacklevel)
        features.append(_parse_one(spec, top, reference))
    return features[0] if len(features) == 1 else Concatenate(features)
