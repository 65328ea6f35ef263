import subprocess
import sys

import pytest

from cvplug.cli import build_parser, main

COMMANDS = ["simulate", "bias", "learn", "demo", "info", "systems", "methods"]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cvplug " + command in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "cvplug.cli", "systems"], capture_output=True, text=True)
    assert result.returncode == 0 and "ala2-implicit" in result.stdout


def test_corrupt_cv_file_gives_a_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "cv.pt"
    bad.write_bytes(b"\x00" * 64)
    assert main(["bias", "--system", "ala2-implicit", "--cv", str(bad), "--steps", "500"]) == 2
    err = capsys.readouterr().err
    assert "cvplug bias: error:" in err and "damaged or truncated" in err


def test_range_parser_rejects_bad_ranges():
    parser = build_parser()
    assert parser.parse_args(["bias", "--system", "s", "--cv", "c", "--range=-1:2.5"]).range == [(-1.0, 2.5)]
    with pytest.raises(SystemExit):
        parser.parse_args(["bias", "--system", "s", "--cv", "c", "--range", "3:1"])


def test_info_prints_metadata(tmp_path, capsys):
    import torch
    from cvplug import CollectiveVariable
    from cvplug.features import Cartesians

    path = CollectiveVariable(Cartesians([0], components=(0,)), torch.nn.Identity(), n_atoms=1,
                              method="toy").export(tmp_path / "x.pt")
    assert main(["info", str(path)]) == 0
    assert '"method": "toy"' in capsys.readouterr().out


@pytest.mark.parametrize("engine, force", [("hills", "PythonForce"), ("openmm", "CustomCVForce")])
def test_cvplug_bias_reaches_the_bias_force_through_each_file_once(engine, force, tmp_path, mlp_cv, monkeypatch,
                                                                   one_thread):
    """The layout's walk: from ``cvplug bias`` to the bias force added to the OpenMM System, the call stack goes
    through each file of the package once, starting at the CLI (no return to a file it has left)."""
    import traceback
    from pathlib import Path

    import openmm
    import torch

    import cvplug

    cv_file = tmp_path / "cv.pt"
    mlp_cv(torch.float32).export(cv_file)
    stacks, add_force = {}, openmm.System.addForce

    def recording(system, added):
        stacks[type(added).__name__] = [Path(frame.filename) for frame in traceback.extract_stack()[:-1]]
        return add_force(system, added)

    monkeypatch.setattr(openmm.System, "addForce", recording)
    assert main(["bias", "--system", "ala2-implicit", "--cv", str(cv_file), "--steps", "20", "--report-every", "10",
                 "--range=-3:3", "--range=-3:3", "--engine", engine, "--out", str(tmp_path / "out")]) == 0
    package = Path(cvplug.__file__).parent
    inside = [path for path in stacks[force] if path.is_relative_to(package)]
    walk = [path for i, path in enumerate(inside) if i == 0 or path != inside[i - 1]]
    assert walk[0].name == "cli.py" and len(walk) >= 3
    assert len(walk) == len(set(walk)), f"the walk returns to a file: {[str(p.relative_to(package)) for p in walk]}"
