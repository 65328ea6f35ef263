"""The NCT model: mass-weighted coordinates → symplectic point transformation → harmonic latent Hamiltonian.

Phase-space density of the model: log p(z, p_z) = log ρ(F(z), p_z ∂F⁻¹/∂Q) with ρ = exp(−K/kT)/Z, no Jacobian
term since the map is symplectic. Two losses (Li et al., PRX 10, 021020, eqs. 5 and 6):

- :meth:`NCTModel.free_energy`: variational, E_ρ[log ρ(Q, P) + H(q, p)/kT] over latent samples mapped back,
  an upper bound of the free energy −log Z/kT reached when the model is exact;
- :meth:`NCTModel.negative_log_likelihood`: maximum likelihood on coordinate samples, each augmented with
  momenta drawn from the Maxwell–Boltzmann distribution (for a separable H = |p|²/2m + U(q)).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .canonical import to_latent, to_physical
from .coordinates import MassWeighting
from .latent import HarmonicLatent

__all__ = ["NCTModel"]


class NCTModel(nn.Module):
    """A neural canonical transformation of the features x (nm) of a system at thermal energy ``kT`` (kJ/mol).

    Parameters
    ----------
    coordinates : the fixed map from features to mass-weighted coordinates z (:class:`MassWeighting`).
    flow : the coordinate flow F on z (:class:`CoordinateFlow`, or any module with ``forward``/``inverse``).
    kT : thermal energy in kJ/mol (1 for the toys).
    initial_frequency : starting ω of every latent oscillator, 1/ps.
    """

    def __init__(self, coordinates: MassWeighting, flow: nn.Module, kT: float = 1.0, initial_frequency: float = 1.0):
        super().__init__()
        self.coordinates = coordinates
        self.flow = flow
        self.latent = HarmonicLatent(coordinates.dim, kT, initial_frequency)
        self.eval()  # the trainers switch to training mode and back

    @property
    def kT(self) -> float:
        """Thermal energy of the latent Hamiltonian, kJ/mol."""
        return self.latent.kT

    def slow_order(self) -> Tensor:
        """Indices of the latent oscillators from the slowest (smallest ω) to the fastest."""
        return torch.argsort(self.latent.frequencies.detach())

    def encode(self, x: Tensor, p_z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent (Q, P) of features x [B, n] (nm) and mass-weighted momenta p_z [B, d]."""
        return to_latent(self.flow, self.coordinates(x), p_z)

    def decode(self, Q: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
        """Features x [B, n] (nm) and mass-weighted momenta p_z [B, d] of latent (Q, P)."""
        z, p_z = to_physical(self.flow, Q, P)
        return self.coordinates.inverse(z), p_z

    def latent_coordinates(self, x: Tensor) -> Tensor:
        """Q = F(z(x)), [B, d] (√amu·nm), in the model's oscillator order (see :meth:`slow_order`)."""
        return self.flow(self.coordinates(x))

    def latent_jacobian(self, x: Tensor) -> Tensor:
        """∂Q/∂x of the latent coordinates with respect to the features at samples x [B, n]: [B, d, n]
        (√amu, since Q is in √amu·nm and x in nm); row k is the direction in feature space that Q_k follows."""
        def latent(sample: Tensor) -> Tensor:
            return self.latent_coordinates(sample.unsqueeze(0)).squeeze(0)

        with torch.enable_grad():
            return torch.func.vmap(torch.func.jacrev(latent))(x).detach()

    def thermal_momenta(self, batch: int) -> Tensor:
        """Mass-weighted momenta from the Maxwell–Boltzmann distribution, N(0, kT), [batch, d]."""
        like = self.latent.log_frequencies
        return torch.randn(batch, self.coordinates.dim, dtype=like.dtype, device=like.device) * self.kT ** 0.5

    def log_prob(self, x: Tensor, p_z: Tensor) -> Tensor:
        """log p(z(x), p_z) [B]: the latent density at the image, no Jacobian term (the map is symplectic)."""
        return self.latent.log_prob(*self.encode(x, p_z))

    def negative_log_likelihood(self, x: Tensor) -> Tensor:
        """Mean −log p(z, p_z) over features x [B, n] with fresh thermal momenta (eq. 6)."""
        return -self.log_prob(x, self.thermal_momenta(len(x))).mean()

    def free_energy(self, energy: Callable[[Tensor], Tensor], batch: int) -> Tensor:
        """Variational free energy in kT, E[log ρ(Q, P) + u(x) + |p_z|²/2kT] over ``batch`` latent samples (eq. 5).

        ``energy`` maps features x [B, n] (nm) to reduced potential energies u = U/kT, [B].
        """
        Q, P = self.latent.sample(batch)
        x, p_z = self.decode(Q, P)
        reduced_hamiltonian = energy(x) + 0.5 * p_z.pow(2).sum(-1) / self.kT
        return (self.latent.log_prob(Q, P) + reduced_hamiltonian).mean()

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n configurations, features [n, features] (nm), drawn from the model."""
        Q, P = self.latent.sample(n)
        return self.coordinates.inverse(self.flow.inverse(Q))

    @torch.no_grad()
    def interpolate(self, x_a: Tensor, x_b: Tensor, steps: int = 20) -> Tensor:
        """Configurations along the straight latent line from features x_a to x_b ([n] each), [steps, n]."""
        if steps < 2:
            raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
        Q = self.latent_coordinates(torch.stack([torch.as_tensor(x_a), torch.as_tensor(x_b)]).to(
            self.latent.log_frequencies.dtype))
        t = torch.linspace(0, 1, steps, dtype=Q.dtype).unsqueeze(1)
        return self.coordinates.inverse(self.flow.inverse((1 - t) * Q[0] + t * Q[1]))
