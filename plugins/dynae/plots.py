"""Pictures of a DynAE latent space: coloured by known coordinates, and the learned force field as arrows."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_latent", "plot_force_field"]


def plot_latent(z: np.ndarray, colours: dict[str, np.ndarray], path, title: str = "",
                cmaps: Sequence[str] | None = None, max_points: int = 20000) -> Path:
    """Scatter of a 2D latent ``z`` [n, 2], one panel per entry of ``colours`` (name → values [n])."""
    keep = np.linspace(0, len(z) - 1, min(len(z), max_points)).astype(int)
    fig, axes = plt.subplots(1, len(colours), figsize=(4.6 * len(colours), 4.0), squeeze=False)
    for k, (ax, (name, values)) in enumerate(zip(axes[0], colours.items())):
        image = ax.scatter(z[keep, 0], z[keep, 1], c=np.asarray(values)[keep], s=1.5, rasterized=True,
                           cmap=(cmaps[k] if cmaps else "viridis"))
        fig.colorbar(image, ax=ax, label=name)
        ax.set_xlabel("z0")
        ax.set_ylabel("z1")
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_force_field(result, z: np.ndarray, path, colour: np.ndarray | None = None, colour_name: str = "",
                     cmap: str = "viridis", grid: int = 21, min_count: int = 10, title: str = "") -> Path:
    """The learned latent force f(z) (per lag) as arrows on a grid over the visited region of ``z`` [n, 2].

    Arrows are drawn only where data were seen (grid cells holding at least ``min_count`` points); the data
    are shown underneath, coloured by ``colour`` (with ``cmap``) if given. ``result``: a DynAEResult.
    """
    lo, hi = np.percentile(z, 0.5, axis=0), np.percentile(z, 99.5, axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    nearest = np.clip(np.rint((z - lo) / (hi - lo) * (grid - 1)), 0, grid - 1).astype(int)
    seen = np.bincount(nearest[:, 1] * grid + nearest[:, 0], minlength=grid * grid) >= min_count
    force = result.force_field(points[seen])
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    keep = np.linspace(0, len(z) - 1, min(len(z), 20000)).astype(int)
    image = ax.scatter(z[keep, 0], z[keep, 1], s=1, c=None if colour is None else np.asarray(colour)[keep],
                       color="0.8" if colour is None else None, cmap=cmap, alpha=0.4, rasterized=True)
    if colour is not None:
        fig.colorbar(image, ax=ax, label=colour_name)
    ax.quiver(points[seen, 0], points[seen, 1], force[:, 0], force[:, 1], color="k", angles="xy", width=0.004)
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "learned latent force field f(z) per lag")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
