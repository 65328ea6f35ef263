"""flowvae scientific check on Müller–Brown (slow, ≈ 1 min on 2 quiet cores): decoder power decides whether a 1D latent is used.

Monroe & Shen (2022): at β_reg = 1 the unit-variance "mse" decoder leaves the latent unused (JD_encode < 0.1)
while the "condind" decoder uses it (JD_encode > 0.1); at β_reg = 0 the VAE memorises and VAE-MC moves are
almost never accepted. The full table (3 seeds, 5 β, 4 decoders) is benchmarks/reproductions/flowvae/mueller_brown.py.
"""
import pytest
import torch

from cvplug import systems
from cvplug.plugins.flowvae import fit_vae, score
from cvplug.plugins.flowvae.toys import grid_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mueller_brown():
    spec = systems.load("mueller-brown")
    x = grid_sample(spec.toy.u, (-2.0, -1.0), (1.5, 2.5), 6000, seed=0)
    return spec, x[:4000], x[4000:]


def _fit(x, decoder, beta, epochs=15):
    torch.set_num_threads(1)
    return fit_vae(x, [False, False], 1, decoder, beta=beta, epochs=epochs, anneal_epochs=5, lr=1e-3, seed=0,
                   validation_fraction=0.0, progress=False)[0]


@pytest.fixture(scope="module")
def condind_beta_one(mueller_brown):
    spec, train, test = mueller_brown
    return score(_fit(train, "condind", 1.0), test, spec.toy.u)


def test_condind_uses_the_latent_and_mse_does_not_at_beta_one(mueller_brown, condind_beta_one):
    spec, train, test = mueller_brown
    mse = score(_fit(train, "mse", 1.0), test)
    assert mse["jd_encode"][0] < 0.1 < condind_beta_one["jd_encode"][0]
    assert condind_beta_one["nll"] + condind_beta_one["kl"] < mse["nll"] + mse["kl"] - 1.0  # condind fits far better


def test_beta_zero_memorises_and_vae_mc_rejects(mueller_brown, condind_beta_one):
    spec, train, test = mueller_brown
    memorised = score(_fit(train, "condind", 0.0, epochs=30), test, spec.toy.u)  # memorising takes a while
    assert memorised["jd_encode"][0] > 100 * condind_beta_one["jd_encode"][0]  # encodings no longer overlap
    assert memorised["f_acc"] < 0.25 * condind_beta_one["f_acc"]
