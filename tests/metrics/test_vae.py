"""VAE latent-space metrics (cvplug.metrics.vae) and VAE-based Monte Carlo (cvplug.plugins.flowvae.vae_mc)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvplug.metrics import active_dimensions, f_acc, jd_encode, jd_prior, total_correlation
from cvplug.metrics.vae import jeffreys_gaussian
from cvplug.plugins.flowvae import GaussianEncoder, InputEmbedding, VAEMonteCarlo, make_decoder

SIGMA = 1.5  # the harmonic toy: u(x) = x² / (2 σ²), Boltzmann density N(0, σ²)


def harmonic_u(x):
    return x[:, 0] ** 2 / (2 * SIGMA**2)


class StandardNormal:
    """The exact N(0, 1) prior of the harmonic VAE below (the protocol: log_prob, sample)."""

    n_components = 1

    def log_prob(self, z):
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    def sample(self, n):
        return torch.randn(n, 1)


def harmonic_vae(a=1.2, s=None):
    """P(z) = N(0, 1), P(x|z) = N(a z, s²) and q(z|x) the exact posterior N(a x/σ², s²/σ²).

    With s² = σ² − a² the joint equals exp(−u(x)) q(z|x) / Z exactly; another s makes every density wrong.
    """
    exact_s = math.sqrt(SIGMA**2 - a**2)
    s = exact_s if s is None else s
    encoder = GaussianEncoder(InputEmbedding(torch.zeros(1), torch.ones(1), torch.tensor([False])), 1, hidden=())
    decoder = make_decoder("condind", 1, torch.zeros(1), torch.ones(1), torch.tensor([False]), hidden=())
    with torch.no_grad():
        encoder.net[0].weight.copy_(torch.tensor([[a / SIGMA**2], [0.0]]))
        encoder.net[0].bias.copy_(torch.tensor([0.0, math.log(exact_s**2 / SIGMA**2)]))
        decoder.net[0].weight.copy_(torch.tensor([[a], [0.0]]))
        decoder.net[0].bias.copy_(torch.tensor([0.0, math.log(s)]))
    return encoder, StandardNormal(), decoder


def test_f_acc_is_one_for_an_exact_vae_of_the_harmonic_toy():
    torch.manual_seed(0)
    x = SIGMA * torch.randn(4000, 1)
    assert f_acc(*harmonic_vae(), harmonic_u, x) >= 0.999


def test_f_acc_drops_for_an_inexact_vae():
    torch.manual_seed(0)
    x = SIGMA * torch.randn(4000, 1)
    assert f_acc(*harmonic_vae(s=0.3), harmonic_u, x) < 0.6


def test_vae_mc_samples_the_boltzmann_density_even_with_an_inexact_vae():
    torch.manual_seed(1)
    encoder, prior, decoder = harmonic_vae(a=1.0, s=0.5)
    sampler = VAEMonteCarlo(SimpleNamespace(encoder=encoder, prior=prior, decoder=decoder), harmonic_u, torch.full((4000, 1), 3.0))  # all chains start far out
    states, acceptance = sampler.run(40)
    final = states[-1, :, 0]
    assert 0.05 < acceptance < 0.95
    assert float(final.mean()) == pytest.approx(0.0, abs=4 * SIGMA / math.sqrt(4000))
    assert float(final.var()) == pytest.approx(SIGMA**2, rel=0.08)


def test_vae_mc_refuses_starting_points_without_finite_energy():
    encoder, prior, decoder = harmonic_vae()
    with pytest.raises(ValueError, match="finite energy"):
        VAEMonteCarlo(SimpleNamespace(encoder=encoder, prior=prior, decoder=decoder), lambda x: torch.full((len(x),), math.inf), torch.zeros(3, 1))


def test_jeffreys_divergence_is_zero_for_identical_encodings_and_matches_the_closed_form():
    mean, log_var = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    assert torch.equal(jeffreys_gaussian(mean, log_var, mean, log_var), torch.zeros(50, 3))
    other_mean, other_log_var = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    p = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    q = torch.distributions.Normal(other_mean, torch.exp(0.5 * other_log_var))
    expected = torch.distributions.kl_divergence(p, q) + torch.distributions.kl_divergence(q, p)
    assert torch.allclose(jeffreys_gaussian(mean, log_var, other_mean, other_log_var), expected, rtol=1e-10)


def test_jd_encode_averages_over_pairs_per_dimension():
    mean = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 1.0]])
    log_var = torch.zeros(3, 2)
    # pairs (0,1), (1,2): JD = Δ² = 4 in dimension 0; pair (0,2): 0; dimension 1 is identical everywhere
    assert np.allclose(jd_encode(mean, log_var), [8.0 / 3.0, 0.0])
    assert jd_encode(torch.zeros(10, 2), torch.zeros(10, 2)).tolist() == [0.0, 0.0]
    assert active_dimensions([5.0, 0.09, 0.2]) == 2
    with pytest.raises(ValueError):
        jd_encode(torch.zeros(1, 2), torch.zeros(1, 2))


def test_jd_prior_matches_the_closed_form_for_a_wide_gaussian():
    scale, d = 2.0, 2
    z = scale * torch.randn(200000, d, generator=torch.Generator().manual_seed(0))
    exact = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(d), scale * torch.ones(d)), 1)
    expected = d * (scale**2 / 2 + 1 / (2 * scale**2) - 1)  # J(N(0, s²I), N(0, I))
    assert jd_prior(z, exact.log_prob, mean=torch.zeros(d)) == pytest.approx(expected, rel=0.03)
    assert jd_prior(z / scale, lambda v: exact.log_prob(v * scale) + d * math.log(scale),
                    mean=torch.zeros(d)) == pytest.approx(0.0, abs=0.02)


def test_total_correlation_of_a_correlated_gaussian():
    rho = 0.8
    cov = torch.tensor([[1.0, rho], [rho, 1.0]])
    gaussian = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
    torch.manual_seed(0)
    z = gaussian.sample((200000,))
    assert total_correlation(z, gaussian.log_prob) == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.02)
    independent = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
    assert total_correlation(independent.sample((200000,)), independent.log_prob) == pytest.approx(0.0, abs=0.02)
    assert total_correlation(torch.randn(100, 1), independent.log_prob) == 0.0
