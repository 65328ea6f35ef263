"""Toy potentials as OpenMM Systems of one or a few unit-mass particles, each with its torch twin.

Units: the toys live in reduced units with kT = 1. We set the temperature to T = 1 kJ/mol / R ≈ 120.27 K so
that an energy in kJ/mol *is* the reduced energy u = U/kT, and lengths in nm are the potentials' coordinates.

Each particle carries ``dim_per_particle`` natural coordinates (the first components of its position); the
remaining components are spectators in a unit harmonic well (u = s²/2), so an OpenMM particle in 3D samples
the 1D/2D model exactly in its natural coordinates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import openmm
import openmm.app as app
import torch

from cvplug.constants import MOLAR_GAS_CONSTANT

from .spec import SystemSpec

__all__ = ["ToyPotential", "TOY_POTENTIALS", "make_spec", "harmonic_chain"]

TOY_TEMPERATURE = 1.0 / MOLAR_GAS_CONSTANT  # K, so that kT = 1 kJ/mol
_SPECTATORS = {1: ("y", "z"), 2: ("z",)}


@dataclass(frozen=True)
class ToyPotential:
    """A potential u(x) in reduced units over ``dim`` natural coordinates.

    ``u`` maps a torch tensor [batch, dim] to [batch]; ``external`` is the OpenMM expression of the per-particle
    part in ``x``/``y`` (one string per particle, or one for all); ``pair`` couples consecutive particles through
    a CustomCompoundBondForce in ``x1``, ``x2`` (the harmonic chain); ``start`` is a point in a low-energy basin.
    """

    name: str
    n_particles: int
    dim_per_particle: int
    u: Callable[[torch.Tensor], torch.Tensor]
    external: tuple[str, ...]
    start: tuple[float, ...]
    description: str
    pair: str = ""

    @property
    def dim(self) -> int:
        return self.n_particles * self.dim_per_particle

    def natural(self, positions: torch.Tensor) -> torch.Tensor:
        """Natural coordinates [batch, dim] of particle positions [batch, n_particles, 3]."""
        return positions[..., : self.dim_per_particle].reshape(*positions.shape[:-2], self.dim)

    def positions(self, x) -> np.ndarray:
        """Particle positions [n_particles, 3] (nm) of natural coordinates ``x`` [dim]; spectators at 0."""
        out = np.zeros((self.n_particles, 3))
        out[:, : self.dim_per_particle] = np.asarray(x, dtype=float).reshape(self.n_particles, -1)
        return out

    def energy(self, positions: torch.Tensor) -> torch.Tensor:
        """Energy in kJ/mol (= reduced, kT = 1) of positions [batch, n_particles, 3], the OpenMM twin."""
        spectators = positions[..., self.dim_per_particle:]
        return self.u(self.natural(positions)) + 0.5 * spectators.pow(2).sum(dim=(-1, -2))

    def openmm_forces(self) -> list[openmm.Force]:
        spectator = "+".join(f"0.5*{s}^2" for s in _SPECTATORS[self.dim_per_particle])
        per_particle = self.external if len(self.external) == self.n_particles else self.external * self.n_particles
        forces = []
        for expression in sorted(set(per_particle)):
            force = openmm.CustomExternalForce(f"({expression})+{spectator}" if expression else spectator)
            for i, e in enumerate(per_particle):
                if e == expression:
                    force.addParticle(i, [])
            forces.append(force)
        if self.pair:
            bond = openmm.CustomCompoundBondForce(2, self.pair)
            for i in range(self.n_particles - 1):
                bond.addBond([i, i + 1], [])
            forces.append(bond)
        return forces


def _double_well(x):
    return x[:, 0] ** 4 / 4 - 3 * x[:, 0] ** 2 + x[:, 0] + x[:, 1] ** 2 / 2


_MB_A = (-200.0, -100.0, -170.0, 15.0)
_MB_a = (-1.0, -1.0, -6.5, 0.7)
_MB_b = (0.0, 0.0, 11.0, 0.6)
_MB_c = (-10.0, -10.0, -6.5, 0.7)
_MB_X = (1.0, 0.0, -0.5, -1.0)
_MB_Y = (0.0, 0.5, 1.5, 1.0)


def _mueller_brown(x):
    dx = [x[:, 0] - x0 for x0 in _MB_X]
    dy = [x[:, 1] - y0 for y0 in _MB_Y]
    terms = [A * torch.exp(a * u * u + b * u * v + c * v * v)
             for A, a, b, c, u, v in zip(_MB_A, _MB_a, _MB_b, _MB_c, dx, dy)]
    return 0.1 * sum(terms)


_MB_EXPRESSION = "0.1*(" + "+".join(
    f"({A})*exp(({a})*(x-({x0}))^2+({b})*(x-({x0}))*(y-({y0}))+({c})*(y-({y0}))^2)"
    for A, a, b, c, x0, y0 in zip(_MB_A, _MB_a, _MB_b, _MB_c, _MB_X, _MB_Y)) + ")"


def _three_well(x):
    X, Y = x[:, 0], x[:, 1]
    return (3 * torch.exp(-X**2 - (Y - 1 / 3) ** 2) - 3 * torch.exp(-X**2 - (Y - 5 / 3) ** 2)
            - 5 * torch.exp(-(X - 1) ** 2 - Y**2) - 5 * torch.exp(-(X + 1) ** 2 - Y**2)
            + 0.2 * X**4 + 0.2 * (Y - 1 / 3) ** 4)


_THREE_WELL_EXPRESSION = ("3*exp(-x^2-(y-1/3)^2)-3*exp(-x^2-(y-5/3)^2)-5*exp(-(x-1)^2-y^2)-5*exp(-(x+1)^2-y^2)"
                          "+0.2*x^4+0.2*(y-1/3)^4")


def _ring(x):
    return (torch.linalg.vector_norm(x, dim=-1) - 2.0) ** 2 / 0.32


@dataclass(frozen=True)
class _Mixture:
    """A 2D Gaussian mixture: weights, means [K, 2] and covariances [K, 2, 2]; u = −log p."""

    weights: tuple[float, ...]
    means: tuple[tuple[float, float], ...]
    covariances: tuple[tuple[tuple[float, float], tuple[float, float]], ...]

    def _terms(self):
        for w, m, c in zip(self.weights, self.means, self.covariances):
            P = np.linalg.inv(np.array(c))
            yield w / (2 * math.pi * math.sqrt(np.linalg.det(c))), np.array(m), P

    def u(self, x):
        logs = []
        for norm, m, P in self._terms():
            d = x - torch.as_tensor(m, dtype=x.dtype, device=x.device)
            quad = P[0, 0] * d[:, 0] ** 2 + 2 * P[0, 1] * d[:, 0] * d[:, 1] + P[1, 1] * d[:, 1] ** 2
            logs.append(math.log(norm) - 0.5 * quad)
        return -torch.logsumexp(torch.stack(logs), dim=0)

    def expression(self) -> str:
        terms = []
        for norm, m, P in self._terms():
            (a, b), c, (mx, my) = P[0].tolist(), float(P[1, 1]), m.tolist()
            terms.append(f"{norm}*exp(-0.5*(({a})*(x-({mx}))^2+2*({b})*(x-({mx}))*(y-({my}))+({c})*(y-({my}))^2))")
        return "-log(" + "+".join(terms) + ")"


_INDEPENDENT = _Mixture(weights=(0.25,) * 4, means=((-2, -2), (-2, 2), (2, -2), (2, 2)),
                        covariances=(((0.25, 0.0), (0.0, 0.25)),) * 4)
_CORRELATED = _Mixture(weights=(0.5, 0.5), means=((-1.5, -1.5), (1.5, 1.5)),
                       covariances=(((0.5, 0.4), (0.4, 0.5)),) * 2)


def harmonic_chain(n: int = 16) -> ToyPotential:
    """n beads on a line with unit springs and both ends tied to 0: u = ½Σ_{i=0}^{n}(q_{i+1} − q_i)², q_0 = q_{n+1} = 0.

    Normal-mode frequencies ω_k = 2 sin(πk / (2n + 2)), k = 1…n.
    """
    if n < 2:
        raise ValueError(f"the harmonic chain needs at least 2 beads, got n={n}")

    def u(q):
        padded = torch.nn.functional.pad(q, (1, 1))
        return 0.5 * torch.diff(padded, dim=-1).pow(2).sum(-1)

    ends = ("0.5*x^2",) + ("",) * (n - 2) + ("0.5*x^2",)
    return ToyPotential("harmonic-chain", n, 1, u, ends, (0.0,) * n,
                        f"harmonic chain of {n} beads with fixed ends", pair="0.5*(x2-x1)^2")


TOY_POTENTIALS: dict[str, Callable[..., ToyPotential]] = {
    "double-well": lambda: ToyPotential(
        "double-well", 1, 2, _double_well, ("x^4/4-3*x^2+x+y^2/2",), (-2.5, 0.0),
        "u = x1^4/4 - 3 x1^2 + x1 + x2^2/2 (deep well at x1 ≈ -2.5, shallow at x1 ≈ 2.3)"),
    "mueller-brown": lambda: ToyPotential(
        "mueller-brown", 1, 2, _mueller_brown, (_MB_EXPRESSION,), (-0.558, 1.442),
        "Müller-Brown potential scaled by 0.1"),
    "three-well": lambda: ToyPotential(
        "three-well", 1, 2, _three_well, (_THREE_WELL_EXPRESSION,), (-1.0, 0.0),
        "three-hole potential of Metzner, Schütte & Vanden-Eijnden (2006): wells at (±1, 0) and (0, 5/3)"),
    "ring": lambda: ToyPotential(
        "ring", 1, 2, _ring, ("(sqrt(x^2+y^2)-2)^2/0.32",), (2.0, 0.0), "Ringworld: u = (|q| - 2)^2 / 0.32"),
    "gmm-independent": lambda: ToyPotential(
        "gmm-independent", 1, 2, _INDEPENDENT.u, (_INDEPENDENT.expression(),), (-2.0, -2.0),
        "four Gaussians at (±2, ±2), std 0.5: p(x, y) = p(x) p(y)"),
    "gmm-correlated": lambda: ToyPotential(
        "gmm-correlated", 1, 2, _CORRELATED.u, (_CORRELATED.expression(),), (-1.5, -1.5),
        "two correlated Gaussians at ±(1.5, 1.5), covariance [[0.5, 0.4], [0.4, 0.5]]"),
    "harmonic-chain": harmonic_chain,
}


def make_spec(name: str, friction: float = 1.0, timestep: float = 1e-3, **options) -> SystemSpec:
    """A SystemSpec for toy ``name``: unit-mass particles, kT = 1 kJ/mol, overdamped dynamics by default.

    ``friction`` in 1/ps (diffusion constant D = kT/(m·friction) nm²/ps), ``timestep`` in ps.
    """
    toy = TOY_POTENTIALS[name](**options)
    system = openmm.System()
    topology = app.Topology()
    chain = topology.addChain()
    element = app.Element.getBySymbol("Ar")
    for i in range(toy.n_particles):
        system.addParticle(1.0)
        topology.addAtom(f"P{i}", element, topology.addResidue("TOY", chain))
    for force in toy.openmm_forces():
        system.addForce(force)
    return SystemSpec(name=name, system=system, topology=topology, positions=toy.positions(toy.start),
                      temperature=TOY_TEMPERATURE, timestep=timestep, friction=friction, dynamics="brownian",
                      toy=toy, description=toy.description)
