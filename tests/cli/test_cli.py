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
