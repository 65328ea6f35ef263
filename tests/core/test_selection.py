import types
import warnings
from pathlib import Path

import mdtraj
import numpy as np
import openmm.app as app
import pytest
import torch

from cvplug import systems
from cvplug.cv import CollectiveVariable, load_cv
from cvplug.features import Cartesians, Concatenate, Contacts, Dihedrals, PairwiseDistances, default_features
from cvplug.selection import (SelectionError, default_feature_specs, parse_features, select_atoms,
                              solute_atoms)

PHI, PSI = (4, 6, 8, 14), (6, 8, 14, 16)
HEAVY = [1, 4, 5, 6, 8, 10, 14, 15, 16, 18]
SPEC = systems.load("ala2-vacuum")
TRPZIP = Path(__file__).resolve().parents[2] / "systems" / "data" / "trpzip2-explicit"  # shipped


@pytest.fixture(scope="module")
def frames():
    """A few jiggled alanine-dipeptide structures (float64, nm): enough to move every torsion and distance."""
    noise = np.random.default_rng(7).normal(scale=0.03, size=(6, SPEC.n_atoms, 3))
    return torch.tensor(SPEC.positions[None] + noise, dtype=torch.float64)


def parse(specs, reference=SPEC.positions):
    return parse_features(specs, SPEC.topology, reference)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_backbone_torsions_are_phi_and_psi_and_match_mdtraj(frames):
    feature = parse("backbone-torsions")
    assert isinstance(feature, Dihedrals) and feature.sincos
    assert feature.describe()["quadruplets"] == [list(PHI), list(PSI)]
    values = feature(frames).numpy()
    angles = np.arctan2(values[:, :2], values[:, 2:])
    trajectory = mdtraj.Trajectory(frames.numpy(), mdtraj.Topology.from_openmm(SPEC.topology))
    np.testing.assert_allclose(angles[:, 0], mdtraj.compute_phi(trajectory)[1][:, 0], atol=1e-5)
    np.testing.assert_allclose(angles[:, 1], mdtraj.compute_psi(trajectory)[1][:, 0], atol=1e-5)


def test_explicit_torsions_equal_dihedrals(frames):
    feature = parse("torsions: 4,6,8,14 ; 6, 8, 14, 16")
    expected = Dihedrals([PHI, PSI], sincos=True)
    assert feature.describe() == expected.describe()
    torch.testing.assert_close(feature(frames), expected(frames))


def test_distances_and_contacts_match_numpy(frames):
    xyz = frames.numpy()
    i, j = np.triu_indices(len(HEAVY), k=1)
    r = np.linalg.norm(xyz[:, np.array(HEAVY)[j]] - xyz[:, np.array(HEAVY)[i]], axis=-1)
    distances = parse("distances:not element H")
    assert isinstance(distances, PairwiseDistances) and distances.n_out == 45
    np.testing.assert_allclose(distances(frames).numpy(), r, rtol=1e-12)
    contacts = parse("contacts:not element H;r0=0.45")
    assert isinstance(contacts, Contacts) and contacts.describe()["r0"] == 0.45
    x = r / 0.45
    np.testing.assert_allclose(contacts(frames).numpy(), (1 - x ** 6) / (1 - x ** 12), rtol=1e-10)
    other = parse("contacts:not element H; r0=0.3; n=4 ;m=10")
    x = r / 0.3
    np.testing.assert_allclose(other(frames).numpy(), (1 - x ** 4) / (1 - x ** 10), rtol=1e-10)
    assert parse("contacts:name CA or name N").describe()["r0"] == 0.8  # the default


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_contacts_value_and_gradient_are_finite_at_r0(dtype):
    feature = torch.jit.script(Contacts(pairs=[(0, 1)], r0=0.5))
    positions = torch.tensor([[[0.1, 0.2, 0.3], [0.4, 0.6, 0.3]]], dtype=dtype, requires_grad=True)  # r = 0.5
    value = feature(positions)
    value.sum().backward()
    assert value.item() == pytest.approx(0.5, abs=1e-7)               # n/m
    assert torch.isfinite(positions.grad).all()
    # d/dr 1/(1 + (r/r0)^6) at r0 is −6/(4 r0) = −3 /nm, along the unit vector from atom 0 to atom 1
    unit = torch.tensor([0.6, 0.8, 0.0], dtype=dtype)
    torch.testing.assert_close(positions.grad[0, 1], -3.0 * unit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(positions.grad[0, 0], 3.0 * unit, rtol=1e-4, atol=1e-5)


def test_aligned_positions_ignore_rotation_and_translation(frames, rng):
    feature = parse("positions:not element H")
    assert isinstance(feature, Cartesians) and feature.aligned and feature.atoms.tolist() == HEAVY
    moved = frames @ torch.tensor(random_rotation(rng)).T + torch.tensor([0.7, -1.2, 2.0], dtype=torch.float64)
    torch.testing.assert_close(feature(moved), feature(frames))
    reference = torch.tensor(SPEC.positions[HEAVY])
    torch.testing.assert_close(feature(torch.tensor(SPEC.positions[None]))[0].reshape(-1, 3),
                               (reference - reference.mean(0)).to(torch.get_default_dtype()).double())


def test_several_specs_concatenate_in_order(frames):
    specs = ["distances:index 4 6 8", "backbone-torsions", "contacts:index 14 16"]
    feature = parse(specs)
    assert isinstance(feature, Concatenate)
    parts = [parse(spec) for spec in specs]
    assert [p.describe() for p in feature.parts] == [p.describe() for p in parts]
    torch.testing.assert_close(feature(frames), torch.cat([p(frames) for p in parts], dim=-1))
    assert isinstance(parse(["backbone-torsions"]), Dihedrals)  # one spec: the feature itself


@pytest.mark.parametrize("spec, message", [
    ("dihedrals:4,6,8,14", r"unknown feature spec 'dihedrals:4,6,8,14'; write one of backbone-torsions, torsions:"),
    ("torsions:4,6,8", r"malformed torsion '4,6,8' .*four 0-based atom indices"),
    ("torsions:4,6,8,14;6,8,x,16", r"malformed torsion '6,8,x,16'"),
    ("torsions:4,6,8,22", r"atom index 22 .* out of range: the topology has 22 atoms"),
    ("torsions:4,6,6,8", r"repeats an atom"),
    ("torsions:", r"needs a list of torsions after the colon"),
    ("backbone-torsions:name CA", r"backbone-torsions takes no selection"),
    ("distances:name XX", r"'name XX' matches no atom"),
    ("positions:name CA and", r"cannot parse the atom selection 'name CA and'"),
    ("distances:index 4", r"selects 1 atom but a pairwise feature needs at least 2"),
    ("contacts:name CA", r"selects 1 atom but a pairwise feature needs at least 2"),
    ("contacts:not element H;r=0.5", r"bad contacts option 'r=0.5'"),
    ("contacts:not element H;r0=-1", r"needs r0 > 0"),
    ("positions:index 4 6", r"selects 2 atoms but aligned positions need at least 3"),
])
def test_bad_specs_raise_one_line_selection_errors(spec, message):
    with pytest.raises(SelectionError, match=message) as error:
        parse(spec)
    assert "\n" not in str(error.value) and isinstance(error.value, ValueError)


def test_other_errors_and_the_pairwise_warning():
    with pytest.raises(SelectionError, match="no backbone φ or ψ torsion"):
        parse_features("backbone-torsions", _small_molecule(), None)
    with pytest.raises(SelectionError, match="pass reference="):
        parse("positions:not element H", reference=None)
    with pytest.raises(SelectionError, match="no feature spec"):
        parse([])
    explicit = systems.load("ala2-explicit")
    with pytest.warns(UserWarning, match="7260 pairs"):
        feature = parse_features("distances:index 0 to 120", explicit.topology)
    assert feature.n_out == 7260
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_features("distances:index 0 to 99", explicit.topology)  # 4950 pairs: no warning


@pytest.mark.parametrize("spec", ["backbone-torsions", "torsions:4,6,8,14", "distances:not element H",
                                  "contacts:not element H;r0=0.45", "positions:not element H",
                                  ["positions:name CA or name C or name N", "contacts:index 4 6 8 14 16"]])
def test_every_kind_scripts_exports_and_reloads(spec, frames, tmp_path):
    feature = parse(spec)
    scripted = torch.jit.script(feature)
    x = frames.float()
    torch.testing.assert_close(scripted(x), feature(x))
    encoder = torch.nn.Linear(feature.n_out, 2)
    cv = CollectiveVariable(feature, encoder, n_atoms=SPEC.n_atoms)
    loaded = load_cv(cv.export(tmp_path / "cv.pt"))
    assert loaded.metadata["features"] == feature.describe()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), cv(x))


def _small_molecule(water: bool = False, ion: bool = False) -> app.Topology:
    """Ethanol's heavy atoms plus two hydrogens (C0 C1 O2 H3 H4), optionally with a water and a Na⁺."""
    top = app.Topology()
    chain = top.addChain()
    residue = top.addResidue("MOL", chain)
    atoms = [top.addAtom(name, app.Element.getBySymbol(symbol), residue)
             for name, symbol in (("C1", "C"), ("C2", "C"), ("O1", "O"), ("H1", "H"), ("H2", "H"))]
    top.addBond(atoms[0], atoms[1])
    top.addBond(atoms[1], atoms[2])
    if water:
        hoh = top.addResidue("HOH", top.addChain())
        for name, symbol in (("O", "O"), ("H1", "H"), ("H2", "H")):
            top.addAtom(name, app.Element.getBySymbol(symbol), hoh)
    if ion:
        top.addAtom("NA", app.Element.getBySymbol("Na"), top.addResidue("NA", top.addChain()))
    return top


def test_default_features_backbone_torsions_for_peptides_and_heavy_positions_otherwise(rng):
    assert default_feature_specs(SPEC.topology) == ["backbone-torsions"]
    feature = default_features(SPEC, SPEC.positions)
    assert isinstance(feature, Dihedrals) and feature.describe()["quadruplets"] == [list(PHI), list(PSI)]
    assert default_feature_specs(_small_molecule()) == ["positions:not element H"]
    assert default_feature_specs(_small_molecule(water=True)) == ["positions:not water and not element H"]
    top = _small_molecule(water=True, ion=True)
    assert default_feature_specs(top) == ["positions:index 0 1 2"]
    methane = app.Topology()
    residue = methane.addResidue("CH4", methane.addChain())
    for name, symbol in (("C", "C"), ("H1", "H"), ("H2", "H"), ("H3", "H"), ("H4", "H")):
        methane.addAtom(name, app.Element.getBySymbol(symbol), residue)
    assert default_feature_specs(methane) == ["positions:all"]  # fewer than 3 heavy atoms: all of them
    reference = rng.normal(size=(top.getNumAtoms(), 3))
    feature = default_features(types.SimpleNamespace(topology=top, toy=None), reference)
    assert isinstance(feature, Cartesians) and feature.aligned and feature.atoms.tolist() == [0, 1, 2]
    torch.testing.assert_close(feature.reference.double(), torch.tensor(reference[:3]), rtol=1e-6, atol=1e-6)


def test_select_and_solute_atoms():
    explicit = systems.load("ala2-explicit")
    assert explicit.topology.getNumAtoms() > 2000
    assert solute_atoms(explicit.topology) == list(range(22))
    assert select_atoms(explicit.topology, "not water and not element H") == HEAVY
    assert select_atoms(mdtraj.Topology.from_openmm(SPEC.topology), "name CA") == [8]
    assert solute_atoms(_small_molecule(water=True, ion=True)) == [0, 1, 2, 3, 4]


def test_old_format_prmtop_topology_with_padded_names_and_an_ion():
    import parmed

    structure = parmed.load_file(str(TRPZIP / "trpzip2.prmtop"), str(TRPZIP / "trpzip2.crd"))
    top = structure.topology
    chloride = [a.index for a in top.atoms() if a.residue.name.strip() == "Cl-"]
    solute = solute_atoms(top)
    assert chloride and not set(chloride) & set(solute)
    assert len(solute) == 218 and solute == list(range(218))
    assert len(select_atoms(top, "name CA")) == 12                      # names read as 'CA  ' are stripped
    assert default_feature_specs(top) == ["backbone-torsions"]
    assert parse_features("backbone-torsions", top).n_out == 2 * 22   # 11 φ + 11 ψ, sin and cos
