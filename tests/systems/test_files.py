"""cvplug.systems.from_files: every input format builds the shipped alanine dipeptide (vacuum) system.

Each format is written from the shipped AMBER files with ParmEd / OpenMM (GROMACS top+gro, System XML + State
XML or PDB, an ffxml for the PDB + force-field route) and must give the shipped system's potential energy at the
starting positions to 1e-4 relative. Files with fewer digits (PDB: 0.001 Å) are compared at their own positions.
"""
import math
from importlib import resources

import torch  # noqa: F401  (torch before openmm, see DESIGN.md)
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import parmed
import pytest

from cvplug import systems
from cvplug.systems import SystemInputError, from_files, resolve
from cvplug.systems.alanine import data_file

PRMTOP, CRD, PDB = (data_file("alanine-dipeptide", suffix) for suffix in ("prmtop", "crd", "pdb"))
EXPLICIT_CRD = data_file("alanine-dipeptide-explicit", "crd")
TRPZIP2 = resources.files("cvplug.systems") / "data" / "trpzip2-explicit"


@pytest.fixture(scope="module")
def vacuum():
    return systems.load("ala2-vacuum")


@pytest.fixture(scope="module")
def files(tmp_path_factory, vacuum):
    """The alanine dipeptide in every other input format, written from the shipped prmtop/crd."""
    folder = tmp_path_factory.mktemp("ala2")
    structure = parmed.load_file(PRMTOP, CRD)
    structure.save(str(folder / "ala2.top"))
    structure.save(str(folder / "ala2.gro"), precision=8)
    lines = (folder / "ala2.gro").read_text().splitlines()
    lines[-1] = "   0.00000   0.00000   0.00000"  # how GROMACS marks a system without a box
    (folder / "ala2.gro").write_text("\n".join(lines) + "\n")

    parameters = parmed.openmm.OpenMMParameterSet.from_structure(structure)
    for residue in structure.residues:
        parameters.residues[residue.name] = parmed.modeller.ResidueTemplate.from_residue(residue)
    parameters.write(str(folder / "ala2-ff.xml"))

    (folder / "ala2-system.xml").write_text(openmm.XmlSerializer.serialize(vacuum.system))
    context = openmm.Context(vacuum.system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(vacuum.positions)
    state = context.getState(getPositions=True)
    (folder / "ala2-state.xml").write_text(openmm.XmlSerializer.serialize(state))
    return folder


def assert_same_as_shipped(spec, vacuum):
    """Same atoms, constraints and potential energy (at the spec's starting positions) as ala2-vacuum."""
    assert spec.n_atoms == 22 and not spec.periodic and spec.box_vectors is None
    assert spec.system.getNumConstraints() == vacuum.system.getNumConstraints()
    np.testing.assert_allclose(spec.positions, vacuum.positions, atol=1e-4)
    assert spec.energy() == pytest.approx(vacuum.energy(spec.positions), rel=1e-4)


def test_amber_prmtop_and_crd(vacuum):
    spec = from_files(PRMTOP, CRD, minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert spec.name == "alanine-dipeptide"
    assert spec.description == "AMBER prmtop + crd, no cutoff, HBonds, 300 K"


def test_gromacs_top_and_gro(files, vacuum):
    spec = from_files(files / "ala2.top", files / "ala2.gro", minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert spec.description.startswith("GROMACS top + gro, no cutoff")


def test_openmm_system_xml_and_state_xml(files, vacuum):
    spec = from_files(files / "ala2-system.xml", files / "ala2-state.xml", minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert "one residue UNK" in spec.description
    assert [r.name for r in spec.topology.residues()] == ["UNK"]
    assert ([a.element for a in spec.topology.atoms()] == [a.element for a in vacuum.topology.atoms()])


def test_openmm_system_xml_and_state_xml_with_topology(files, vacuum):
    spec = from_files(files / "ala2-system.xml", files / "ala2-state.xml", topology=PDB, minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert [r.name for r in spec.topology.residues()] == ["ACE", "ALA", "NME"]


def test_openmm_system_xml_and_pdb(files, vacuum):
    spec = from_files(files / "ala2-system.xml", PDB, minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert [r.name for r in spec.topology.residues()] == ["ACE", "ALA", "NME"]


def test_pdb_and_forcefield_xml(files, vacuum):
    """The ffxml is ParmEd's translation of the shipped prmtop (residue templates included)."""
    spec = from_files(PDB, forcefield=[str(files / "ala2-ff.xml")], minimize=False)
    assert_same_as_shipped(spec, vacuum)
    assert spec.description == "PDB + ala2-ff.xml, no cutoff, HBonds, 300 K"


def test_old_format_prmtop_trpzip2_matches_parmed():
    prmtop, crd = str(TRPZIP2 / "trpzip2.prmtop"), str(TRPZIP2 / "trpzip2.crd")
    spec = from_files(prmtop, crd, minimize=False)
    assert spec.name == "trpzip2" and spec.n_atoms == 11034 and spec.periodic
    assert spec.description.startswith("AMBER prmtop (old format, read by ParmEd) + crd, PME 1 nm, HBonds")
    np.testing.assert_allclose(spec.box_vectors, 4.80951 * np.eye(3))
    (nonbonded,) = [f for f in spec.system.getForces() if isinstance(f, openmm.NonbondedForce)]
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.PME
    assert nonbonded.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(1.0)

    structure = parmed.load_file(prmtop, crd)
    direct = structure.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                                    constraints=app.HBonds, rigidWater=True)
    context = openmm.Context(direct, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*structure.box_vectors)
    context.setPositions(structure.positions)
    expected = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert spec.energy(platform="CPU") == pytest.approx(expected, rel=1e-6)


def test_trpzip2_is_a_shipped_name():
    assert "trpzip2-explicit" in systems.names()


def test_defaults_for_user_files():
    spec = from_files(PRMTOP, CRD, minimize=False)
    assert (spec.temperature, spec.timestep, spec.friction) == (300.0, 0.002, 1.0)
    assert "minimized" not in spec.extras


def test_shipped_name_keeps_its_own_conditions_and_is_not_minimized():
    shipped = systems.load("double-well")
    spec = from_files("double-well")
    assert (spec.temperature, spec.timestep, spec.friction) == (shipped.temperature, shipped.timestep,
                                                                 shipped.friction)
    np.testing.assert_array_equal(spec.positions, shipped.positions)
    assert "minimized" not in spec.extras and spec.source == {"system": "double-well"}
    assert from_files("ala2-vacuum", temperature=310 * unit.kelvin).temperature == 310.0


def test_minimization_lowers_the_energy(vacuum):
    spec = from_files(PRMTOP, CRD)
    energies = spec.extras["minimized"]
    assert energies["before"] == pytest.approx(vacuum.energy(), rel=1e-4)
    assert energies["after"] < energies["before"]
    assert spec.energy() == pytest.approx(energies["after"], rel=1e-4)


def test_source_rebuilds_the_same_system(files):
    spec = from_files(files / "ala2-system.xml", files / "ala2-state.xml", topology=PDB, temperature=310,
                      timestep=0.001, friction=2.0, minimize=False)
    assert spec.source == {"system": str(files / "ala2-system.xml"), "positions": str(files / "ala2-state.xml"),
                           "topology": PDB, "forcefield": [], "include_dir": None, "temperature": 310.0,
                           "timestep": 0.001, "friction": 2.0, "minimize": False}
    again = from_files(**spec.source)
    assert again.source == spec.source and again.description == spec.description
    np.testing.assert_array_equal(again.positions, spec.positions)
    assert again.energy() == spec.energy()

    pdb = from_files(PDB, forcefield=[str(files / "ala2-ff.xml")], minimize=False)
    assert from_files(**pdb.source).energy() == pdb.energy()
    shipped = from_files("ala2-vacuum", temperature=310)
    assert shipped.source == {"system": "ala2-vacuum", "temperature": 310.0}
    assert from_files(**shipped.source).temperature == 310.0


def test_source_repeats_the_minimization():
    """Same system and start; the minimised positions are not bitwise repeatable (threaded CPU force sums)."""
    spec = from_files(PRMTOP, CRD)
    again = from_files(**spec.source)
    assert again.source == spec.source and again.source["minimize"] is True
    assert again.extras["minimized"]["before"] == spec.extras["minimized"]["before"]
    assert again.extras["minimized"]["after"] == pytest.approx(spec.extras["minimized"]["after"], rel=1e-2)


def test_resolve_passes_a_spec_through_and_builds_the_rest(vacuum):
    assert resolve(vacuum) is vacuum
    assert resolve("ala2-vacuum").name == "ala2-vacuum"
    with pytest.raises(SystemInputError, match="already a SystemSpec.*temperature"):
        resolve(vacuum, temperature=310)


def error_message(*args, **kwargs) -> str:
    with pytest.raises(SystemInputError) as raised:
        from_files(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_unknown_file_type_lists_the_accepted_ones(tmp_path):
    message = error_message(tmp_path / "ala2.mol2")
    assert "'.mol2'" in message and ".prmtop" in message and ".top" in message and ".pdb" in message
    assert "'.pdb'" in error_message(PRMTOP, PDB)  # a PDB is no AMBER coordinate file


def test_missing_system_or_positions_file_names_the_path(tmp_path):
    assert str(tmp_path / "missing.prmtop") in error_message(tmp_path / "missing.prmtop", CRD)
    assert str(tmp_path / "missing.crd") in error_message(PRMTOP, tmp_path / "missing.crd")


def test_positions_needed_says_which_kind(files):
    assert "an AMBER prmtop needs positions: an inpcrd/rst7/crd file" in error_message(PRMTOP)
    assert "gro" in error_message(files / "ala2.top")
    assert "State XML or a PDB" in error_message(files / "ala2-system.xml")


def test_atom_count_mismatch_names_both_files():
    message = error_message(PRMTOP, EXPLICIT_CRD)
    assert "22" in message and "2269" in message and PRMTOP in message and EXPLICIT_CRD in message


def test_missing_template_names_the_residue(tmp_path):
    message = error_message(PDB, forcefield=["amber14/tip3pfb.xml"])
    assert "no template for residue ACE 1, ALA 2, NME 3" in message
    assert "force-field XML" in message and "PDBFixer" in message

    pdb = app.PDBFile(PDB)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete([atom for atom in modeller.topology.atoms() if atom.name == "H"])  # the amide hydrogens
    with open(tmp_path / "no-amide-h.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    message = error_message(tmp_path / "no-amide-h.pdb", forcefield=["amber14-all.xml"])
    assert "no template for residue ALA 2 chain A, NME 3 chain A" in message and "missing 1 H atom" in message


def test_unloadable_forcefield_is_named():
    assert "'no-such-forcefield.xml'" in error_message(PDB, forcefield=["no-such-forcefield.xml"])


def test_pdb_without_forcefield_asks_for_one():
    assert "forcefield=" in error_message(PDB)


@pytest.mark.parametrize("name,value", [("temperature", -300.0), ("timestep", 0.0), ("friction", math.nan),
                                        ("temperature", math.inf), ("friction", "fast")])
def test_bad_conditions_are_refused_before_reading_files(name, value):
    message = error_message("not-read.prmtop", **{name: value})
    assert name in message and "positive finite" in message


@pytest.mark.parametrize("options,expected", [({"forcefield": ["amber14-all.xml"]}, "PDB/PDBx system only"),
                                              ({"include_dir": "/tmp"}, "GROMACS"),
                                              ({"topology": PDB}, "System XML with a State XML")])
def test_options_that_do_not_apply_are_refused(options, expected):
    assert expected in error_message(PRMTOP, CRD, **options)


@pytest.mark.parametrize("system, positions, extra", [
    (PRMTOP, CRD, []),
    ("ala2.top", "ala2.gro", []),
    ("ala2-system.xml", "ala2-state.xml", []),
    ("ala2-system.xml", PDB, []),
    (PDB, None, ["--forcefield", "ala2-ff.xml"]),
])
def test_each_format_runs_a_few_steps_through_the_cli(files, tmp_path, system, positions, extra):
    """`cvplug simulate --system … --positions …` (minimised first) writes the frames it was asked for."""
    import mdtraj

    from cvplug.cli import main

    def path(name):
        return name if name is None or "/" in name else str(files / name)

    argv = ["simulate", "--system", path(system), *(["--positions", path(positions)] if positions else []),
            *[path(x) if x.endswith(".xml") else x for x in extra],
            "--steps", "20", "--report-every", "10", "--platform", "Reference", "--out", str(tmp_path / "t.dcd")]
    assert main(argv) == 0
    frames = mdtraj.load(str(tmp_path / "t.dcd"), top=str(tmp_path / "t.pdb"))
    assert frames.n_frames == 2 and frames.n_atoms == 22 and np.isfinite(frames.xyz).all()


def test_old_format_prmtop_runs_through_the_cli_and_stores_the_peptide_only(tmp_path):
    """trpzip2 in water (old-format prmtop, ParmEd): the trajectory holds the 218 peptide atoms, not the water."""
    import mdtraj

    from cvplug.cli import main

    assert main(["simulate", "--system", str(TRPZIP2 / "trpzip2.prmtop"), "--positions",
                 str(TRPZIP2 / "trpzip2.crd"), "--no-minimize", "--timestep", "1", "--steps", "4",
                 "--report-every", "2", "--out", str(tmp_path / "t.dcd")]) == 0
    frames = mdtraj.load(str(tmp_path / "t.dcd"), top=str(tmp_path / "t.pdb"))
    assert frames.n_frames == 2 and frames.n_atoms == 218
    assert np.load(tmp_path / "t.atoms.npy").tolist() == list(range(218))


def test_an_openmm_system_built_in_python(vacuum, tmp_path):
    """from_openmm wraps a System with positions; simulate and resolve say what a bare System lacks."""
    from cvplug.simulate import simulate

    spec = systems.from_openmm(vacuum.system, vacuum.positions, vacuum.topology, temperature=310)
    assert spec.temperature == 310 and spec.energy() == pytest.approx(vacuum.energy(), rel=1e-9)
    assert simulate(spec, 20, tmp_path / "t", report_every=10, platform="Reference", progress=False).exists()
    with pytest.raises(SystemInputError, match=r"\[22, 3\]"):
        systems.from_openmm(vacuum.system, vacuum.positions[:5])
    with pytest.raises(SystemInputError, match="from_openmm"):
        resolve(vacuum.system)
    with pytest.raises(ValueError, match="from_openmm"):
        simulate(vacuum.system, 20, tmp_path / "u")
