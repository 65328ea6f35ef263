"""flowvae scientific check on Müller–Brown (slow, ≈ 1 min on 2 quiet cores): decoder power decides whether a 1D latent is used.

Monroe & Shen (2022): at β_reg = 1 the unit-variance "mse" decoder leaves the latent unused (JD_encode < 0.1)
while the "condind" decoder uses it (JD_encode > 0.1); at β_reg = 0 the VAE memorises and VAE-MC moves are
almost never accepted. The full table (3 seeds, 5 β, 4 decoders) is benchmarks/reproductions/flowvae/mueller_brown.py.
"""
import pytest

from cvplug import systems
from cvplug.plugins.flowvae import fit_vae, score
from cvplug.plugins.flowvae.toys import grid_sample

pytestmark = pytest.mark.slow


def _fit(x, decoder, beta, epochs=15):
    return fit_vae(x, [False, False], 1, decoder, beta=beta, epochs=epochs, anneal_epochs=5, lr=1e-3, seed=0,
                   validation_fraction=0.0, progress=False)[0]


def test_decoder_power_decides_whether_the_latent_is_used(one_thread):
    """At β = 1 condind uses the latent and mse does not; at β = 0 condind memorises and VAE-MC rejects."""
    spec = systems.load("mueller-brown")
    x = grid_sample(spec.toy.u, (-2.0, -1.0), (1.5, 2.5), 6000, seed=0)
    train, test = x[:4000], x[4000:]
    condind = score(_fit(train, "condind", 1.0), test, spec.toy.u)
    mse = score(_fit(train, "mse", 1.0), test)
    assert mse["jd_encode"][0] < 0.1 < condind["jd_encode"][0]
    assert condind["nll"] + condind["kl"] < mse["nll"] + mse["kl"] - 1.0  # condind fits far better
    memorised = score(_fit(train, "condind", 0.0, epochs=30), test, spec.toy.u)  # memorising takes a while
    assert memorised["jd_encode"][0] > 100 * condind["jd_encode"][0]  # encodings no longer overlap
    assert memorised["f_acc"] < 0.25 * condind["f_acc"]
