"""The fast CV path: a CV's value and force pullback at one configuration, for a bias evaluated every MD step.

:func:`cv_evaluator` returns ``evaluate(positions) -> (s, pullback)``: the CV value ``s`` [d] at positions
[n_atoms, 3] (nm) and ``pullback(g)`` = Σ_k g_k ∂s_k/∂x [n_atoms, 3], so a bias V(s) gives forces
−pullback(dV/ds) (kJ/mol/nm).

Two implementations of the same function:

- NumPy, for the plain MLP CVs the learners make: features Cartesians (Kabsch-aligned or not) or
  PairwiseDistances, then Normalization, then an ``nn.Sequential`` of Linear layers and Tanh / ReLU / SiLU /
  Sigmoid / Identity. Float64 whatever the CV's dtype. Why it exists: on a small CPU a torch operator costs
  2–10 µs of dispatch, so one forward + backward of such a CV through TorchScript takes 0.25 ms (1.3 ms with the
  SVD of the alignment) — as long as an MD step of alanine dipeptide in OBC2 — while the same arithmetic on
  arrays this small takes tens of µs in NumPy (``benchmarks/bias_overhead.py`` measures both).
- TorchScript autograd, for everything else (flows, dihedral features, custom modules).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["cv_evaluator", "numpy_evaluator", "torch_evaluator", "CVFunction", "Pullback"]

Pullback = Callable[[np.ndarray], np.ndarray]
"""``pullback(g)`` = Σ_k g_k ∂s_k/∂x [n_atoms, 3] for g [d] (per CV unit)."""
CVFunction = Callable[[np.ndarray], tuple[np.ndarray, Pullback]]
"""``evaluate(positions [n_atoms, 3] nm) -> (s [d], pullback)``."""


def cv_evaluator(module: torch.jit.ScriptModule) -> CVFunction:
    """The NumPy evaluator of a compiled CV (``cv.compiled()``) where it applies, else the TorchScript one."""
    return numpy_evaluator(module) or torch_evaluator(module)


def torch_evaluator(module: torch.jit.ScriptModule) -> CVFunction:
    """Value and pullback through TorchScript autograd (works for any CV)."""

    def evaluate(positions: np.ndarray):
        x = torch.from_numpy(np.asarray(positions, dtype=np.float64)).requires_grad_(True)
        s = module(x)

        def pullback(g: np.ndarray) -> np.ndarray:
            (dx,) = torch.autograd.grad(s, x, torch.as_tensor(g, dtype=s.dtype))
            return dx.numpy()

        return s.detach().double().numpy(), pullback

    return evaluate


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy().copy()


def _det3(m: np.ndarray) -> float:
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


class _Cartesians:
    """Selected atoms' coordinates, optionally Kabsch-superposed on a reference (see cvplug.features)."""

    def __init__(self, module):
        self.atoms, self.components = _numpy(module.atoms).astype(int), _numpy(module.components).astype(int)
        self.aligned = bool(module.aligned)
        reference = _numpy(module.reference)
        self.reference = reference - reference.mean(0)

    def forward(self, positions):
        selected = positions[self.atoms]
        if not self.aligned:
            return selected[:, self.components].ravel(), None
        centred = selected - selected.sum(0) / len(selected)
        u, sigma, vh = np.linalg.svd(centred.T @ self.reference)
        d = np.sign(_det3(u) * _det3(vh))
        u[:, 2] *= d                      # U·diag(1, 1, d): the rotation is then u @ vh, proper
        sigma[2] *= d
        rotation = u @ vh
        return (centred @ rotation)[:, self.components].ravel(), (centred, u, sigma, vh, rotation)

    def backward(self, cache, g, n_atoms):
        grad_y = np.zeros((len(self.atoms), 3))
        grad_y[:, self.components] = g.reshape(len(self.atoms), -1)
        if cache is None:
            grad_c = grad_y
        else:
            # R = polar factor of C = cᵀ r (signed singular values σ): dR = U Ω Vᵀ, Ω_ij = (B_ij − B_ji)/(σ_i + σ_j)
            # with B = Uᵀ dC V; hence ∂L/∂C = U K Vᵀ, K = (A − Aᵀ)/(σ_i + σ_j), A = Uᵀ (∂L/∂R) V.
            centred, u, sigma, vh, rotation = cache
            a = u.T @ (centred.T @ grad_y) @ vh.T
            k = (a - a.T) / (sigma[:, None] + sigma[None, :])
            grad_c = grad_y @ rotation.T + self.reference @ (u @ k @ vh).T
            grad_c = grad_c - grad_c.sum(0) / len(grad_c)
        out = np.zeros((n_atoms, 3))
        out[self.atoms] = grad_c  # a Cartesians feature lists each atom once
        return out


class _Distances:
    def __init__(self, module):
        self.first, self.second = _numpy(module.first).astype(int), _numpy(module.second).astype(int)
        self.atoms = np.union1d(self.first, self.second)
        # ∂d_p/∂x_a = ±(unit vector of pair p): incidence[p, a] = +1 for the second atom, −1 for the first
        self.incidence = (np.searchsorted(self.atoms, self.second)[:, None] == np.arange(len(self.atoms))) \
            .astype(float) - (np.searchsorted(self.atoms, self.first)[:, None] == np.arange(len(self.atoms)))

    def forward(self, positions):
        delta = positions[self.second] - positions[self.first]
        distance = np.sqrt((delta**2).sum(1))
        return distance, delta / distance[:, None]

    def backward(self, unit, g, n_atoms):
        out = np.zeros((n_atoms, 3))
        out[self.atoms] = self.incidence.T @ (g[:, None] * unit)
        return out


class _Normalization:
    def __init__(self, module):
        self.mean, self.std = _numpy(module.mean), _numpy(module.std)

    def forward(self, x):
        return (x - self.mean) / self.std, None

    def backward(self, _, g):
        return g / self.std


class _Affine:
    """y = x W + b (a Linear layer)."""

    def __init__(self, weight_t: np.ndarray, bias: np.ndarray):
        self.weight_t, self.bias = weight_t, bias

    def forward(self, x):
        return x @ self.weight_t + self.bias, None

    def backward(self, _, g):
        return self.weight_t @ g


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Activation:
    FORWARD = {"Tanh": np.tanh, "ReLU": lambda x: np.maximum(x, 0.0), "Sigmoid": _sigmoid,
               "SiLU": lambda x: x * _sigmoid(x), "Identity": lambda x: x}
    DERIVATIVE = {"Tanh": lambda x, y: 1.0 - y**2, "ReLU": lambda x, y: (x > 0).astype(float),
                  "Sigmoid": lambda x, y: y * (1.0 - y),
                  "SiLU": lambda x, y: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
                  "Identity": lambda x, y: np.ones_like(x)}

    def __init__(self, name: str):
        self.function, self.derivative = self.FORWARD[name], self.DERIVATIVE[name]

    def forward(self, x):
        y = self.function(x)
        return y, self.derivative(x, y)

    def backward(self, slope, g):
        return slope * g


def _layers(encoder) -> Optional[list]:
    name = encoder.original_name
    if name in _Activation.FORWARD:
        return [_Activation(name)]
    if name == "Linear":
        return [_Affine(_numpy(encoder.weight).T, _numpy(encoder.bias) if encoder.bias is not None else 0.0)]
    if name == "Sequential":
        layers = [_layers(child) for _, child in encoder.named_children()]
        return None if any(part is None for part in layers) else [layer for part in layers for layer in part]
    return None


def numpy_evaluator(module: torch.jit.ScriptModule) -> Optional[CVFunction]:
    """The NumPy evaluator of a compiled CV, or None when one of its parts is not supported."""
    pipeline = getattr(module, "pipeline", None)
    parts = dict(pipeline.named_children()) if isinstance(pipeline, torch.jit.ScriptModule) else {}
    if set(parts) != {"0", "1", "2"} or parts["1"].original_name != "Normalization":
        return None
    features = {"Cartesians": _Cartesians, "PairwiseDistances": _Distances}.get(parts["0"].original_name)
    layers = _layers(parts["2"])
    if features is None or layers is None:
        return None
    features = features(parts["0"])
    layers = [_Normalization(parts["1"])] + layers

    def evaluate(positions: np.ndarray):
        positions = np.asarray(positions, dtype=np.float64)
        x, feature_cache = features.forward(positions)
        caches = []
        for layer in layers:
            x, cache = layer.forward(x)
            caches.append(cache)

        def pullback(g: np.ndarray) -> np.ndarray:
            g = np.asarray(g, dtype=np.float64)
            for layer, cache in zip(reversed(layers), reversed(caches)):
                g = layer.backward(cache, g)
            return features.backward(feature_cache, g, len(positions))

        return x, pullback

    return evaluate
