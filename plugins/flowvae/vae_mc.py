"""VAE-based Monte Carlo: chains of independence-type moves proposed by a trained FlowVAE.

A move encodes x, draws z' from the prior, decodes x' ~ P(x|z') and accepts with the Metropolis–Hastings
ratio of :func:`cvplug.metrics.vae.vae_mc_proposal`, which includes −Δu from the system's energy and all
proposal densities, so the chains sample exp(−u(x)) exactly whatever the VAE's quality (a poor VAE only lowers
the acceptance rate, f_acc). The energy comes from a toy's torch twin or, for molecules in bond-angle-torsion
coordinates, from OpenMM (:class:`BATEnergy`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from cvplug.bridge import OpenMMEnergy, SamplePolicy
from cvplug.metrics.vae import vae_mc_proposal
from cvplug.training import progress_bar

from .internal import ZMatrix
from .model import FlowVAE

__all__ = ["VAEMonteCarlo", "BATEnergy"]


class BATEnergy:
    """Reduced energy of internal coordinates x [B, n] of a molecule: U(positions(x))/kT − log|Jacobian|.

    ``spec`` is a cvplug SystemSpec (energies by OpenMM through :class:`cvplug.bridge.OpenMMEnergy`, raw, no
    cap); impossible coordinates (bond ≤ 0, angle outside (0, π)) get +inf. ``threads``: CPU-platform threads
    (default: OpenMMEnergy's choice, the usable cores).
    """

    def __init__(self, spec, zmatrix: ZMatrix, platform: str = "CPU", batch_strategy: Optional[str] = "single",
                 threads: Optional[int] = None):
        if zmatrix.n_atoms != spec.n_atoms:
            raise ValueError(f"the Z-matrix has {zmatrix.n_atoms} atoms but the system {spec.n_atoms}")
        self.zmatrix = zmatrix
        self.energy = OpenMMEnergy(spec, platform=platform, batch_strategy=batch_strategy, threads=threads,
                                   policy=SamplePolicy(cap=None))

    def __call__(self, x: Tensor) -> Tensor:
        x = x.double()
        log_jacobian = self.zmatrix.log_jacobian(x)
        valid = torch.isfinite(log_jacobian)
        positions = self.zmatrix.to_cartesian(torch.where(valid[:, None], x, x[valid][:1].expand_as(x))
                                              if bool(valid.any()) else x)
        u = torch.full_like(log_jacobian, math.inf)
        if bool(valid.any()):
            with torch.no_grad():
                u[valid] = self.energy(positions[valid]) - log_jacobian[valid]
        return u.to(torch.get_default_dtype())

    def close(self) -> None:
        """Release the OpenMM contexts of the energy bridge."""
        self.energy.close()


class VAEMonteCarlo:
    """Parallel VAE-MC chains started from x0 [chains, D] for the density exp(−reduced_energy(x)).

    ``vae`` is a :class:`FlowVAE` or anything with ``encoder``, ``prior`` and ``decoder`` following the protocol
    of :mod:`cvplug.metrics.vae`.

    >>> sampler = VAEMonteCarlo(vae, spec.toy.u, x0)          # doctest: +SKIP
    >>> samples, acceptance = sampler.run(1000)                # doctest: +SKIP
    """

    def __init__(self, vae: "FlowVAE", reduced_energy: Callable[[Tensor], Tensor], x0: Tensor):
        self.vae, self.reduced_energy = vae, reduced_energy
        self.x = torch.as_tensor(x0, dtype=torch.get_default_dtype()).clone()
        self.u = reduced_energy(self.x)
        if not bool(torch.isfinite(self.u).all()):
            raise ValueError("every starting point needs a finite energy")

    def step(self) -> Tensor:
        """One move of every chain; returns the accepted mask [chains]."""
        x_new, u_new, log_ratio = vae_mc_proposal(self.vae.encoder, self.vae.prior, self.vae.decoder,
                                                  self.reduced_energy, self.x, self.u)
        accept = torch.log(torch.rand(len(self.x), dtype=torch.float64)) < log_ratio
        self.x = torch.where(accept[:, None], x_new.to(self.x.dtype), self.x)
        self.u = torch.where(accept, u_new.to(self.u.dtype), self.u)
        return accept

    def run(self, steps: int, progress: bool = False) -> tuple[Tensor, float]:
        """``steps`` moves; returns the states after each move [steps, chains, D] and the acceptance rate."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        states, accepted = [], 0
        for _ in progress_bar(range(steps), desc="VAE-MC", progress=progress):
            accepted += int(self.step().sum())
            states.append(self.x.clone())
        return torch.stack(states), accepted / (steps * len(self.x))
