"""The latent Hamiltonian: independent harmonic oscillators with learnable frequencies.

K(Q, P) = Σ_k (P_k² + ω_k² Q_k²)/2 (kJ/mol for Q in √amu·nm, P in √amu·nm/ps, ω in 1/ps), so the latent
phase-space density exp(−K/kT)/Z is a product of Gaussians with variances kT (P) and kT/ω_k² (Q).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["HarmonicLatent"]


class HarmonicLatent(nn.Module):
    """Independent harmonic oscillators K = Σ (P² + ω²Q²)/2 at thermal energy ``kT`` (kJ/mol).

    ``frequencies`` (1/ps) start at ``initial`` (one value or one per oscillator) and are learned as log ω.
    """

    def __init__(self, dim: int, kT: float = 1.0, initial=1.0):
        super().__init__()
        if dim < 1:
            raise ValueError(f"the latent space needs at least one oscillator, got dim={dim}")
        if not kT > 0:
            raise ValueError(f"kT must be positive (kJ/mol), got {kT}")
        initial = torch.as_tensor(initial, dtype=torch.get_default_dtype()).expand(dim).clone()
        if not bool((initial > 0).all()):
            raise ValueError("initial frequencies must be positive (1/ps)")
        self.log_frequencies = nn.Parameter(initial.log())
        self.kT = float(kT)

    @property
    def frequencies(self) -> Tensor:
        """ω_k in 1/ps, [dim]."""
        return self.log_frequencies.exp()

    def energy(self, Q: Tensor, P: Tensor) -> Tensor:
        """K(Q, P) in kJ/mol, [batch]."""
        return 0.5 * (P.pow(2) + (self.frequencies * Q).pow(2)).sum(-1)

    def log_prob(self, Q: Tensor, P: Tensor) -> Tensor:
        """log of the normalised phase-space density exp(−K/kT)/Z, [batch]; Z = Π 2π kT/ω_k."""
        log_z = (math.log(2 * math.pi * self.kT) - self.log_frequencies).sum()
        return -self.energy(Q, P) / self.kT - log_z

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """n phase-space points (Q, P) from the latent density (differentiable in the frequencies)."""
        dim = self.log_frequencies.numel()
        shape, like = (n, dim), self.log_frequencies
        eps_q = torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
        eps_p = torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
        scale = math.sqrt(self.kT)
        return eps_q * scale / self.frequencies, eps_p * scale
