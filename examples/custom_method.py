"""Write a method plugin: a tiny CV-learning method (PCA), registered in code and built by name.

    python examples/custom_method.py --out runs/custom-method
    python examples/custom_method.py --steps 2000 --out /tmp/c          # a few seconds

A method subclasses cvplug.methods.Method: options go to the constructor, fit(data) trains on a
cvplug.data.TrainingData and sets self.cv (a CollectiveVariable) and self.model. `methods.register` makes it
known to this Python process; to ship it, declare it in your package's pyproject.toml instead:

    [project.entry-points."cvplug.methods"]
    pca = "mypackage.pca:PCA"

and `cvplug methods`, `cvplug learn --method pca` find it. Writes pca.pt (the CV) in --out.
"""
import argparse
from pathlib import Path

import torch

from cvplug import CollectiveVariable, Normalization, methods, systems
from cvplug.data import TrainingData
from cvplug.selection import parse_features
from cvplug.simulate import simulate
from cvplug.trajectory import load_trajectory


@methods.register
class PCA(methods.Method):
    """Principal components of the features: the directions of largest variance (not the slowest ones)."""

    name = "pca"
    summary = "principal components of the features (an example plugin)"
    needs = ("frames",)                       # what the core must put in the TrainingData

    def __init__(self, n_components: int = 2, *, whiten: bool = False, **run):
        super().__init__(n_components, **run)  # run: seed, work_dir, progress
        self.whiten = whiten

    def fit(self, data) -> "PCA":
        x = torch.cat(data.feature_trajectories()).float()
        mean = x.mean(0)
        _, singular, directions = torch.linalg.svd(x - mean, full_matrices=False)
        projection = torch.nn.Linear(x.shape[1], self.n_components, bias=False)
        scale = singular[: self.n_components, None] / len(x) ** 0.5 if self.whiten else 1.0
        with torch.no_grad():
            projection.weight.copy_(directions[: self.n_components] / scale)
        self.cv = CollectiveVariable(data.features, projection, data.spec.n_atoms,
                                     Normalization(mean, torch.ones_like(mean)), method=self.name,
                                     names=[f"pc{k}" for k in range(self.n_components)])
        self.cv.calibrate(data.sample_positions())   # suggested bias ranges and widths
        self.model = {"variance": (singular**2 / len(x)).tolist()}
        return self


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/custom-method"))
    parser.add_argument("--steps", type=int, default=20_000, help="MD steps (2 fs) of training data")
    args = parser.parse_args(argv)

    spec = systems.load("ala2-implicit")
    trajectory = load_trajectory(simulate(spec, args.steps, args.out / "md", report_every=50, progress=False))
    data = TrainingData.from_trajectories([trajectory], spec, parse_features("backbone-torsions", spec.topology))

    print("registered methods:", ", ".join(sorted(methods.available())))
    pca = methods.create("pca", {"n_components": 2, "whiten": True}, seed=0).fit(data)
    print("variance of each principal component:", [round(v, 4) for v in pca.model["variance"]])
    pca.cv.export(args.out / "pca.pt")
    return args.out


if __name__ == "__main__":
    main()
