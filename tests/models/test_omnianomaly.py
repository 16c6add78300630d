"""backbone=omnianomaly with objective=omnianomaly: the state-space prior against a Kalman
filter and a multivariate normal, the planar flows against autograd, the latent chain
against a step-by-step transcription, the −ELBO from its pieces, the score and residuals,
seeded eval-mode sampling (same seed, same scores, whatever the batches), the per-tensor
gradient clip, and each reference quirk against the corrected default."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from madbench import run
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector, FitContext
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.models.omnianomaly import (OmniAnomaly, PlanarFlow, normal_from_uniform, random_walk_cholesky,
                                          window_uniforms)
from madbench.objectives.omnianomaly import OmniAnomalyObjective
from tests.conftest import compose_cfg, stored

L, D, S = 12, 4, 3


def small(**kw):
    torch.manual_seed(kw.pop("init_seed", 0))
    return OmniAnomaly(D, S, L, rnn_hidden=8, dense_dim=6, z_dim=3, nf_layers=3, **kw)


def batch(B=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=g)
    return {"x": x, "y": x[..., :S].clone()}


# -- the prior ---------------------------------------------------------------------------------
def kalman_log_likelihoods(y: np.ndarray) -> np.ndarray:
    """tfp LinearGaussianStateSpaceModel.forward_filter with identity transition and
    observation matrices, unit transition/observation noise and N(0, I) initial state:
    the one-step log-likelihoods log p(y_t | y_<t), [L]."""
    d = y.shape[1]
    F = H = Q = R = np.eye(d)
    m, P = np.zeros(d), np.eye(d)          # the initial state prior is the state at t = 1
    out = []
    for t in range(len(y)):
        S_ = H @ P @ H.T + R
        out.append(stats.multivariate_normal(H @ m, S_).logpdf(y[t]))
        K = P @ H.T @ np.linalg.inv(S_)
        m = m + K @ (y[t] - H @ m)
        P = (np.eye(d) - K @ H) @ P
        m, P = F @ m, F @ P @ F.T + Q
    return np.array(out)


def test_prior_is_the_state_space_models_kalman_filter_and_its_joint_normal():
    y = np.random.default_rng(0).normal(scale=2.0, size=(L, 3))
    ours = small().prior_log_prob(torch.tensor(y, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(ours, kalman_log_likelihoods(y), rtol=1e-4, atol=1e-4)
    t = np.arange(1, L + 1)
    cov = np.minimum(t[:, None], t[None, :]) + np.eye(L)
    joint = sum(stats.multivariate_normal(np.zeros(L), cov).logpdf(y[:, j]) for j in range(3))
    assert ours.sum() == pytest.approx(joint, rel=1e-5)
    # another window length than the model's is computed on the fly
    short = small().prior_log_prob(torch.tensor(y[:5], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(short, kalman_log_likelihoods(y[:5]), rtol=1e-4, atol=1e-4)
    c_inv, _ = random_walk_cholesky(4)
    assert torch.allclose(torch.tril(c_inv), c_inv)


# -- the flows ---------------------------------------------------------------------------------
def test_planar_flow_log_det_is_the_log_abs_jacobian_determinant():
    torch.manual_seed(0)
    f = PlanarFlow(3)
    with torch.no_grad():   # large parameters, so û differs from u and tanh saturates somewhere
        f.w.copy_(torch.tensor([1.5, -2.0, 0.7]))
        f.u.copy_(torch.tensor([-3.0, 0.2, 1.0]))
        f.b.fill_(0.3)
    for z in torch.randn(6, 3, dtype=torch.float64).float():
        jac = torch.autograd.functional.jacobian(lambda v: f(v)[0], z)
        _, ld = f(z)
        assert ld.item() == pytest.approx(torch.linalg.slogdet(jac.double())[1].item(), abs=1e-4)
        # invertibility: wᵀû >= −1, so 1 + (1 − tanh²)·wᵀû > 0
        wu = torch.dot(f.w, f.u)
        u_hat = f.u + (torch.nn.functional.softplus(wu) - 1 - wu) * f.w / (f.w ** 2).sum()
        assert torch.dot(f.w, u_hat).item() >= -1
    y, ld = small().flow(torch.randn(2, 5, L, 3))
    assert y.shape == (2, 5, L, 3) and ld.shape == (2, 5, L)


# -- the chain, the ELBO -------------------------------------------------------------------------
def test_chain_is_the_recurrent_posterior_step_by_step():
    m = small()
    x = batch()["x"]
    e = m.q_dense(m.q_rnn(x)[0])
    eps = torch.randn(2, *x.shape[:2], 3)
    z, mu, sd = m.chain(e, eps)
    z_prev = torch.zeros(2, x.shape[0], 3)            # z_0 = 0 (the scan's initializer)
    for t in range(L):
        inp = torch.cat([e[:, t].expand(2, -1, -1), z_prev], -1)   # [e_t, z_{t−1}]
        mu_t = m.z_mean(inp)
        sd_t = torch.nn.functional.softplus(m.z_std(inp)) + 1e-4
        z_prev = mu_t + sd_t * eps[:, :, t]
        torch.testing.assert_close(z[:, :, t], z_prev, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sd[:, :, t], sd_t, rtol=1e-5, atol=1e-6)


def test_negative_elbo_is_finite_and_the_sum_of_its_parts():
    m, obj = small(), OmniAnomalyObjective()
    b = batch()
    out = m(b["x"])
    x = out.extras
    assert out.embedding.shape == (5, L, 6) and x["px_mean"].shape == (1, 5, L, S) and x["log_q"].shape == (1, 5, L)
    # by hand, from distributions: the chain's own μ, σ and the flows' log-determinants
    e = m.q_dense(m.q_rnn(b["x"])[0])
    torch.manual_seed(3)
    m.train()
    eps = torch.randn(1, 5, L, 3)
    z, mu, sd = m.chain(e, eps)
    y, log_det = m.flow(z)
    log_q = torch.distributions.Normal(mu, sd).log_prob(z).sum(-1) - log_det
    px_mean, px_std = m.decode(y)
    log_px = torch.distributions.Normal(px_mean, px_std).log_prob(b["y"]).sum(-1)
    expected = (-log_px - m.prior_log_prob(y) + log_q).mean()
    torch.manual_seed(3)
    loss = obj.loss(b, m(b["x"]))
    assert torch.isfinite(loss["loss"])
    assert loss["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss["nll_x"].item() == pytest.approx(-log_px.mean().item(), rel=1e-5)


def test_score_is_the_shifted_reconstruction_nll_of_every_step_with_residuals():
    m, obj = small(n_samples=3), OmniAnomalyObjective(std_epsilon=1e-4)
    m.eval()
    b = batch()
    out = m(b["x"])
    step, res = obj.score(b, out)
    assert step.shape == (5, L) and res.shape == (5, L, S)
    mean, std = out.extras["px_mean"], out.extras["px_std"]
    assert mean.shape[0] == 3
    nll = -torch.distributions.Normal(mean, std).log_prob(b["y"]).sum(-1).mean(0)   # over the 3 samples
    torch.testing.assert_close(step, nll - S * math.log(math.sqrt(2 * math.pi) * 1e-4))
    assert (step >= 0).all()
    torch.testing.assert_close(res, b["y"] - mean.mean(0))


# -- seeded sampling ------------------------------------------------------------------------------
def test_eval_noise_is_standard_normal_independent_and_a_function_of_the_window():
    x = torch.randn(400, L, D)
    u = window_uniforms(x, seed=0, shape=(2, L, 3))                    # [2, 400, L, 3]
    assert u.shape == (2, 400, L, 3) and ((u > 0) & (u < 1)).all()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3
    eps = normal_from_uniform(u)
    assert stats.kstest(eps.flatten().numpy(), "norm").pvalue > 1e-3
    flat = eps.reshape(-1, L * 3).numpy()
    assert abs(np.corrcoef(flat[:-1].ravel(), flat[1:].ravel())[0, 1]) < 0.02    # neighbouring windows
    assert abs(np.corrcoef(eps[0].flatten(), eps[1].flatten())[0, 1]) < 0.02      # two samples
    # a window's noise does not depend on the other windows, and depends on the seed
    perm = torch.randperm(400)
    torch.testing.assert_close(window_uniforms(x[perm], 0, (2, L, 3)), u[:, perm], rtol=0, atol=0)
    assert not torch.equal(window_uniforms(x, 1, (2, L, 3)), u)
    trunc = normal_from_uniform(u, truncated=True).flatten().numpy()
    assert np.abs(trunc).max() < 2 and stats.kstest(trunc, stats.truncnorm(-2, 2).cdf).pvalue > 1e-3


def test_same_seed_gives_the_same_scores_whatever_the_batches():
    rng = np.random.default_rng(0)
    w = Windows(rng.normal(size=(60, D)).astype(np.float32), WindowSpec(window=L))
    cols, sens = np.arange(D), np.arange(S)

    def scores(seed, eval_batch_size, n_samples=2):
        det = Detector(small(seed=seed, n_samples=n_samples), OmniAnomalyObjective())
        (s,) = Trainer(device="cpu", progress=False, eval_batch_size=eval_batch_size).score(det, w, cols, sens)
        return s

    a, b = scores(0, 1000), scores(0, 7)
    np.testing.assert_allclose(a.step, b.step, rtol=1e-5)
    np.testing.assert_allclose(a.residuals, b.residuals, rtol=1e-5, atol=1e-6)
    assert np.isfinite(a.step).all() and (a.step >= 0).all()
    assert not np.allclose(scores(1, 1000).step, a.step)      # the seed matters
    assert not np.allclose(scores(0, 1000, n_samples=1).step, a.step)


# -- optimisation --------------------------------------------------------------------------------
def test_each_gradient_tensor_is_clipped_on_its_own_and_the_lr_anneals():
    w = Windows(np.random.default_rng(0).normal(scale=5, size=(80, D)).astype(np.float32), WindowSpec(window=L))
    clip = 1e-3
    det = Detector(small(), OmniAnomalyObjective(clip_norm=clip, lr_anneal_epochs=1, lr_anneal_factor=0.5))
    tr = Trainer(device="cpu", progress=False, optimizer=lambda params: torch.optim.SGD(params, lr=1.0))
    ctx = FitContext(tr, det, w, *w.split(0.2), torch.arange(D), torch.arange(S))
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(tr.make_optimizer)
    b = tr.batch(w, np.arange(30), torch.arange(D), torch.arange(S))
    before = {n: p.detach().clone() for n, p in det.named_parameters()}
    raw = {}
    det.train()
    torch.manual_seed(0)
    out = det(b["x"])
    det.total_loss(b, out)["loss"].backward()
    raw = {n: p.grad.norm().item() for n, p in det.named_parameters() if p.grad is not None}
    det.zero_grad()
    torch.manual_seed(0)
    det.training_step(b, ctx)
    steps = {n: (p.detach() - before[n]).norm().item() for n, p in det.named_parameters()}
    assert max(raw.values()) > clip                                    # something needed clipping
    assert all(s <= clip * (1 + 1e-4) for s in steps.values())         # every tensor within the clip
    assert math.sqrt(sum(s ** 2 for s in steps.values())) > clip * 1.5  # ... which a global clip would not give
    ctx.schedulers["model"].step()
    assert ctx.optimizers["model"].param_groups[0]["lr"] == pytest.approx(0.5)


# -- the reference's quirks ------------------------------------------------------------------------
def q_net_grad(m):
    b = batch()
    m.train()
    m.zero_grad()
    out = m(b["x"])
    OmniAnomalyObjective(reference_quirks=m.reference_quirks).loss(b, out)["loss"].backward()
    return [p.grad for p in [*m.q_rnn.parameters(), *m.q_dense.parameters(), *m.z_mean.parameters()]]


def test_quirk_the_q_net_gets_no_gradient_as_with_back_prop_false():
    assert all(g is not None and g.abs().sum() > 0 for g in q_net_grad(small()))
    assert all(g is None for g in q_net_grad(small(reference_quirks=True)))
    m = small(reference_quirks=True)
    q_net_grad(m)
    assert all(p.grad is not None for p in m.flows.parameters())      # the flows and p-net still train
    assert all(p.grad is not None for p in m.p_rnn.parameters())


def test_quirk_the_prior_is_left_out_of_the_loss():
    m = small()
    b = batch()
    torch.manual_seed(0)
    out = m(b["x"])
    ours = OmniAnomalyObjective().loss(b, out)["loss"]
    ref = OmniAnomalyObjective(reference_quirks=True).loss(b, out)["loss"]
    assert ref.item() == pytest.approx((ours + out.extras["log_prior"].mean()).item(), rel=1e-5)


def test_quirk_log_q_from_the_current_z_in_swapped_order():
    m = small(reference_quirks=True)
    x = batch()["x"]
    e = m.q_dense(m.q_rnn(x)[0])
    eps = torch.randn(1, *x.shape[:2], 3)
    z, mu, sd = m.chain(e, eps)
    ref = m.base_log_prob(z, mu, sd, eps, e)
    inp = torch.cat([z, e[None]], -1)                                   # [z_t, e_t]
    mu_q, sd_q = m.z_mean(inp), torch.nn.functional.softplus(m.z_std(inp)) + 1e-4
    torch.testing.assert_close(ref, torch.distributions.Normal(mu_q, sd_q).log_prob(z).sum(-1))
    m.reference_quirks = False
    ours = m.base_log_prob(z, mu, sd, eps, e)
    torch.testing.assert_close(ours, torch.distributions.Normal(mu, sd).log_prob(z).sum(-1))
    assert not torch.allclose(ours, ref)


def test_quirk_truncated_noise_and_the_mean_z_decoded():
    torch.manual_seed(0)
    x = batch(B=50)["x"]
    m, q = small(), small(reference_quirks=True)
    m.train(), q.train()
    assert m.noise(x, 4).abs().max() > 2 and q.noise(x, 4).abs().max() < 2
    m.eval(), q.eval()
    m.n_samples = q.n_samples = 3
    assert m(x).extras["px_mean"].shape[0] == 3                         # each z sample decoded
    assert q(x).extras["px_mean"].shape[0] == 1                         # the mean of the samples decoded


# -- config ---------------------------------------------------------------------------------------
def test_bad_sizes_are_one_line_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"^backbone.n_samples=0; expected an integer >= 1"):
        small(n_samples=0)
    with pytest.raises(ConfigError, match=r"^backbone.model.z_dim=0"):
        OmniAnomaly(D, S, L, z_dim=0)
    with pytest.raises(ConfigError, match=r"^objective.clip_norm=-1"):
        OmniAnomalyObjective(clip_norm=-1)


def test_a_run_trains_and_scores_with_m2ad_and_a_bad_n_samples_is_refused(tmp_path):
    cfg = compose_cfg(["backbone=omnianomaly", "dataset.n_systems=1", "trainer.epochs=1", "scoring=m2ad",
                       "protocol=[strict,m2ad]"])
    assert cfg.trainer.val_ratio == 0.3 and cfg.trainer.batch_size == 64   # debug=tiny's batch; the recipe's 30%
    df = run.main(cfg, tmp_path / "ok")
    assert (df.status == "ok").all()
    e = stored(tmp_path / "ok")["sys0"]
    assert np.isfinite(e.score).all() and e.test.residuals.shape[1] == cfg.dataset.n_sensors
    with pytest.raises(ConfigError, match=r"^backbone.n_samples=0"):
        run.main(compose_cfg(["backbone=omnianomaly", "backbone.n_samples=0", "dataset.n_systems=1"]), tmp_path / "bad")
