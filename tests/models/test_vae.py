"""backbone=vae with objective=vae: Orion's recurrent VAE at its published sizes, the KL term
against torch.distributions, the sampling (the corrected reparameterisation and decoding the
mean when scoring by default; the reference's z = mu + s * eps in both modes under
reference_quirks), and the loss the reference minimises."""
import pytest
import torch
from torch import distributions as D

from madbench.errors import ConfigError
from madbench.models.vae import LSTMVAE
from madbench.objectives.vae import VAEObjective, kl_term


def test_architecture_at_orions_sizes():
    m = LSTMVAE(55, 1, 100)  # orion.primitives.vae.VAE.json: lstm_units 60, latent_dim 20
    assert (m.encoder.input_size, m.encoder.hidden_size) == (55, 60)
    assert m.to_mean.weight.shape == m.to_log_sigma.weight.shape == (20, 60)
    assert (m.decoder.input_size, m.decoder.hidden_size) == (20, 60)
    assert m.out.weight.shape == (1, 60)
    out = m.eval()(torch.randn(4, 100, 55))
    assert out.reconstruction.shape == (4, 100, 1) and out.embedding.shape == (4, 100, 60)
    assert out.extras["mu"].shape == out.extras["log_sigma"].shape == (4, 20)


def test_kl_term_is_the_gaussian_divergence_averaged():
    torch.manual_seed(0)
    mu, s = torch.randn(5, 20), torch.randn(5, 20)
    expected = D.kl_divergence(D.Normal(mu, torch.exp(0.5 * s)), D.Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(kl_term(mu, s), expected)


def test_sampling_by_default_and_under_the_reference_quirks():
    x = torch.randn(3, 12, 4)
    m = LSTMVAE(4, 2, 12, hidden=8, latent=5)
    torch.manual_seed(1)
    out = m.train()(x)
    mu, s = out.extras["mu"], out.extras["log_sigma"]
    torch.manual_seed(1)
    eps = torch.randn_like(mu)
    torch.testing.assert_close(out.extras["latent"], mu + torch.exp(0.5 * s) * eps)
    # scoring decodes the mean: the same window always gets the same reconstruction
    m.eval()
    torch.testing.assert_close(m(x).extras["latent"], mu)
    torch.testing.assert_close(m(x).reconstruction, m(x).reconstruction)
    # the reference: z = mu + s * eps, also when scoring (one random draw per call)
    q = LSTMVAE(4, 2, 12, hidden=8, latent=5, reference_quirks=True)
    q.load_state_dict(m.state_dict())
    q.eval()
    torch.manual_seed(1)
    out = q(x)
    torch.testing.assert_close(out.extras["latent"], mu + s * eps)
    assert not torch.equal(q(x).reconstruction, q(x).reconstruction)


def test_loss_is_mse_plus_kl_and_reaches_every_parameter():
    torch.manual_seed(0)
    m = LSTMVAE(4, 2, 12, hidden=8, latent=5).train()
    x = torch.randn(6, 12, 4)
    batch = {"x": x, "y": x[..., :2]}
    out = m(x)
    obj = VAEObjective()
    d = obj.loss(batch, out)
    rec = torch.mean((out.reconstruction - batch["y"]) ** 2)
    kl = kl_term(out.extras["mu"], out.extras["log_sigma"])
    torch.testing.assert_close(d["loss"], rec + kl)
    torch.testing.assert_close(d["kl"], kl.detach())
    d["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    step, res = obj.score(batch, out)
    torch.testing.assert_close(res, batch["y"] - out.reconstruction)
    torch.testing.assert_close(VAEObjective(kl_weight=0.0).loss(batch, out)["loss"], rec)


def test_bad_sizes_are_one_line():
    with pytest.raises(ConfigError, match=r"backbone.model.latent=0; expected an integer >= 1"):
        LSTMVAE(4, 2, 12, latent=0)
    with pytest.raises(ConfigError, match=r"objective.kl_weight=-1"):
        VAEObjective(kl_weight=-1)
