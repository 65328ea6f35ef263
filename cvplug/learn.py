"""Learn a CV while sampling: simulate → learn → bias with the new CV → learn again, round after round.

Round 0 is unbiased MD from the system's starting positions; round k ≥ 1 is well-tempered metadynamics along the
CV learned after round k − 1, started from the final state of round k − 1. After every round the method
(:mod:`cvplug.methods`) is trained afresh on all frames gathered so far, handed over as one
:class:`cvplug.data.TrainingData`:

- time-lagged methods (DynAE, TICA) take lag pairs *within* each round's trajectory, never across rounds. In a
  biased round the pairs follow biased dynamics: the bias changes along the CV only, so short-lag pairs still
  show which way the system can move, which is what these methods need to find the slow directions;
- methods that need equilibrium averages receive per-frame weights w ∝ exp(V(s)/kT) with V the final bias of
  that round (the static-bias reweighting of well-tempered metadynamics); unbiased frames have weight 1;
- data-free methods (reverse-KL) learn from the force field and may use the frames where they have a data option.

The bias is carried from round to round in memory: the hills of the earlier rounds are deposited again, in their
order, at the *new* CV values of the configurations where they were deposited (the frames at each deposition),
with the well-tempered heights this replay gives (:meth:`cvplug.metad.hills.HillsBias.redeposit`), and start
round k as the bias engine's inherited hills (kept in ``hills/inherited.npy`` for analysis), so exploration
accumulates instead of restarting with each new CV. The CV, the frames and their weights pass from round to round
as objects; files are read only to resume an interrupted run.

Each round writes ``round_<k>/``: the trajectory (the atoms of ``save_atoms`` only), ``colvar.dat``, the bias,
``cv.pt`` (the CV learned after it), ``fes_cv.npz``/``fes_cv.png`` (free energy along the learned CV, kT) and
``summary.json`` (:mod:`cvplug.report`). ``progress.json`` lists finished rounds: an interrupted run resumes at
the round it was in (the MD itself resumes from its checkpoint).

The run owns its folder (:mod:`cvplug.runs`): ``run.lock`` is locked while it runs and ``identity.json`` records
the system and the settings (all but ``rounds`` and ``platform``: asking for more rounds continues a run); a rerun
with other settings is refused unless ``overwrite=True`` moves the old folder aside. Each round's MD owns its
round folder the same way. Small state files are written atomically.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import openmm
import openmm.unit as unit
import torch

from cvplug import systems
from . import methods
from .cv import load_cv
from .data import TrainingData, full_positions
from .features import Dihedrals, Feature, default_features
from .metad import HillsBias, WellTempered, reweighting_factors, run_metadynamics, shared_reweighting_factors
from .report import plot_round_fes, round_report
from .runs import claim, move_folder_aside, positive_int, read_json, system_identity, walker_name, write_json
from .selection import default_feature_specs, parse_features, phi_quadruplets, select_atoms, solute_atoms
from .simulate import simulate
from .trajectory import load_trajectory
from .walkers import SEGMENT

__all__ = ["LearnSettings", "LearnRun", "learn", "prepare", "fit_method", "round_frames", "feature_specs",
           "resolve_features", "resolve_save_atoms"]


@dataclass(init=False)
class LearnSettings:
    """Settings of a learn run; steps are MD steps of the system's timestep.

    ``bias`` holds the metadynamics settings (:class:`cvplug.metad.WellTempered`, ``"hills"`` engine); its fields
    may also be given directly: ``LearnSettings(height=0.5)`` is ``LearnSettings(bias=WellTempered(height=0.5))``.

    >>> LearnSettings(method="tica", frequency=200).bias.frequency
    200
    """

    method: str = "dynae"
    rounds: int = 4
    steps_per_round: int = 50_000
    report_every: int = 50               # MD steps between frames used for training
    n_components: int = 2
    lag: int = 1                         # frames between the two members of a training pair
    features: tuple = ()                 # feature specs (cvplug.selection); empty: the system's default
    save_atoms: Optional[str] = None     # mdtraj selection stored in trajectories; None: all but water and ions
    seed: int = 0
    platform: str = "CPU"
    walkers: int = 1                     # metadynamics walkers per biased round (Dask tasks, cvplug.walkers)
    method_options: dict = field(default_factory=dict)
    bias: WellTempered = WellTempered()  # well-tempered metadynamics of the biased rounds

    def __init__(self, bias: Optional[WellTempered] = None, **options):
        bias_options = {k: options.pop(k) for k in WellTempered.field_names() if k in options}
        own = [f for f in fields(LearnSettings) if f.name != "bias"]
        unknown = set(options) - {f.name for f in own}
        if unknown:
            raise TypeError(f"unknown learn settings: {', '.join(sorted(unknown))}")
        for f in own:
            setattr(self, f.name, options.get(f.name, f.default_factory() if f.default is MISSING else f.default))
        self.bias = WellTempered.from_options(bias, **bias_options)

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range (the bias settings check themselves)."""
        for name in ("rounds", "steps_per_round", "report_every", "n_components", "lag", "walkers"):
            positive_int(name, getattr(self, name))
        if self.bias.engine != "hills":
            raise ValueError("the learn loop carries its hills from round to round: it needs engine='hills'")
        if self.steps_per_round % self.report_every or self.bias.frequency % self.report_every:
            raise ValueError(f"steps_per_round ({self.steps_per_round}) and frequency ({self.bias.frequency}) must "
                             f"be multiples of report_every ({self.report_every})")
        if self.report_every % self.bias.stride:
            raise ValueError(f"report_every ({self.report_every}) must be a multiple of stride ({self.bias.stride})")


def feature_specs(spec, specs=()) -> list[str]:
    """The feature specs a run on ``spec`` uses: ``specs``, or the system's default (none for toys, whose
    features are their natural coordinates)."""
    if spec.toy is not None:
        if specs:
            raise ValueError("toy systems use their natural coordinates; leave features out")
        return []
    return list(specs) or default_feature_specs(spec.topology)


def resolve_features(spec, specs=()) -> Feature:
    """The CV inputs of ``spec``: the feature ``specs`` (:mod:`cvplug.selection`), or the system's default."""
    specs = feature_specs(spec, specs)
    return parse_features(specs, spec.topology, spec.positions) if specs else default_features(spec, None)


def resolve_save_atoms(spec, selection: Optional[str] = None) -> Optional[np.ndarray]:
    """Full-system indices of the atoms trajectories store (``selection``, default all but water and ions);
    None when that is every atom."""
    if spec.toy is not None:
        return None
    atoms = select_atoms(spec.topology, selection) if selection else solute_atoms(spec.topology)
    return None if len(atoms) == spec.n_atoms else np.asarray(sorted(atoms), dtype=np.int64)


def _trajectory_frames(path: Path, spec) -> np.ndarray:
    """The frames [frames, saved atoms, 3] (nm, float32) of a trajectory written by a round."""
    if spec.toy is not None:
        trajectory = load_trajectory(path.with_suffix(".npz"))
        return np.stack([spec.toy.positions(x) for x in trajectory.x]).astype(np.float32)
    return load_trajectory(path.with_suffix(".dcd")).xyz


def _matched(round_dir: Path, frames: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if len(weights) != len(frames):
        raise ValueError(f"{round_dir}: {len(weights)} colvar lines but {len(frames)} frames; the run was "
                         "interrupted between writing them — rerun the same command to complete it")
    return weights


def _state_positions(path: Path) -> np.ndarray:
    """The positions [n_atoms, 3] (nm) of an OpenMM State XML (a run's checkpoint)."""
    state = openmm.XmlSerializer.deserialize(Path(path).read_text())
    return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def _spread(values: np.ndarray, n: int, periodic) -> list[int]:
    """Indices of ``n`` rows of ``values`` [m, d] spread over them: the last row, then each time the row farthest
    from those chosen (each component divided by its standard deviation; a component with a period, given as
    (lower, upper) in ``periodic``, wrapped). Rows repeat when m < n."""
    scale = values.std(axis=0)
    scale[scale == 0] = 1.0
    periods = np.array([0.0 if p is None else p[1] - p[0] for p in periodic])

    def distance(row: np.ndarray) -> np.ndarray:
        delta = values - row
        delta -= periods * np.round(delta / np.where(periods > 0, periods, 1.0))
        return np.linalg.norm(delta / scale, axis=1)

    chosen = [len(values) - 1]
    nearest = distance(values[-1])
    while len(chosen) < n:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, distance(values[chosen[-1]]))
    return chosen


def round_frames(round_dir, spec) -> tuple[np.ndarray, np.ndarray]:
    """One finished round's frames [frames, saved atoms, 3] (nm, float32; the atoms of
    :func:`cvplug.trajectory.saved_atoms`, all for toys) and their reweighting factors (sum 1), read from its
    folder (a learn run reads them only to resume)."""
    round_dir = Path(round_dir)
    frames = _trajectory_frames(round_dir / "trajectory", spec)
    if not (round_dir / "metadynamics.json").exists():
        return frames, np.full(len(frames), 1.0 / len(frames))
    return frames, _matched(round_dir, frames, reweighting_factors(round_dir))


class _Run:
    """The state of one learn run: the system, its features, the saved atoms and the frames read so far."""

    def __init__(self, spec, out_dir: Path, settings: LearnSettings, progress: bool, overwrite: bool = False):
        self.spec, self.out_dir, self.settings, self.progress = spec, out_dir, settings, progress
        self.overwrite = overwrite
        self.features = resolve_features(spec, settings.features)
        self.atoms = resolve_save_atoms(spec, settings.save_atoms)
        self.frames: list[np.ndarray] = []   # per trajectory: round 0's, then each walker's of each round
        self.weights: list[np.ndarray] = []  # per trajectory; each round's sum to 1
        self.round_of: list[int] = []        # the round of each trajectory
        self.client = None                   # the Dask client of the walkers (settings.walkers > 1)
        self.segment = SEGMENT               # MD steps per walker task
        self.on_progress: Optional[Callable] = None  # called with each WalkerProgress
        self.cv = None  # the CV learned after the last round run
        self.method(0, None)  # options and system checked before any MD runs
        TrainingData(spec, self.features, atoms=self.atoms)  # the features read saved atoms only
        self.phi = None
        if spec.toy is None:
            quadruplets = phi_quadruplets(spec.topology)
            self.phi = Dihedrals(quadruplets) if quadruplets else None

    def method(self, k: int, work_dir) -> methods.Method:
        method = methods.create(self.settings.method, self.method_options(), seed=self.settings.seed * 1000 + k,
                                work_dir=work_dir, progress=self.progress)
        method.check(self.spec)
        if self.settings.walkers == 1:
            method.training_device()  # device=cuda without a GPU here is refused before any MD runs
        return method

    def method_options(self) -> dict:
        return {"n_components": self.settings.n_components, **self.settings.method_options}

    def train(self, k: int):
        """Train the method on all frames so far (round k's seed, checkpoints in ``round_<k>/train``): here, or
        with a cluster as one Dask task, on a worker that declares a ``GPU`` resource where one does and the
        method can train on CUDA. Returns the CV and where it trained (``train_device``, ``train_worker``)."""
        run = dict(seed=self.settings.seed * 1000 + k, work_dir=str(self.round_dir(k) / "train"))
        if self.client is None:
            return fit_method(self.settings.method, self.method_options(), self.data(), progress=self.progress,
                              **run)
        future = self.client.submit(fit_method, self.settings.method, self.method_options(), self.data(),
                                    progress=False, resources=self.training_resources(), retries=3, pure=False,
                                    **run)
        return future.result()

    def training_resources(self) -> Optional[dict]:
        """The Dask resources the training task asks for: a GPU where a worker of the cluster declares one and the
        method can train on CUDA (device not "cpu"). ``device=cuda`` with no such worker raises ValueError."""
        from .walkers import gpu_resources

        method = self.method(0, None)
        resources = gpu_resources(self.client) if "cuda" in method.devices and method.device != "cpu" else None
        if method.device == "cuda" and resources is None:
            raise ValueError("device=cuda, but no worker of the Dask cluster declares a GPU; start GPU workers "
                             "with `dask worker ADDRESS --resources GPU=1`, or set device=cpu")
        return resources

    def round_dir(self, k: int) -> Path:
        return self.out_dir / f"round_{k}"

    def walkers(self, k: int) -> int:
        """The walkers of round k: one unbiased run in round 0, ``settings.walkers`` after it."""
        return 1 if k == 0 else self.settings.walkers

    def trajectories(self, k: int) -> list[int]:
        """Indices (into ``frames``) of round k's trajectories, one per walker."""
        return [i for i, r in enumerate(self.round_of) if r == k]

    def _append(self, k: int, frames: np.ndarray, weights: np.ndarray) -> None:
        self.frames.append(frames)
        self.weights.append(weights)
        self.round_of.append(k)

    def read_round(self, k: int) -> None:
        """Append finished round k's frames (saved atoms, nm) and reweighting factors, read from its folder: one
        trajectory per walker, the walkers' weights normalised together (by their shared final bias)."""
        if self.walkers(k) == 1:
            self._append(k, *round_frames(self.round_dir(k), self.spec))
            return
        shared = shared_reweighting_factors(self.round_dir(k), self.walkers(k))
        for walker, weights in enumerate(shared):
            frames = _trajectory_frames(self.round_dir(k) / walker_name("trajectory", walker), self.spec)
            self._append(k, frames, _matched(self.round_dir(k), frames, weights))

    def start_spec(self, k: int):
        """The system at the final state of round k − 1 (its checkpoint); neither simulate nor run_metadynamics
        changes its System."""
        positions = self.spec.positions
        if k > 0:
            positions = _state_positions(self.round_dir(k - 1) / "trajectory.state.xml")
        return dataclasses.replace(self.spec, positions=np.array(positions))

    def inherited_hills(self, k: int, cv) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """The hills of rounds 1 … k − 1, deposited again in order at ``cv``'s values of the frames where they were
        deposited (well-tempered heights recomputed, :meth:`HillsBias.redeposit`): (centres, heights kJ/mol) for
        round k's bias, or None for round 1."""
        bias = self.settings.bias
        n_hills = self.settings.steps_per_round // bias.frequency  # every biased round ran all its steps
        deposited = (np.arange(1, n_hills + 1) * bias.frequency) // self.settings.report_every - 1
        centers = []
        for j in range(1, k):
            with torch.no_grad():  # per walker [hills, d], interleaved in deposition order
                per_walker = [cv(full_positions(self.frames[i][deposited], self.atoms, self.spec)).double().numpy()
                              for i in self.trajectories(j)]
            centers.append(np.stack(per_walker, axis=1).reshape(-1, per_walker[0].shape[1]))
        if not centers:
            return None
        replay = HillsBias.along(cv, bias.for_cv(cv), self.spec.temperature)
        replay.redeposit(np.concatenate(centers))
        return replay.centers, replay.heights

    def sample(self, k: int, cv) -> float:
        """Run round k's MD (unbiased for k = 0, else biased along ``cv``) and append its frames and weights;
        returns its wall time (s)."""
        s, folder = self.settings, self.round_dir(k)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if self.walkers(k) > 1:
            from .walkers import run_walkers

            run_walkers(self.spec, self.round_dir(k - 1) / "cv.pt", s.steps_per_round, folder, walkers=s.walkers,
                        client=self.client, segment=self.segment, report_every=s.report_every,
                        seed=(s.seed * 1000 + k) * s.walkers, starts=self.walker_starts(k, cv), settings=s.bias,
                        platform=s.platform, save_atoms=self.atoms, inherited=self.inherited_hills(k, cv),
                        on_progress=self.on_progress)
            seconds = time.perf_counter() - start
            self.read_round(k)
            return seconds
        spec = self.start_spec(k)
        seed = s.seed * 1000 + k
        if k == 0:
            path = simulate(spec, s.steps_per_round, folder / "trajectory", s.report_every, seed, s.platform,
                            progress=self.progress, save_atoms=self.atoms)
            seconds = time.perf_counter() - start
            frames = _trajectory_frames(path, spec)
            weights = np.full(len(frames), 1.0 / len(frames))
        else:
            result = run_metadynamics(spec, cv, s.steps_per_round, folder, s.bias, report_every=s.report_every,
                                      seed=seed, platform=s.platform, progress=self.progress,
                                      save_atoms=self.atoms, inherited=self.inherited_hills(k, cv))
            seconds = time.perf_counter() - start
            frames = _trajectory_frames(result.trajectory, spec)
            weights = _matched(folder, frames, result.reweighting_factors())
        self._append(k, frames, weights)
        return seconds

    def walker_starts(self, k: int, cv) -> list[np.ndarray]:
        """Where round k's walkers start (positions [n_atoms, 3], nm): configurations of the earlier rounds spread
        over ``cv`` — the last one of round k − 1, then each time the one farthest in CV space from those chosen
        (components in units of their standard deviation, periodic ones wrapped). Candidates are every frame so
        far when frames hold all atoms; otherwise (solvent not saved) the final states of round k − 1's walkers,
        the only full configurations on disk."""
        if self.atoms is None:
            earlier = [f for f, r in zip(self.frames, self.round_of) if r < k]
            candidates = torch.cat([full_positions(f, None, self.spec) for f in earlier])
        else:
            states = [self.round_dir(k - 1) / walker_name("trajectory.state.xml", walker)
                      for walker in range(self.walkers(k - 1))]
            candidates = torch.stack([torch.as_tensor(_state_positions(path), dtype=torch.float32) for path in states])
        with torch.no_grad():
            values = cv(candidates).double().numpy()
        chosen = _spread(values, self.settings.walkers, cv.metadata["periodic"])
        return [candidates[i].double().numpy() for i in chosen]

    def data(self) -> TrainingData:
        return TrainingData(self.spec, self.features, self.frames, self.atoms, self.weights, self.settings.lag)

    def per_round(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Per-trajectory arrays joined into one per round (the walkers of a round in order)."""
        return [np.concatenate([arrays[i] for i in self.trajectories(r)]) for r in range(max(self.round_of) + 1)]

    def summarise(self, k: int, cv, md_seconds: float, train_seconds: float) -> dict:
        data = self.data()
        values = self.per_round([v.astype(np.float64) for v in data.apply(cv)])
        phi = self.per_round(data.apply(self.phi)) if self.phi is not None else None
        weights = self.per_round(self.weights)
        periodic = [tuple(p) if p is not None else None for p in cv.metadata["periodic"]]
        sampled_ps = self.walkers(k) * self.settings.steps_per_round * self.spec.timestep
        report, fes = round_report(values, weights, k, periodic, cv.metadata["names"], sampled_ps, md_seconds, phi)
        np.savez(self.round_dir(k) / "fes_cv.npz", names=np.array(cv.metadata["names"]), units="kT",
                 **{f"edges{i}": e for i, e in enumerate(fes["edges"])},
                 **{f"fes{i}": f for i, f in enumerate(fes["fes_1d"])},
                 **({"fes_2d": fes["fes_2d"]} if "fes_2d" in fes else {}))
        plot_round_fes(fes, cv.metadata["names"], self.round_dir(k) / "fes_cv.png")
        report = {"round": k, "md_seconds": md_seconds, "train_seconds": train_seconds, **report}
        if self.spec.report is not None:
            positions = torch.cat([data.positions(i) for i in self.trajectories(k)])
            report["system"] = self.spec.report(self.spec, positions.double().numpy(), weights[k])
        return report


class LearnRun(_Run):
    """A checked learn run: :func:`prepare` builds it (every argument validated, nothing written, no MD run),
    :meth:`run` runs or resumes it."""

    def identity(self) -> dict:
        """What defines this run: the system and every setting but ``rounds`` and ``platform`` (the features as
        used: the system's default when none are given)."""
        settings = {k: v for k, v in asdict(self.settings).items() if k not in ("rounds", "platform")}
        settings["features"] = feature_specs(self.spec, self.settings.features)
        return {"kind": "learn", "system": system_identity(self.spec), "settings": settings}

    def run(self, on_start: Optional[Callable[[], None]] = None, *, scheduler: Optional[str] = None,
            segment: int = SEGMENT, on_progress: Optional[Callable] = None) -> list[dict]:
        """Run the rounds not finished yet; returns one summary dict per round (:mod:`cvplug.report`). Afterwards
        ``frames``, ``weights`` (per trajectory: round 0's, then each walker's of each round) and ``cv`` (the
        last CV) hold the results in memory. ``on_start()`` is called once the run owns its folder, before it
        writes there. With ``settings.walkers`` > 1 the biased rounds run on the Dask scheduler at ``scheduler``
        (default: a local cluster, :func:`cvplug.walkers.open_client`) in tasks of ``segment`` MD steps;
        ``on_progress`` gets a :class:`cvplug.walkers.WalkerProgress` after each."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"the output {self.out_dir} is a file; give a folder")
        state_file = self.out_dir / "progress.json"
        with claim(self.out_dir / "run.lock", self.out_dir / "identity.json", self.identity(),
                   found=[state_file, self.round_dir(0)], overwrite=self.overwrite, what=str(self.out_dir),
                   start_over=lambda lock: move_folder_aside(self.out_dir, lock)):
            if on_start is not None:
                on_start()
            write_json(self.out_dir / "settings.json", asdict(self.settings))
            summaries = read_json(state_file, default=[])
            for k in range(len(summaries)):
                self.read_round(k)
            cv = load_cv(self.round_dir(len(summaries) - 1) / "cv.pt") if summaries else None
            self.segment, self.on_progress = positive_int("segment", segment), on_progress
            if self.settings.walkers > 1 and max(1, len(summaries)) < self.settings.rounds:
                from .walkers import open_client

                self.client = open_client(scheduler, self.settings.walkers)
            try:
                if self.client is not None:
                    self.training_resources()  # device=cuda without a GPU worker is refused before any MD
                for k in range(len(summaries), self.settings.rounds):
                    md_seconds = self.sample(k, cv)
                    start = time.perf_counter()
                    cv, placement = self.train(k)
                    cv.calibrate(self.data().sample_positions())
                    cv.export(self.round_dir(k) / "cv.pt")
                    summary = {**self.summarise(k, cv, md_seconds, time.perf_counter() - start), **placement}
                    write_json(self.round_dir(k) / "summary.json", summary)
                    summaries.append(summary)
                    write_json(state_file, summaries)
            finally:
                if self.client is not None:
                    self.client.close()
                    self.client = None
            self.cv = cv
        return summaries


def fit_method(name: str, options: dict, data: TrainingData, **run) -> tuple:
    """Fit method ``name`` (:func:`cvplug.methods.create` with ``options`` and the run options ``run``) on
    ``data``; returns its CV (on the CPU) and where it trained: ``{"train_device": "cpu" or "cuda",
    "train_worker": the Dask worker's address, or "local" outside a worker}``. A learn run's training task."""
    from distributed import get_worker

    method = methods.create(name, options, **run).fit(data)
    try:
        worker = get_worker().address
    except ValueError:
        worker = "local"
    return method.cv, {"train_device": method.training_device(), "train_worker": worker}


def prepare(spec, out_dir, settings: Optional[LearnSettings] = None, progress: bool = True,
            overwrite: bool = False) -> LearnRun:
    """Check a learn run on ``spec`` (a SystemSpec or anything :func:`cvplug.systems.resolve` accepts):
    settings, features, saved atoms and method options; raises ValueError before anything is written.
    ``overwrite``: start over, moving a run with other settings (or this one) aside to ``<out_dir>.old-<time>``."""
    settings = settings or LearnSettings()
    settings.check()
    return LearnRun(systems.resolve(spec), Path(out_dir), settings, progress, overwrite)


def learn(spec, out_dir, settings: Optional[LearnSettings] = None, progress: bool = True,
          overwrite: bool = False) -> list[dict]:
    """Run (or resume) the learn loop on ``spec`` (a SystemSpec, a shipped name or a file path); returns one summary dict per round (:mod:`cvplug.report`).
    A run with other settings in ``out_dir`` is refused unless ``overwrite`` (moved aside, not deleted)."""
    return prepare(spec, out_dir, settings, progress, overwrite).run()
