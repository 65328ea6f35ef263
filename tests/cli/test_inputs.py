"""Your own system through the command line: every input reaches MD, and bad input is one line, exit 2, no MD."""
import subprocess
import sys

import numpy as np
import pytest

from cvplug import load_cv
from cvplug.cli import main
from cvplug.systems.alanine import data_file

PDB = data_file("alanine-dipeptide", "pdb")
PRMTOP, CRD = data_file("alanine-dipeptide", "prmtop"), data_file("alanine-dipeptide", "crd")
EXPLICIT_CRD = data_file("alanine-dipeptide-explicit", "crd")
TINY = ["--rounds", "1", "--steps", "200", "--report-every", "20", "--platform", "Reference"]



@pytest.mark.parametrize("argv, words", [
    (["--system", "molecule.xyz"], ["'.xyz'"]),
    (["--system", PRMTOP, "--positions", "missing.crd"], ["missing.crd"]),
    (["--system", PRMTOP, "--positions", EXPLICIT_CRD], ["22", "2269", "atom counts"]),
    (["--system", PDB, "--forcefield", "amber14/tip3pfb.xml"], ["ACE"]),
    (["--system", PRMTOP, "--positions", CRD, "--features", "positions:name XYZ"], ["name XYZ"]),
    (["--system", PRMTOP, "--positions", CRD, "--features", "bogus:1,2"], ["bogus"]),
    (["--system", PRMTOP, "--positions", CRD, "--option", "no_such_option=3"], ["no_such_option", "dynae"]),
    (["--system", PRMTOP, "--positions", CRD, "--method", "rkl", "--features", "torsions:4,6,8"], ["4,6,8"]),
])
def test_bad_input_is_one_line_exit_2_before_any_md(tmp_path, capsys, argv, words, cli_error):
    out = tmp_path / "run"
    if argv[1] == "molecule.xyz":
        (tmp_path / "molecule.xyz").write_text("1\n\nC 0 0 0\n")
        argv = ["--system", str(tmp_path / "molecule.xyz")]
    cli_error(["learn", *argv, *TINY, "--out", str(out)], *words)
    assert not (out / "round_0").exists() and not (out / "run.toml").exists()


def test_out_of_range_numbers_are_refused_at_parse_time(capsys):
    for argv in (["--steps", "0"], ["--height", "nan"], ["--bias-factor", "-2"], ["--report-every", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["learn", "--system", "ala2-vacuum", "--out", "never", *argv])
        assert exit_info.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_learn_from_a_pdb_and_force_field_then_bias_with_its_cv(tmp_path, capsys):
    """Alanine dipeptide built from its PDB with amber14-all.xml (vacuum), TICA, two short rounds; the round-1 CV
    biases the same system through `cvplug bias`. The run file it writes repeats the run."""
    system = ["--system", PDB, "--forcefield", "amber14-all.xml"]
    assert main(["learn", *system, "--method", "tica", "--rounds", "2", "--steps", "400", "--report-every", "20",
                 "--frequency", "100", "--platform", "Reference", "--out", str(tmp_path / "learn")]) == 0
    out = capsys.readouterr().out
    assert "round 1:" in out and "ns/day" in out and "φ > 0" in out
    cv = tmp_path / "learn" / "round_1" / "cv.pt"
    assert load_cv(cv).metadata["features"]["type"] == "dihedrals"  # a peptide's default: backbone torsions
    assert main(["bias", *system, "--cv", str(cv), "--steps", "200", "--report-every", "20", "--frequency", "100",
                 "--platform", "Reference", "--out", str(tmp_path / "bias")]) == 0
    colvar = np.loadtxt(tmp_path / "bias" / "colvar.dat")
    assert colvar.shape == (10, 4) and colvar[-1, -1] > 0
    # the written run file alone repeats the run: a second call finds every round done
    assert main(["learn", "--config", str(tmp_path / "learn" / "run.toml")]) == 0
    assert "round 1:" in capsys.readouterr().out


def test_config_file_with_command_line_override(tmp_path, capsys, cli_error):
    config = tmp_path / "run.toml"
    config.write_text(f'system = "three-well"\nmethod = "tica"\nrounds = 1\nsteps = 300\nreport_every = 10\n'
                      f'n_components = 1\nplatform = "Reference"\nout = "{tmp_path / "a"}"\n')
    assert main(["learn", "--config", str(config), "--steps", "200"]) == 0
    assert "steps = 200" in (tmp_path / "a" / "run.toml").read_text()
    assert len(np.load(tmp_path / "a" / "round_0" / "trajectory.npz")["x"]) == 20
    capsys.readouterr()
    config.write_text('stepz = 3\n')
    cli_error(["learn", "--config", str(config), "--out", str(tmp_path / "b")], "stepz")
    config.write_text('steps = 0\n')
    cli_error(["learn", "--config", str(config), "--system", "three-well", "--out", str(tmp_path / "b")],
           "steps")
    config.write_text('range = [[-1, 0, 1]]\n')  # ranges are "LOWER:UPPER" or [LOWER, UPPER]
    cli_error(["bias", "--config", str(config), "--system", "three-well", "--cv", "cv.pt", "--out",
               str(tmp_path / "b")], "range", "LOWER:UPPER")


def test_methods_lists_needs_and_options():
    result = subprocess.run([sys.executable, "-m", "cvplug.cli", "methods"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("dynae", "tica", "nct", "flowvae", "rkl"):
        assert f"{name}:" in result.stdout
    assert "needs: the system's force field" in result.stdout and "epochs=" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("method, options", [
    ("dynae", ["epochs=2"]), ("flowvae", ["epochs=2"]), ("nct", ["steps=20", "layers=2", "hidden=16"]),
    ("rkl", ["steps_per_stage=2", "final_steps=4", "batch_size=32", "max_step=0.2"]), ("tica", []),
])
def test_every_method_learns_through_the_cli_and_its_cv_biases(tmp_path, method, options):
    """Alanine dipeptide from its PDB with amber14-all.xml (vacuum): `cvplug learn --method M --rounds 2`
    completes and the CV of round 1 biases the system through `cvplug bias` (budgets cut to a few seconds)."""
    system = ["--system", PDB, "--forcefield", "amber14-all.xml"]
    flags = [f for option in options for f in ("--option", option)]
    assert main(["learn", *system, "--method", method, *flags, "--rounds", "2", "--steps", "1000",
                 "--report-every", "20", "--out", str(tmp_path / "learn")]) == 0
    cv = tmp_path / "learn" / "round_1" / "cv.pt"
    assert load_cv(cv).method == method
    assert main(["bias", *system, "--cv", str(cv), "--steps", "500", "--report-every", "50", "--frequency", "100",
                 "--out", str(tmp_path / "bias")]) == 0
    assert np.loadtxt(tmp_path / "bias" / "colvar.dat").shape[0] == 10


@pytest.mark.slow
def test_trpzip2_in_water_learns_end_to_end_and_stores_the_peptide_only(tmp_path, capsys):
    """trpzip2 (11,034 atoms, old-format prmtop): 3 short DynAE rounds on the backbone torsions write a CV, the
    FES along it and a summary per round; trajectories hold the 218 peptide atoms (2.7 KB a frame, not 132 KB)."""
    import json
    from importlib import resources

    import mdtraj

    folder = resources.files("cvplug.systems") / "data" / "trpzip2-explicit"
    out = tmp_path / "trpzip2"
    assert main(["learn", "--system", str(folder / "trpzip2.prmtop"), "--positions", str(folder / "trpzip2.crd"),
                 "--no-minimize", "--features", "backbone-torsions", "--method", "dynae", "--option", "epochs=2",
                 "--rounds", "3", "--steps", "200", "--report-every", "10", "--frequency", "50",
                 "--out", str(out)]) == 0
    assert "round 2:" in capsys.readouterr().out
    for k in range(3):
        round_dir = out / f"round_{k}"
        assert load_cv(round_dir / "cv.pt").metadata["n_atoms"] == 11034
        summary = json.loads((round_dir / "summary.json").read_text())
        assert summary["frames"] == 20 and len(summary["phi_positive_fraction"]) == 11
        assert (round_dir / "fes_cv.png").exists()
        frames = mdtraj.load(str(round_dir / "trajectory.dcd"), top=str(round_dir / "trajectory.pdb"))
        assert frames.n_atoms == 218 and frames.n_frames == 20
