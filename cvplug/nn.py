"""Small torch building blocks that several methods share: the fully connected network and the encoder mean
that an exported CV computes.

>>> net = mlp(3, (8, 8), 4)
>>> EncoderMean(net, n_components=2)(torch.zeros(5, 3)).shape
torch.Size([5, 2])
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ["mlp", "EncoderMean"]


def mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with ``activation`` after each, then a linear output layer:
    n_in → hidden… → n_out."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), activation()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


class EncoderMean(nn.Module):
    """x [B, D] → the first ``n_components`` outputs of ``network((x − offset) / scale)`` [B, d]: the mean of a
    Gaussian encoder whose network returns the mean and the log-variance side by side. This is the module an
    exported CV computes (TorchScript-able).

    ``offset`` ([D] or a number) and ``scale`` (a number or [D]) are in the units of x (nm for coordinates);
    they are stored as buffers, so they export with the CV.
    """

    def __init__(self, network: nn.Module, n_components: int, offset: Union[Tensor, float] = 0.0,
                 scale: Union[Tensor, float] = 1.0):
        super().__init__()
        self.network, self.n_components = network, int(n_components)
        dtype = offset.dtype if isinstance(offset, Tensor) else torch.get_default_dtype()
        self.register_buffer("offset", torch.as_tensor(offset, dtype=dtype).clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=dtype).clone())

    def forward(self, x: Tensor) -> Tensor:
        """The encoder mean [B, d] of x [B, D]."""
        return self.network((x - self.offset) / self.scale)[..., : self.n_components]
