import mdtraj
import numpy as np
import pytest

from cvplug import systems
from cvplug.simulate import simulate
from cvplug.trajectory import TrajectoryError, load_trajectory


def test_molecular_trajectory_is_read_by_mdtraj(tmp_path):
    path = simulate(systems.load("ala2-vacuum"), 400, tmp_path / "run", report_every=100, platform="Reference",
                    progress=False)
    traj = mdtraj.load(str(path), top=str(tmp_path / "run.pdb"))
    assert traj.n_frames == 4 and traj.n_atoms == 22
    assert load_trajectory(path).n_frames == 4


def test_same_seed_same_trajectory_other_seed_differs(tmp_path):
    runs = [load_trajectory(simulate(systems.load("ala2-vacuum"), 200, tmp_path / f"s{i}-{seed}", report_every=100,
                                     seed=seed, platform="Reference", progress=False)).xyz
            for i, seed in enumerate([5, 5, 6])]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 1e-3


def test_toy_trajectory_format(tmp_path):
    path = simulate(systems.load("three-well"), 1000, tmp_path / "tw.npz", report_every=10, progress=False)
    traj = load_trajectory(path)
    assert path.suffix == ".npz" and traj.x.shape == (100, 2) and traj.system == "three-well"
    assert traj.temperature == pytest.approx(120.27, abs=0.01)
    np.testing.assert_allclose(np.diff(traj.time), 0.01)


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    spec = systems.load("three-well")
    simulate(spec, 500, tmp_path / "r.npz", report_every=10, progress=False)  # "interrupted" after 500 steps
    traj = load_trajectory(simulate(systems.load("three-well"), 1000, tmp_path / "r.npz", report_every=10,
                                    progress=False))
    assert len(traj) == 100
    np.testing.assert_allclose(np.diff(traj.time), 0.01)
    steps = np.linalg.norm(np.diff(traj.x, axis=0), axis=1)
    assert steps[49] < 5 * np.median(steps)  # no jump back to the start at the resume point


@pytest.mark.parametrize("system,file", [("ala2-vacuum", "run.dcd"), ("three-well", "run.npz")])
def test_run_stopped_between_checkpoints_resumes_without_gap_or_duplicate(tmp_path, system, file):
    """Stopped after stepping to frame 7 but before writing it (checkpoint at frame 5, 6 frames on disk): the
    next run starts again from frame 5, and the trajectory ends with exactly one frame per report."""
    from cvplug.simulate import make_simulation

    spec = systems.load(system)
    simulation = make_simulation(spec, "Reference")

    def advance(steps):
        simulation.step(steps)
        if simulation.currentStep == 70:
            raise KeyboardInterrupt

    def coordinates(trajectory):
        return trajectory.xyz if file.endswith(".dcd") else trajectory.x

    with pytest.raises(KeyboardInterrupt):
        simulate(spec, 100, tmp_path / "run", report_every=10, checkpoint_every=5, simulation=simulation,
                 advance=advance, progress=False)
    stopped = coordinates(load_trajectory(tmp_path / file))
    assert len(stopped) == 6
    resumed = coordinates(load_trajectory(simulate(systems.load(system), 100, tmp_path / "run", report_every=10,
                                                   platform="Reference", progress=False)))
    assert len(resumed) == 10
    np.testing.assert_array_equal(resumed[:5], stopped[:5])


def test_trajectory_with_wrong_topology_is_refused(tmp_path):
    path = simulate(systems.load("ala2-vacuum"), 100, tmp_path / "a", report_every=100, platform="Reference",
                    progress=False)
    other = systems.load("ala2-explicit")
    pdb = tmp_path / "water.pdb"
    import openmm.app as app
    import openmm.unit as unit
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(other.topology, other.positions * unit.nanometer, handle)
    with pytest.raises(TrajectoryError, match="cannot read"):
        load_trajectory(path, top=pdb)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple"):
        simulate(systems.load("ring"), 105, tmp_path / "x.npz", report_every=10)
    with pytest.raises(ValueError, match="platform"):
        simulate(systems.load("ring"), 100, tmp_path / "x.npz", report_every=10, platform="Quantum")


def test_blow_up_gives_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    import openmm

    from cvplug.simulate import SimulationError, make_simulation

    simulate(systems.load("ala2-vacuum"), 100, tmp_path / "a", report_every=50, progress=False)
    good = (tmp_path / "a.state.xml").read_text()
    spec = systems.load("ala2-vacuum")  # the same run (a changed spec.timestep would be another run, refused) …
    exploding = make_simulation(spec, integrator=openmm.LangevinMiddleIntegrator(300, 1, 0.1))  # … 0.1 ps steps
    with pytest.raises(SimulationError, match="blew up"):
        simulate(spec, 5000, tmp_path / "a", report_every=50, progress=False, simulation=exploding)
    assert (tmp_path / "a.state.xml").read_text() == good
