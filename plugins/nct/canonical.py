"""The neural point transformation: a canonical map of phase space built from a coordinate flow.

Q = F(q) and P = p (∂Q/∂q)⁻¹, i.e. P_j = Σ_i p_i ∂q_i/∂Q_j, a vector–Jacobian product of F⁻¹ at Q. Any
invertible F gives a symplectic map M = ∂(Q, P)/∂(q, p), M J Mᵀ = J, so the phase-space volume is kept and
the log-Jacobian is 0 (Li, Dong, Zhang & Wang, PRX 10, 021020 (2020), Sec. III).

``flow`` is any module with ``forward`` (q → Q) and ``inverse`` (Q → q) acting sample by sample. Gradients flow
through the momenta (a double backward) whenever autograd is recording.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["to_latent", "to_physical", "vector_jacobian_product"]


def vector_jacobian_product(function: Callable[[Tensor], Tensor], x: Tensor, v: Tensor,
                            create_graph: bool) -> Tensor:
    """v · ∂function/∂x at x, row by row over the batch."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        (product,) = torch.autograd.grad(function(x), x, v, create_graph=create_graph)
    return product


def to_latent(flow: nn.Module, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """(Q, P) = (F(q), p ∂F⁻¹/∂Q) of coordinates q and conjugate momenta p, both [B, d]."""
    Q = flow(q)
    return Q, vector_jacobian_product(flow.inverse, Q, p, create_graph=torch.is_grad_enabled())


def to_physical(flow: nn.Module, Q: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """(q, p) = (F⁻¹(Q), P ∂F/∂q), the inverse of :func:`to_latent`."""
    q = flow.inverse(Q)
    return q, vector_jacobian_product(flow, q, P, create_graph=torch.is_grad_enabled())
