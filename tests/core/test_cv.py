import json
import zipfile

import pytest
import torch

import cvplug
from cvplug import CVFileError, CollectiveVariable, Normalization, load_cv
from cvplug.cv import ANGLE
from cvplug.features import Cartesians, Dihedrals, PairwiseDistances




@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_round_trip_is_bit_identical(tmp_path, dtype, mlp_cv):
    cv = mlp_cv(dtype)
    loaded = load_cv(cv.export(tmp_path / "cv.pt"))
    x = torch.randn(7, 22, 3, dtype=torch.float64)
    assert torch.equal(loaded(x), cv(x))
    assert torch.equal(loaded(x[3]), cv(x[3]))
    torch.testing.assert_close(loaded(x[3]), loaded(x)[3])
    assert loaded(x).dtype == dtype


def test_metadata_travels_inside_the_file(tmp_path):
    cv = CollectiveVariable(Dihedrals([(4, 6, 8, 14), (6, 8, 14, 16)]), torch.nn.Identity(), n_atoms=22,
                            names=["phi", "psi"], periodic=[ANGLE, ANGLE], units="rad", method="analytic")
    loaded = load_cv(cv.export(tmp_path / "phipsi.pt"))
    assert loaded.n_atoms == 22 and loaded.names == ["phi", "psi"] and loaded.units == "rad"
    assert loaded.atoms == [4, 6, 8, 14, 16]
    assert loaded.periodic == [list(ANGLE), list(ANGLE)]
    assert loaded.features["quadruplets"] == [[4, 6, 8, 14], [6, 8, 14, 16]]
    assert loaded.method == "analytic" and loaded.cvplug_version == cvplug.__version__


def test_calibrate_suggests_bias_ranges(tmp_path, mlp_cv):
    cv = mlp_cv()
    values = cv(torch.randn(100, 22, 3, dtype=torch.float64))
    suggestion = cv.calibrate(torch.randn(100, 22, 3, dtype=torch.float64))
    (lo, hi), width = suggestion["bias_range"][0], suggestion["bias_width"][0]
    assert lo < values[:, 0].min().item() < values[:, 0].max().item() < hi or width > 0
    assert load_cv(cv.export(tmp_path / "c.pt")).info["bias_range"] == suggestion["bias_range"]


def test_unscriptable_encoder_is_traced_and_checked(tmp_path):
    class PythonOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = lambda t: 2.0 * t  # TorchScript cannot compile a lambda attribute

        def forward(self, x):
            return self.scale(x[:, :2])

    cv = CollectiveVariable(Cartesians([0, 1]), PythonOnly(), n_atoms=2)
    with pytest.raises(Exception):
        torch.jit.script(cv.encoder)
    loaded = load_cv(cv.export(tmp_path / "traced.pt"))
    x = torch.randn(3, 2, 3)
    assert torch.equal(loaded(x), cv(x))


def test_encoder_with_wrong_output_shape_is_refused():
    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum()

    with pytest.raises(ValueError, match="batch"):
        CollectiveVariable(Cartesians([0]), Flat(), n_atoms=1)


def test_features_beyond_the_system_are_refused():
    with pytest.raises(ValueError, match="only 10 atoms"):
        CollectiveVariable(Dihedrals([(4, 6, 8, 14)]), torch.nn.Identity(), n_atoms=10)


def test_corrupt_files_raise_clear_errors(tmp_path, mlp_cv):
    good = mlp_cv().export(tmp_path / "good.pt")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CVFileError, match="damaged or truncated"):
        load_cv(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(CVFileError):
        load_cv(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), str(foreign))
    with pytest.raises(CVFileError, match="no cvplug metadata"):
        load_cv(foreign)
    with pytest.raises(FileNotFoundError):
        load_cv(tmp_path / "missing.pt")


def test_future_format_is_refused(tmp_path, mlp_cv):
    path = mlp_cv().export(tmp_path / "cv.pt")
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/cvplug.json"))
        entries = {n: archive.read(n) for n in archive.namelist()}
    meta = json.loads(entries[name])
    meta["format"] = 99
    entries[name] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for n, content in entries.items():
            archive.writestr(n, content)
    with pytest.raises(CVFileError, match="format 99"):
        load_cv(path)
