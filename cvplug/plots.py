"""Pictures: free-energy surfaces (1D curves, 2D maps; 3D shown as its minimum over the third axis)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_fes"]


def plot_fes(axes: Sequence[np.ndarray], free_energy: np.ndarray, names: Sequence[str], path,
             units: str = "kJ/mol", vmax: float = 60.0) -> Path:
    """Save a picture of a free energy surface indexed [axis 0, axis 1, …] to ``path``."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if free_energy.ndim == 1:
        ax.plot(axes[0], free_energy)
        ax.set_xlabel(names[0])
        ax.set_ylabel(f"free energy ({units})")
    else:
        surface = free_energy if free_energy.ndim == 2 else free_energy.min(axis=tuple(range(2, free_energy.ndim)))
        levels = np.linspace(0, min(vmax, float(surface.max()) or 1.0), 25)
        image = ax.contourf(axes[0], axes[1], surface.T, levels=levels, cmap="viridis", extend="max")
        fig.colorbar(image, ax=ax, label=f"free energy ({units})")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
