"""Per-sample gradient normalisation (Schöberl et al., Appendix F).

Early in training, samples of q(x) can land where the force field is huge (overlapping atoms); one such sample
would dominate a batch's gradient. :func:`normalize_sample_gradients` is the identity in the forward pass; in the
backward pass it caps the norm of every sample's gradient ∂loss/∂x_i at κ times the batch mean of the norms,
keeping its direction. With κ = 3 (the paper's value) ordinary samples pass unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["normalize_sample_gradients", "cap_gradient_norms", "KAPPA"]

KAPPA = 3.0


def cap_gradient_norms(grad: Tensor, kappa: float = KAPPA) -> Tensor:
    """Gradients [B, ...] with each sample's norm capped at κ · (mean norm over the batch)."""
    norms = torch.linalg.vector_norm(grad.reshape(len(grad), -1), dim=1)
    limit = kappa * norms.mean()
    factor = torch.where(norms > limit, limit / norms.clamp_min(torch.finfo(grad.dtype).tiny), torch.ones_like(norms))
    return grad * factor.reshape(-1, *([1] * (grad.dim() - 1)))


class _NormalizeSampleGradients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kappa: float) -> Tensor:
        ctx.kappa = kappa
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return cap_gradient_norms(grad, ctx.kappa), None


def normalize_sample_gradients(x: Tensor, kappa: float = KAPPA) -> Tensor:
    """Identity on samples x [B, ...] whose backward pass applies :func:`cap_gradient_norms` (κ > 0)."""
    if not kappa > 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    return _NormalizeSampleGradients.apply(x, float(kappa))

