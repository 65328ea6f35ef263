"""The coordinate flow F: a RealNVP network of affine coupling layers, with learnable rotations between them.

References: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP" (2016); rotations between
couplings play the part of Glow's invertible 1×1 convolutions (Kingma & Dhariwal 2018): collective modes are
linear combinations of many coordinates, which coupling layers alone reach slowly. Every layer starts at the
identity (zero rotation generators, zero last layers of the coupling networks).

Written here rather than taken from zuko: zuko's lazy transforms rebuild every layer on each call (index
lookups, scatter writes, a matrix exponential per rotation), which made an exported CV ≈ 25 ms per force
evaluation; this flow scripts with TorchScript, and a rotation's matrix is computed once when the flow is put in
eval mode.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CoordinateFlow", "AffineCoupling", "Rotation"]

LOG_SCALE_BOUND = math.log(1e3)  # |log scale| per coupling layer stays below this (soft bound)


class AffineCoupling(nn.Module):
    """y_b = x_b · exp(s(x_a)) + t(x_a), y_a = x_a, for the two halves a, b of the coordinates.

    ``flip`` exchanges the roles of the first and the second half. s and t come from one MLP of ``depth``
    tanh hidden layers of width ``hidden`` (smooth, so CV forces are); s is softly bounded by ±log 1000.
    """

    def __init__(self, dim: int, flip: bool, hidden: int, depth: int):
        super().__init__()
        self.n_first = dim // 2
        self.flip = flip
        self.log_scale_bound = LOG_SCALE_BOUND
        n_a = dim - self.n_first if flip else self.n_first
        layers: list[nn.Module] = []
        width = n_a
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        layers.append(nn.Linear(width, 2 * (dim - n_a)))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def _parameters_of(self, a: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(a).chunk(2, dim=-1)
        return shift, raw / (1 + raw.abs() / self.log_scale_bound)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second = x[..., : self.n_first], x[..., self.n_first:]
        if self.flip:
            return second, first
        return first, second

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        if self.flip:
            return torch.cat([b, a], dim=-1)
        return torch.cat([a, b], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """y [B, dim] of x [B, dim]: one half shifted and scaled by functions of the other."""
        a, b = self._split(x)
        shift, log_scale = self._parameters_of(a)
        return self._merge(a, b * log_scale.exp() + shift)

    def inverse(self, y: Tensor) -> Tensor:
        """x [B, dim] of y [B, dim]."""
        a, b = self._split(y)
        shift, log_scale = self._parameters_of(a)
        return self._merge(a, (b - shift) * (-log_scale).exp())


class Rotation(nn.Module):
    """y = R x with R = exp(A − Aᵀ) orthogonal; A is learned. In eval mode R is the cached ``matrix`` buffer,
    refreshed whenever the module is put in eval mode or loads a state dict."""

    def __init__(self, dim: int):
        super().__init__()
        self.generator = nn.Parameter(torch.zeros(dim, dim))
        self.register_buffer("matrix", torch.eye(dim), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def rotation(self) -> Tensor:
        """The orthogonal matrix R [dim, dim]."""
        if self.training:
            return torch.linalg.matrix_exp(self.generator - self.generator.T)
        return self.matrix

    def _refresh(self) -> None:
        with torch.no_grad():
            self.matrix.copy_(torch.linalg.matrix_exp(self.generator - self.generator.T))

    def train(self, mode: bool = True) -> "Rotation":
        """Set training mode; leaving it refreshes the cached matrix."""
        super().train(mode)
        if not mode:
            self._refresh()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """R x for x [B, dim]."""
        return x @ self.rotation().T

    def inverse(self, y: Tensor) -> Tensor:
        """Rᵀ y for y [B, dim]."""
        return y @ self.rotation()


def _refresh_after_load(module: Rotation, incompatible_keys) -> None:
    module._refresh()


class CoordinateFlow(nn.Module):
    """Q = F(z) for z, Q in R^dim: ``layers`` affine coupling layers (alternating halves), with a rotation
    before every ``rotation_every`` of them (0: none, a plain RealNVP)."""

    def __init__(self, dim: int, layers: int = 8, hidden: int = 64, depth: int = 2, rotation_every: int = 2):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling flow needs at least 2 coordinates, got {dim}")
        if layers < 1 or hidden < 1 or depth < 1 or rotation_every < 0:
            raise ValueError(f"layers, hidden and depth must be ≥ 1 and rotation_every ≥ 0, got {layers}, "
                             f"{hidden}, {depth}, {rotation_every}")
        self.dim = dim
        blocks: list[nn.Module] = []
        for i in range(layers):
            if rotation_every and i % rotation_every == 0:
                blocks.append(Rotation(dim))
            blocks.append(AffineCoupling(dim, flip=i % 2 == 1, hidden=hidden, depth=depth))
        self.blocks = nn.ModuleList(blocks)
        self.eval()

    def forward(self, z: Tensor) -> Tensor:
        """Q = F(z) [B, dim] of z [B, dim]."""
        for block in self.blocks:
            z = block(z)
        return z

    def inverse(self, Q: Tensor) -> Tensor:
        """z = F⁻¹(Q) [B, dim] of Q [B, dim]."""
        for block in self.blocks[::-1]:
            Q = block.inverse(Q)
        return Q
