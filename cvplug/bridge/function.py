"""The autograd Function: OpenMM's energies in the forward pass, OpenMM's forces (from the same call) backward."""
from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .context import Evaluator, recentre as recentred
from .policy import SamplePolicy

__all__ = ["ReducedEnergy"]


class ReducedEnergy(torch.autograd.Function):
    """``ReducedEnergy.apply(positions, evaluator, kT, policy, recentre) -> (u, masked)``.

    ``positions`` [B, n, 3] in nm (any float dtype and device); ``evaluator`` a batch strategy; ``kT`` in kJ/mol;
    ``recentre``: move each sample's centroid to the origin before OpenMM sees it (only for translation-invariant
    energies, see :func:`~cvplug.bridge.context.recentre`). This is the one place where positions enter OpenMM.
    Returns reduced energies u = U/kT [B] in the dtype and device of ``positions`` and the boolean mask of samples
    the ``policy`` masked. OpenMM works in float64; the gradient ∂u/∂x = −F/kT (1/nm) is kept from the forward
    call, so the backward pass costs no OpenMM evaluation. First derivatives only.
    """

    @staticmethod
    def forward(ctx, positions: torch.Tensor, evaluator: Evaluator, kT: float, policy: SamplePolicy,
                recentre: bool = False):
        x = positions.detach().to(device="cpu", dtype=torch.float64).numpy()
        x = np.ascontiguousarray(recentred(x) if recentre else x)
        energies, forces = evaluator(x)
        u, grad, masked = policy.apply(energies / kT, -forces / kT)
        ctx.save_for_backward(torch.from_numpy(grad).to(positions))
        masked = torch.from_numpy(masked).to(positions.device)
        ctx.mark_non_differentiable(masked)
        return torch.from_numpy(u).to(positions), masked

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_u: torch.Tensor, grad_masked: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad_u[:, None, None] * grad, None, None, None, None
