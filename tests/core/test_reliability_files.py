"""Issue 20, file integrity: CV file checksums, energy expressions checked by attach(), trajectories that are cut
short, of other atoms, unparsable or in non-ASCII folders, and the bridge's empty batches and far-away samples."""
import json
import re
import shutil
import struct
import zipfile

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
import torch

import cvplug
from cvplug import CVFileError, CollectiveVariable, load_cv, systems
from cvplug.features import Dihedrals
from cvplug.trajectory import TrajectoryError, check_topology, load_trajectory, trajectory_positions

PHI_PSI = [(4, 6, 8, 14), (6, 8, 14, 16)]


def small_cv(names=None, seed=0):
    torch.manual_seed(seed)
    return CollectiveVariable(Dihedrals(PHI_PSI), torch.nn.Linear(2, 2).double(), n_atoms=22, names=names,
                              method="test")


@pytest.fixture(scope="module")
def vacuum():
    return systems.load("ala2-vacuum")


@pytest.fixture(scope="module")
def run(tmp_path_factory, vacuum):
    """A 10-frame alanine-dipeptide DCD (+ PDB) from cvplug.simulate."""
    from cvplug.simulate import simulate

    return simulate(vacuum, 100, tmp_path_factory.mktemp("run") / "run", report_every=10, platform="Reference",
                    progress=False)


# -- 7. CV files carry a checksum ------------------------------------------------------------------------------

def weight_record(path, weight: torch.Tensor):
    """(zip entry, offset of its data in the file) of the record holding ``weight``'s bytes."""
    raw = weight.detach().numpy().tobytes()
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and archive.read(i) == raw)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info, info.header_offset + 30 + name_length + extra_length


def test_untouched_cv_file_loads_bit_identically_and_carries_its_checksum(tmp_path):
    cv = small_cv()
    path = cv.export(tmp_path / "cv.pt")
    loaded = load_cv(path)
    assert loaded.metadata["checksum"]["algorithm"] == "sha256"
    assert loaded.metadata["checksum"]["value"] == cvplug.cv.file_checksum(path)
    x = torch.randn(5, 22, 3, dtype=torch.float64)
    assert torch.equal(loaded(x), cv(x))
    assert not list(tmp_path.glob(".*.tmp"))  # written beside and renamed


@pytest.mark.parametrize("how", ["patched in place (stale zip CRC)", "zip rewritten (valid CRCs)"])
def test_one_flipped_bit_in_a_weight_is_a_cv_file_error(tmp_path, how):
    cv = small_cv()
    path = cv.export(tmp_path / "flipped.pt")
    info, offset = weight_record(path, cv.encoder.weight)
    data = bytearray(path.read_bytes())
    data[offset + 2] ^= 0x10  # one bit of the first weight's mantissa
    if how.startswith("patched"):
        path.write_bytes(bytes(data))
    else:
        content = bytes(data[offset:offset + info.file_size])
        with zipfile.ZipFile(path) as archive:
            entries = {i.filename: (content if i.filename == info.filename else archive.read(i))
                       for i in archive.infolist()}
        with zipfile.ZipFile(path, "w") as archive:
            for name, entry in entries.items():
                archive.writestr(name, entry)
    module = torch.jit.load(str(path))  # torch itself reads it, with another weight
    x = torch.randn(3, 22, 3, dtype=torch.float64)
    assert not torch.equal(module(x), cv(x))
    with pytest.raises(CVFileError, match=re.escape(str(path))):
        load_cv(path)


def rewrite_metadata(path, change):
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    name = next(n for n in entries if n.endswith("extra/cvplug.json"))
    metadata = json.loads(entries[name])
    change(metadata)
    entries[name] = json.dumps(metadata).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for n, content in entries.items():
            archive.writestr(n, content)


def test_changed_metadata_is_a_cv_file_error_and_files_without_checksum_still_load(tmp_path):
    cv = small_cv()
    changed = cv.export(tmp_path / "changed.pt")
    rewrite_metadata(changed, lambda meta: meta.update(n_atoms=23))
    with pytest.raises(CVFileError, match="changed.pt is damaged"):
        load_cv(changed)
    old = cv.export(tmp_path / "old.pt")
    rewrite_metadata(old, lambda meta: meta.pop("checksum"))  # as written before checksums existed
    x = torch.randn(2, 22, 3, dtype=torch.float64)
    assert torch.equal(load_cv(old)(x), cv(x))


# -- 11. attach() checks the energy expression ------------------------------------------------------------------

def test_attach_refuses_names_that_are_neither_components_nor_parameters(vacuum):
    cv = small_cv(names=["z0", "z1"])  # as DynAE names them
    n_forces = vacuum.system.getNumForces()
    with pytest.raises(ValueError, match=r"uses cv0, .*component.*\(z0, z1\).*parameter \(k\)"):
        cvplug.attach(vacuum.system, cv, energy="k*cv0", parameters={"k": 1.0})
    with pytest.raises(ValueError, match=r"uses k, q"):
        cvplug.attach(vacuum.system, cv, energy="k*z0 + q")
    with pytest.raises(ValueError, match="calls nosuch"):
        cvplug.attach(vacuum.system, cv, energy="nosuch(z0)")
    assert vacuum.system.getNumForces() == n_forces  # nothing was added by the refused calls


def test_attach_accepts_functions_definitions_and_numbers_and_biases(vacuum):
    cv = small_cv(names=["z0", "z1"])
    system = openmm.System()
    for i in range(vacuum.n_atoms):
        system.addParticle(vacuum.system.getParticleMass(i))
    energy = "k*d^2 + 1e-3*min(z1, 2.5E+1) + 0*step(z0); d = z0 - s0"
    attached = cvplug.attach(system, cv, energy=energy, parameters={"k": 2.0, "s0": 0.5})
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(vacuum.positions)
    z0, z1 = attached.values(context)
    expected = 2.0 * (z0 - 0.5) ** 2 + 1e-3 * min(z1, 25.0)
    found = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert found == pytest.approx(expected, rel=1e-8) and found != 0


# -- 12. trajectories --------------------------------------------------------------------------------------------

def copy_run(run, folder):
    folder.mkdir()
    for suffix in (".dcd", ".pdb"):
        shutil.copy(run.with_suffix(suffix), folder / ("run" + suffix))
    return folder / "run.dcd"


def test_dcd_cut_to_half_its_bytes_raises(run, tmp_path):
    path = copy_run(run, tmp_path / "cut")
    assert load_trajectory(path).n_frames == 10
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(TrajectoryError, match=r"cut short: its header counts 10 frames .* 4 whole frames"):
        load_trajectory(path)


def test_dcd_with_more_frames_than_its_header_raises(run, tmp_path):
    path = copy_run(run, tmp_path / "more")
    data = path.read_bytes()
    frame = (len(data) - 276) // 10
    path.write_bytes(data + data[-frame:])
    with pytest.raises(TrajectoryError, match="holds more than its header says: 11 whole frames"):
        load_trajectory(path)


def other_molecules_pdb(path):
    """A PDB of 22 atoms that are not alanine dipeptide: 7 waters and a sodium ion."""
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(7):
        residue = topology.addResidue("HOH", chain)
        for name, element in (("O", app.element.oxygen), ("H1", app.element.hydrogen), ("H2", app.element.hydrogen)):
            topology.addAtom(name, element, residue)
    topology.addAtom("NA", app.element.sodium, topology.addResidue("NA", chain))
    with open(path, "w") as handle:
        app.PDBFile.writeFile(topology, np.zeros((22, 3)) * unit.nanometer, handle)
    return path


def test_topology_of_other_atoms_is_refused(run, vacuum, tmp_path):
    trajectory = load_trajectory(run)
    check_topology(trajectory, vacuum)                        # its own topology passes, as mdtraj or OpenMM
    check_topology(vacuum.topology, vacuum)
    assert trajectory_positions(trajectory, vacuum).shape == (10, 22, 3)
    wrong = load_trajectory(run, top=other_molecules_pdb(tmp_path / "water.pdb"))  # 22 atoms: mdtraj reads it
    with pytest.raises(TrajectoryError, match=r"not those of the system ala2-vacuum: atom 0 is O .*instead of H"):
        trajectory_positions(wrong, vacuum)
    with pytest.raises(TrajectoryError, match="has 2269 atoms but the system ala2-vacuum 22"):
        check_topology(systems.load("ala2-explicit").topology, vacuum)
    with pytest.raises(TrajectoryError, match="toy system 'three-well', not of 'ring'"):
        check_topology(cvplug.trajectory.ToyTrajectory(np.zeros((2, 2)), np.zeros(2), "three-well", 300.0),
                       systems.load("ring"))


def test_pdb_with_ter_and_end_before_its_atoms_is_a_trajectory_error(run, tmp_path):
    pdb = tmp_path / "ter.pdb"
    pdb.write_text("TER\nEND\n" + run.with_suffix(".pdb").read_text())
    with pytest.raises(TrajectoryError, match="cannot read the topology .*ter.pdb.*TER or END before the atoms"):
        load_trajectory(run, top=pdb)


def test_trajectory_in_a_non_ascii_folder_is_written_and_read_back(vacuum, tmp_path):
    from cvplug.simulate import simulate

    path = simulate(vacuum, 40, tmp_path / "lé arn" / "run", report_every=10, platform="Reference", progress=False)
    assert "lé arn" in str(path)
    trajectory = load_trajectory(path)
    assert trajectory.n_frames == 4 and trajectory.n_atoms == 22
    assert trajectory_positions(trajectory, vacuum).shape == (4, 22, 3)


# -- 13. bridge ----------------------------------------------------------------------------------------------------

def test_bridge_refuses_an_empty_batch(vacuum):
    from cvplug.bridge import OpenMMEnergy

    with OpenMMEnergy(vacuum, platform="Reference", batch_strategy="single") as energy:
        with pytest.raises(ValueError, match="batch is empty"):
            energy(torch.zeros(0, 22, 3, dtype=torch.float64))


@pytest.mark.parametrize("strategy", ["single", "replicated"])
def test_far_translated_sample_keeps_its_energy_on_the_single_precision_cpu_platform(vacuum, strategy):
    from cvplug.bridge import OpenMMEnergy

    x = torch.tensor(vacuum.positions)[None].repeat(2, 1, 1)
    x[1] += 1e6  # nm: float32 resolves 0.06 nm there
    x.requires_grad_()
    with OpenMMEnergy(vacuum, platform="CPU", batch_strategy=strategy, threads=1) as energy:
        assert energy.recentre
        u = energy(x)
    u.sum().backward()
    assert u[0].item() == pytest.approx(-35.3, abs=0.05)
    assert u[1].item() == pytest.approx(u[0].item(), abs=1e-4)
    np.testing.assert_allclose(x.grad[1].numpy(), x.grad[0].numpy(), atol=1e-3 * x.grad[0].abs().max().item())


def test_position_dependent_systems_are_not_recentred():
    from cvplug.bridge import OpenMMEnergy

    toy = systems.load("double-well")  # a CustomExternalForce: its energy depends on where the particle is
    with OpenMMEnergy(toy, platform="CPU", batch_strategy="single", threads=1) as energy:
        assert not energy.recentre
        u = energy(torch.tensor([[[0.0, 0.0, 0.0]], [[2.0, 0.0, 0.0]]], dtype=torch.float64))
    assert u[0].item() != pytest.approx(u[1].item())
