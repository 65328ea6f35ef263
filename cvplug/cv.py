"""The CollectiveVariable: features → normalization → encoder, exported as one TorchScript file.

A CV maps the positions of the whole system (nm; [n_atoms, 3] as OpenMM hands them to a TorchForce, or
[batch, n_atoms, 3]) to d components ([d] or [batch, d]). It computes in the dtype of its encoder
and returns that dtype; positions of any float dtype are accepted.

>>> import torch
>>> from cvplug.features import Dihedrals
>>> cv = CollectiveVariable(Dihedrals([(4, 6, 8, 14), (6, 8, 14, 16)]), torch.nn.Identity(), n_atoms=22,
...                         names=["phi", "psi"], periodic=[(-torch.pi, torch.pi)] * 2, units="rad")
>>> cv(torch.randn(22, 3)).shape
torch.Size([2])

``cv.export(path)`` writes a single TorchScript file whose metadata (atoms, features, periodicity, units,
method, versions) travels inside it; :func:`load_cv` reads it back and gives bit-identical outputs.

Integrity: torch does not check the CRCs of the zip it reads, so a CV file with one flipped bit in a weight would
load and give other values. :meth:`CollectiveVariable.export` therefore stores a SHA-256 checksum in the metadata
(``metadata["checksum"]``, see :func:`file_checksum` for exactly what it covers) and :func:`load_cv` recomputes it
and raises :class:`CVFileError` on a mismatch.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from .features import Feature
from .runs import write_atomic

ANGLE = (-math.pi, math.pi)  # the period of a dihedral component, radians

__all__ = ["ANGLE", "CollectiveVariable", "Normalization", "LoadedCV", "CVFileError", "load_cv", "file_checksum",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
_METADATA_KEY = "cvplug.json"
CHECKSUM_ALGORITHM = "sha256"
# zip entries the checksum leaves out: the extra files (the metadata is hashed in canonical form instead) and
# torch's serialization id (derived from all records, extra files included)
_UNHASHED = ("extra/", ".data/serialization_id")


class CVFileError(ValueError):
    """A CV file that cannot be read: damaged, truncated, or not written by cvplug."""


class Normalization(nn.Module):
    """(x − mean) / std with the statistics stored as buffers (so they export with the CV)."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        if mean.shape != std.shape or mean.dim() != 1:
            raise ValueError(f"mean and std must be 1D of equal length, got {tuple(mean.shape)}, {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("std must be positive; constant features should get std = 1")
        self.register_buffer("mean", mean.to(torch.get_default_dtype()))
        self.register_buffer("std", std.to(torch.get_default_dtype()))

    @classmethod
    def identity(cls, n: int) -> "Normalization":
        return cls(torch.zeros(n), torch.ones(n))

    @classmethod
    def fit(cls, features: Tensor, eps: float = 1e-8) -> "Normalization":
        """Statistics of a feature matrix [n_samples, n_features]; features with std < eps get std = 1."""
        std = features.std(dim=0)
        return cls(features.mean(dim=0), torch.where(std < eps, torch.ones_like(std), std))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class _CVModule(nn.Module):
    """What is exported: the pipeline plus the single/batch handling and the dtype cast."""

    def __init__(self, pipeline: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.pipeline = pipeline
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=dtype))

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tensor:
        x = positions.to(self.dtype_probe.dtype)
        if x.dim() == 2:
            return self.pipeline(x.unsqueeze(0)).squeeze(0)
        return self.pipeline(x)


class CollectiveVariable(_CVModule):
    """A d-component collective variable: ``encoder(normalization(features(positions)))``.

    Parameters
    ----------
    features : a :class:`cvplug.features.Feature` (it selects its own atoms).
    encoder : any torch module mapping [batch, features.n_out] → [batch, d].
    n_atoms : number of particles of the system the CV is made for (checked when attached).
    normalization : input statistics; default identity. See :meth:`Normalization.fit`.
    names : component names (default cv0, cv1, …).
    periodic : per component, None or its period as (lower, upper), e.g. (−π, π) for an angle.
    units : units of the outputs, e.g. "rad", "nm" or "dimensionless".
    method : the method that made the CV (``"dynae"``, ``"analytic"``, …).
    periodic_box : whether the system the CV was made for is periodic.
    info : anything JSON-able to keep with the CV (training settings, suggested bias ranges …).
    """

    def __init__(self, features: Feature, encoder: nn.Module, n_atoms: int,
                 normalization: Optional[Normalization] = None, names: Optional[Sequence[str]] = None,
                 periodic: Optional[Sequence[Optional[tuple[float, float]]]] = None,
                 units: str = "dimensionless", method: str = "custom", periodic_box: bool = False,
                 info: Optional[dict[str, Any]] = None):
        dtype = next((p.dtype for p in encoder.parameters()), torch.get_default_dtype())
        normalization = (normalization or Normalization.identity(features.n_out)).to(dtype)
        if normalization.mean.numel() != features.n_out:
            raise ValueError(f"normalization has {normalization.mean.numel()} entries but the features give "
                             f"{features.n_out}")
        if max(features.atom_indices()) >= n_atoms:
            raise ValueError(f"the features read atom {max(features.atom_indices())} but the system has "
                             f"only {n_atoms} atoms")
        super().__init__(nn.Sequential(features, normalization, encoder), dtype)
        self.features, self.normalization, self.encoder = features, normalization, encoder
        self.n_atoms = int(n_atoms)
        with torch.no_grad():
            probe = torch.randn(2, n_atoms, 3, generator=torch.Generator().manual_seed(0))
            out = self(probe)
        if out.dim() != 2 or out.shape[0] != 2:
            raise ValueError(f"the encoder must map [batch, {features.n_out}] to [batch, d]; "
                             f"it returned shape {tuple(out.shape)} for a batch of 2")
        self.n_components = out.shape[1]
        self.names = list(names) if names is not None else [f"cv{i}" for i in range(self.n_components)]
        self.periodic = list(periodic) if periodic is not None else [None] * self.n_components
        if len(self.names) != self.n_components or len(self.periodic) != self.n_components:
            raise ValueError(f"the CV has {self.n_components} components but got {len(self.names)} names and "
                             f"{len(self.periodic)} periodicity entries")
        self.units, self.method, self.periodic_box = units, method, bool(periodic_box)
        self.info = dict(info or {})

    def calibrate(self, positions: Tensor, margin: float = 0.2) -> dict:
        """Record suggested bias ranges and Gaussian widths from CV values on ``positions`` [N, n_atoms, 3].

        Non-periodic components get the observed range widened by ``margin`` of its span on both sides;
        widths are half the observed standard deviation (the usual metadynamics choice). Stored in ``info``.
        """
        with torch.no_grad():
            values = self(torch.as_tensor(positions)).double().numpy()
        ranges, widths = [], []
        for k, period in enumerate(self.periodic):
            lo, hi = float(values[:, k].min()), float(values[:, k].max())
            span = max(hi - lo, 1e-6)
            ranges.append(list(period) if period is not None else [lo - margin * span, hi + margin * span])
            widths.append(0.5 * float(values[:, k].std()) or 0.05 * span)
        self.info.update(bias_range=ranges, bias_width=widths)
        return {"bias_range": ranges, "bias_width": widths}

    @property
    def metadata(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "cvplug_version": _version(),
            "torch_version": torch.__version__,
            "method": self.method,
            "n_atoms": self.n_atoms,
            "atoms": self.features.atom_indices(),
            "features": self.features.describe(),
            "n_components": self.n_components,
            "names": self.names,
            "periodic": [list(map(float, p)) if p is not None else None for p in self.periodic],
            "units": self.units,
            "periodic_box": self.periodic_box,
            "dtype": str(self.dtype_probe.dtype).replace("torch.", ""),
            "info": self.info,
        }

    def compiled(self, example: Optional[Tensor] = None) -> torch.jit.ScriptModule:
        """This CV as a TorchScript module: scripted, or traced on ``example`` positions where scripting fails
        (e.g. zuko flows). A traced pipeline is checked against the eager one on a second batch."""
        try:
            return torch.jit.script(_CVModule(self.pipeline, self.dtype_probe.dtype))
        except Exception as script_error:  # TorchScript raises many types; fall back to tracing
            if example is None:
                example = torch.randn(4, self.n_atoms, 3, generator=torch.Generator().manual_seed(1))
            example = torch.as_tensor(example).to(self.dtype_probe.dtype)
            if example.dim() == 2:
                example = example.unsqueeze(0)
            try:
                traced = torch.jit.trace(self.pipeline, example)
            except Exception as trace_error:
                raise ValueError(f"the CV can be neither scripted ({script_error}) nor traced ({trace_error})") \
                    from trace_error
            check = example[:1] + 0.01 * torch.randn_like(example[:1])
            if not torch.allclose(traced(check), self.pipeline(check), rtol=1e-5, atol=1e-6):
                raise ValueError("the traced CV disagrees with the eager one: it has input-dependent control flow")
            return torch.jit.script(_CVModule(traced, self.dtype_probe.dtype))

    def export(self, path, example: Optional[Tensor] = None) -> Path:
        """Write the CV with its metadata to one TorchScript file; returns the path.

        The metadata carries ``checksum``: the SHA-256 of the TorchScript payload and of the rest of the
        metadata (:func:`file_checksum`), verified by :func:`load_cv`. The file appears complete or not at all
        (written beside ``path`` and renamed).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        module = self.compiled(example)
        payload = io.BytesIO()
        torch.jit.save(module, payload)
        metadata = json.loads(json.dumps(self.metadata))  # as load_cv will see it (tuples → lists, keys → str)
        metadata["checksum"] = {"algorithm": CHECKSUM_ALGORITHM,
                                "value": _checksum(_zip_entries(payload), metadata)}
        expected = metadata["checksum"]["value"]

        def check(temporary: Path) -> None:
            if file_checksum(temporary) != expected:  # TorchScript serialised differently the second time
                raise RuntimeError(f"writing {path}: the TorchScript payload changed between two saves; "
                                   "cannot give the file a valid checksum")

        # a file object, so that the archive's top folder is "archive"
        write_atomic(path, lambda handle: torch.jit.save(module, handle,
                                                         _extra_files={_METADATA_KEY: json.dumps(metadata)}),
                     verify=check)
        return path


class LoadedCV:
    """A CV read from a file: the TorchScript ``module`` and its ``metadata`` dict. Call it like the CV."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: dict, path: Optional[Path] = None):
        self.module, self.metadata, self.path = module, metadata, path

    def __call__(self, positions: Tensor) -> Tensor:
        return self.module(positions)

    def compiled(self, example: Optional[Tensor] = None) -> torch.jit.ScriptModule:
        return self.module

    def __getattr__(self, name):  # n_atoms, names, periodic, units, method, n_components, info …
        try:
            return self.__dict__["metadata"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return (f"LoadedCV({self.path}, method={self.method!r}, components={self.names}, "
                f"n_atoms={self.n_atoms})")


def load_cv(path) -> LoadedCV:
    """Read a CV written by :meth:`CollectiveVariable.export`; a damaged file raises :class:`CVFileError`.

    The checksum in the metadata (:func:`file_checksum`) is recomputed and compared: a file changed after it was
    written (one flipped bit in a weight, in the code or in the metadata) raises :class:`CVFileError`. Files
    written before checksums existed (no ``checksum`` in their metadata) still load, unchecked.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CV file at {path}")
    extra = {_METADATA_KEY: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:
        raise CVFileError(f"{path} is not a readable TorchScript CV file (damaged or truncated?): "
                          f"{str(error).splitlines()[0]}") from error
    if not extra[_METADATA_KEY]:
        raise CVFileError(f"{path} is TorchScript but carries no cvplug metadata; write CVs with "
                          "CollectiveVariable.export")
    try:
        metadata = json.loads(extra[_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CVFileError(f"the metadata in {path} is not valid JSON: {error}") from error
    if metadata.get("format") != FORMAT_VERSION:
        raise CVFileError(f"{path} has CV format {metadata.get('format')}; this cvplug reads format "
                          f"{FORMAT_VERSION}")
    _verify_checksum(path, metadata)
    return LoadedCV(module, metadata, path)


def file_checksum(path) -> str:
    """The checksum of the CV file at ``path`` as :meth:`CollectiveVariable.export` defines it (hex SHA-256).

    It covers every record of the TorchScript zip archive except its extra files and torch's
    ``.data/serialization_id``: for each record, in order of its name without the archive's top folder, the
    name (UTF-8), a NUL byte, its size (8 bytes, little-endian) and its bytes; then the name ``cvplug.json``,
    a NUL byte and the metadata without its ``checksum`` entry as canonical JSON (``json.dumps(...,
    sort_keys=True)``, UTF-8). So it is independent of the file's name and of the zip's layout, and any
    change to the weights, the code or the metadata changes it. Raises :class:`CVFileError` if the file is
    not a readable zip (this also checks the zip's CRCs, which torch does not).
    """
    path = Path(path)
    try:
        entries = _zip_entries(path)
        metadata = json.loads(next(content for name, content in entries.items() if name == "extra/" + _METADATA_KEY))
    except StopIteration:
        raise CVFileError(f"{path} carries no cvplug metadata") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise CVFileError(f"{path} is damaged: {error}") from error
    return _checksum(entries, metadata)


def _zip_entries(source) -> dict[str, bytes]:
    """The records of a TorchScript zip by name without the archive's top folder (CRCs checked by zipfile)."""
    with zipfile.ZipFile(source) as archive:
        return {info.filename.split("/", 1)[-1]: archive.read(info) for info in archive.infolist()
                if not info.is_dir()}


def _checksum(entries: dict[str, bytes], metadata: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(entries):
        if name.startswith(_UNHASHED):
            continue
        content = entries[name]
        digest.update(name.encode() + b"\0" + len(content).to_bytes(8, "little"))
        digest.update(content)
    canonical = json.dumps({k: v for k, v in metadata.items() if k != "checksum"}, sort_keys=True)
    digest.update(_METADATA_KEY.encode() + b"\0" + canonical.encode())
    return digest.hexdigest()


def _verify_checksum(path: Path, metadata: dict) -> None:
    """Raise CVFileError unless the file's checksum matches its metadata; files without one are not checked."""
    stored = metadata.get("checksum")
    if stored is None:
        return
    if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM or "value" not in stored:
        raise CVFileError(f"{path} has a checksum this cvplug cannot check ({stored!r}); the file is damaged or "
                          f"was written by another program")
    found = file_checksum(path)
    if found != stored["value"]:
        raise CVFileError(f"{path} is damaged: its contents do not match the checksum in its metadata "
                          f"(SHA-256 {found[:12]}… instead of {str(stored['value'])[:12]}…); export the CV again "
                          "or restore the file from a copy")


def _version() -> str:
    from . import __version__
    return __version__

