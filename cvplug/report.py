"""Round summaries for any system: sampling speed, the CV's range, its free energy and the transitions seen.

The free energy along the learned CV is estimated from the frames by weighted histograms (the weights undo the
bias; √n bins), in units of kT throughout. Basins are the wells of the 1D free energy of the first component that
are at least ``DEPTH`` kT deep; a transition is a move from one basin's core (within 1 kT of its minimum) to another's,
counted along each trajectory in time (core-set counting, so recrossings of a barrier top are not counted).

Systems may add their own numbers: a :class:`cvplug.systems.SystemSpec` whose ``report`` is set (alanine
dipeptide's φ/ψ basins) has it called on the frames, and every peptide reports how often each residue's φ is
positive (left-handed region), which shows whether a run left its starting basin.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["weighted_fes", "fes_basins", "count_transitions", "round_report", "plot_round_fes"]

MAX_BINS = 60
DEPTH = 1.5  # kT: shallower wells of a histogram FES are noise at the frame counts of a round


def weighted_fes(values: np.ndarray, weights: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Free energy (kT, minimum 0, +inf where empty) of ``values`` [n, d] on the grid ``edges`` (d arrays)."""
    counts, _ = np.histogramdd(values, bins=list(edges), weights=weights)
    with np.errstate(divide="ignore"):
        free = -np.log(counts)
    return free - free[np.isfinite(free)].min()


def fes_basins(free: np.ndarray, depth: float = DEPTH) -> list[tuple[int, int, int]]:
    """Basins of a 1D free energy (kT): (start, minimum, end) bin indices of each well at least ``depth`` deep,
    separated at the highest point between neighbouring minima. Empty bins count as barriers."""
    f = np.where(np.isfinite(free), free, np.inf)
    padded = np.concatenate([[np.inf], f, [np.inf]])
    minima = [i for i in range(len(f)) if np.isfinite(f[i]) and f[i] <= padded[i] and f[i] < padded[i + 2]]
    merged = True
    while merged and len(minima) > 1:  # merge wells shallower than depth into their lower neighbour
        merged = False
        for k in range(len(minima) - 1):
            a, b = minima[k], minima[k + 1]
            barrier = f[a:b + 1].max()
            if barrier - max(f[a], f[b]) < depth:
                minima.pop(k + 1 if f[b] >= f[a] else k)
                merged = True
                break
    cuts = [a + int(np.argmax(f[a:b + 1])) for a, b in zip(minima, minima[1:])]
    starts, ends = [0] + [c + 1 for c in cuts], cuts + [len(f) - 1]
    return [(s, m, e) for s, m, e in zip(starts, minima, ends)]


def count_transitions(values: Sequence[np.ndarray], free: np.ndarray, edges: np.ndarray,
                      basins: list[tuple[int, int, int]], core: float = 1.0) -> int:
    """Moves between basin cores (bins within ``core`` kT of the basin minimum) along each 1D time series."""
    label = np.full(len(free), -1)
    for k, (start, minimum, end) in enumerate(basins):
        inside = np.arange(start, end + 1)
        label[inside[free[inside] <= free[minimum] + core]] = k
    transitions = 0
    for series in values:
        bins = np.clip(np.digitize(series, edges) - 1, 0, len(free) - 1)
        states = label[bins]
        states = states[states >= 0]
        transitions += int(np.count_nonzero(np.diff(states)))
    return transitions


def _edges(values: np.ndarray, periodic) -> list[np.ndarray]:
    """Histogram edges per component: √n bins (10 to MAX_BINS) over the period or the observed range."""
    bins = int(np.clip(np.sqrt(len(values)), 10, MAX_BINS))
    edges = []
    for k in range(values.shape[1]):
        lo, hi = periodic[k] if periodic[k] is not None else (values[:, k].min(), values[:, k].max())
        hi = hi if hi > lo else lo + 1e-6
        edges.append(np.linspace(lo, hi, bins + 1))
    return edges


def round_report(cv_values: Sequence[np.ndarray], weights: Sequence[np.ndarray], this_round: int,
                 periodic: Sequence[Optional[tuple]], names: Sequence[str], sampled_ps: float, md_seconds: float,
                 peptide_phi: Optional[Sequence[np.ndarray]] = None) -> tuple[dict, dict]:
    """The summary of one round, and the FES arrays behind it.

    ``cv_values``: per round so far, the learned CV [frames, d] of its frames, in time order; ``weights``: their
    reweighting factors; ``this_round``: the index of the round summarised; ``peptide_phi``: per round, φ (rad)
    [frames, residues] when the system is a peptide. The FES uses every round's frames with their weights.
    """
    values, w = np.concatenate(cv_values), np.concatenate([x / x.sum() for x in weights])
    own = cv_values[this_round]
    edges = _edges(values, periodic)
    fes = {"edges": edges, "fes_1d": [weighted_fes(values[:, [k]], w, [edges[k]]) for k in range(values.shape[1])]}
    if values.shape[1] > 1:
        fes["fes_2d"] = weighted_fes(values[:, :2], w, edges[:2])
    basins = fes_basins(fes["fes_1d"][0])
    report = {
        "sampled_ps": sampled_ps,
        "ns_per_day": sampled_ps / 1000 / md_seconds * 86400 if md_seconds > 0 else None,
        "frames": int(len(own)),
        "cv": {name: {"min": float(own[:, k].min()), "max": float(own[:, k].max()), "std": float(own[:, k].std())}
               for k, name in enumerate(names)},
        "fes_basins": len(basins),
        "fes_basin_minima": [float((edges[0][m] + edges[0][m + 1]) / 2) for _, m, _ in basins],
        "transitions_this_round": count_transitions([own[:, 0]], fes["fes_1d"][0], edges[0], basins),
        "transitions_all_rounds": count_transitions([v[:, 0] for v in cv_values], fes["fes_1d"][0], edges[0],
                                                    basins),
    }
    if peptide_phi is not None:
        report["phi_positive_fraction"] = [float(f) for f in (peptide_phi[this_round] > 0).mean(0)]
    return report, fes


def plot_round_fes(fes: dict, names: Sequence[str], path: Path) -> None:
    """FES along each component (1D, kT) and of the first two (2D) in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = len(fes["fes_1d"])
    panels = d + (1 if "fes_2d" in fes else 0)
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2), squeeze=False)
    for k in range(d):
        centres = (fes["edges"][k][1:] + fes["edges"][k][:-1]) / 2
        axes[0, k].plot(centres, np.where(np.isfinite(fes["fes_1d"][k]), fes["fes_1d"][k], np.nan))
        axes[0, k].set(xlabel=names[k], ylabel="free energy (kT)")
    if "fes_2d" in fes:
        image = axes[0, d].pcolormesh(fes["edges"][0], fes["edges"][1],
                                      np.where(np.isfinite(fes["fes_2d"]), fes["fes_2d"], np.nan).T, shading="flat")
        axes[0, d].set(xlabel=names[0], ylabel=names[1])
        figure.colorbar(image, ax=axes[0, d], label="free energy (kT)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
