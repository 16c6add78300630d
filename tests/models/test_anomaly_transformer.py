"""backbone=anomaly_transformer with objective=association: the attention maps, the KL
terms and the score against the reference's formulas (thuml/Anomaly-Transformer attn.py,
solver.py, transcribed here), the minimax gradients checked by autograd (which branch each
of the two backward passes moves, and in which direction), the head loss in exactly one
pass, the LR schedule, CPU-only running, and the bad-input errors."""
import math

import numpy as np
import pytest
import torch

from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector, FitContext
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.heads.madcluster import MADClusterHead
from madbench.models.anomaly_transformer import AnomalyTransformer
from madbench.objectives.association import AssociationObjective
from tests.conftest import assert_refused_before_training, compose_cfg

C, S, L = 4, 3, 10


def small(**kw):
    torch.manual_seed(0)
    return AnomalyTransformer(C, S, L, **({"d_model": 8, "n_heads": 2, "layers": 2, "d_ff": 8} | kw))


def batch(B=6, seed=1):
    x = torch.randn(B, L, C, generator=torch.Generator().manual_seed(seed))
    return {"x": x, "y": x[..., :S].clone()}


# -- the reference's formulas, transcribed ---------------------------------------------------------
def my_kl_loss(p, q):
    res = p * (torch.log(p + 0.0001) - torch.log(q + 0.0001))
    return torch.mean(torch.sum(res, dim=-1), dim=1)


def reference_maps(layer, x):
    """attn.py AnomalyAttention + AttentionLayer for one layer's input x [B, L, d]."""
    a = layer.attention
    B, L_, _ = x.shape
    H = a.n_heads
    q = a.query(x).view(B, L_, H, -1)
    k = a.key(x).view(B, L_, H, -1)
    scores = torch.einsum("blhe,bshe->bhls", q, k)
    series = torch.softmax(1.0 / math.sqrt(q.shape[-1]) * scores, dim=-1)
    sigma = a.sigma(x).view(B, L_, H).transpose(1, 2)
    sigma = torch.pow(3, torch.sigmoid(sigma * 5) + 1e-5) - 1
    sigma = sigma.unsqueeze(-1).repeat(1, 1, 1, L_)
    dist = torch.tensor([[abs(i - j) for j in range(L_)] for i in range(L_)], dtype=torch.float32)
    prior = dist.unsqueeze(0).unsqueeze(0).repeat(B, H, 1, 1)
    prior = 1.0 / (math.sqrt(2 * math.pi) * sigma) * torch.exp(-prior ** 2 / 2 / (sigma ** 2))
    return series, prior / prior.sum(-1, keepdim=True).repeat(1, 1, 1, L_)


def reference_losses(out, y, lam=3.0):
    """solver.py train(): series_loss, prior_loss averaged over layers, loss1, loss2."""
    series, prior = out.extras["series"], out.extras["prior"]
    s_loss = p_loss = 0.0
    for u in range(len(prior)):
        s_loss += torch.mean(my_kl_loss(series[u], prior[u].detach())) + torch.mean(my_kl_loss(prior[u].detach(), series[u]))
        p_loss += torch.mean(my_kl_loss(prior[u], series[u].detach())) + torch.mean(my_kl_loss(series[u].detach(), prior[u]))
    s_loss, p_loss = s_loss / len(prior), p_loss / len(prior)
    rec = torch.nn.functional.mse_loss(out.reconstruction, y)
    return rec, s_loss, p_loss


def test_series_and_prior_maps_follow_the_reference():
    model = small()
    x = batch()["x"]
    out = model(x)
    with torch.no_grad():
        h = model.token(x.transpose(1, 2)).transpose(1, 2) + model.pe[:, :L]
        for i, layer in enumerate(model.layers):
            s, p = reference_maps(layer, h)
            torch.testing.assert_close(out.extras["series"][i], s)
            torch.testing.assert_close(out.extras["prior"][i], p)
            h = layer(h)[0]
        torch.testing.assert_close(out.embedding, model.norm(h))       # the embedding: after the final LN
    torch.testing.assert_close(out.reconstruction, model.projection(out.embedding))
    assert out.embedding.shape == (6, L, 8) and out.reconstruction.shape == (6, L, S)
    assert out.extras["series"][0].shape == (6, 2, L, L)


def test_prior_softmax_equals_the_reference_gaussian_from_tiny_to_wide_sigma():
    """P̂ = softmax_j(−|i − j|²/2σ²) against the reference's normalised Gaussian
    (1/√(2π)σ · exp(−|i − j|²/2σ²), divided by its row sum; ``reference_maps`` above), with σ
    pushed to its floor (≈1e-5: the exp underflows to a one-hot row) and to its ceiling (2):
    within 1e-6 absolute, 1e-5 relative."""
    for bias in (-20.0, 0.0, 20.0):
        model = small()
        with torch.no_grad():
            for layer in model.layers:
                layer.attention.sigma.bias.fill_(bias)
        x = batch()["x"]
        with torch.no_grad():
            out = model(x)
            h = model.token(x.transpose(1, 2)).transpose(1, 2) + model.pe[:, :L]
            _, ref = reference_maps(model.layers[0], h)
        torch.testing.assert_close(out.extras["prior"][0], ref, rtol=1e-5, atol=1e-6)
        if bias < 0:
            torch.testing.assert_close(out.extras["prior"][0], torch.eye(L).expand_as(ref))


def test_fused_symmetric_kl_equals_the_reference_kl_pair_values_and_gradients():
    """Σ(s − p)(log(s + ε) − log(p + ε)) against my_kl_loss(s, p) + my_kl_loss(p, s), with
    the detaches of series_loss and prior_loss: values within 1e-6 relative in float32 and
    1e-12 in float64, gradients within 1e-5 relative (float32)."""
    from madbench.objectives.association import association_losses, symmetric_kl_rows

    gen = torch.Generator().manual_seed(3)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        s = torch.softmax(3 * torch.randn(4, 2, L, L, generator=gen, dtype=dtype), -1).requires_grad_()
        p = torch.softmax(3 * torch.randn(4, 2, L, L, generator=gen, dtype=dtype), -1).requires_grad_()
        torch.testing.assert_close(symmetric_kl_rows(s, p), my_kl_loss(s, p) + my_kl_loss(p, s), rtol=tol, atol=tol)
        s_loss, p_loss = association_losses([s, s * 0.5 + 0.5 / L], [p, p])
        ref_s = ref_p = 0.0
        for a, b in ((s, p), (s * 0.5 + 0.5 / L, p)):
            ref_s = ref_s + my_kl_loss(a, b.detach()).mean() + my_kl_loss(b.detach(), a).mean()
            ref_p = ref_p + my_kl_loss(b, a.detach()).mean() + my_kl_loss(a.detach(), b).mean()
        torch.testing.assert_close(s_loss, ref_s / 2, rtol=tol, atol=tol)
        torch.testing.assert_close(p_loss, ref_p / 2, rtol=tol, atol=tol)
        g_tol = 1e-5 if dtype == torch.float32 else 1e-10
        for loss, ref in ((s_loss, ref_s / 2), (p_loss, ref_p / 2)):
            got = torch.autograd.grad(loss, (s, p), allow_unused=True, retain_graph=True)
            want = torch.autograd.grad(ref, (s, p), allow_unused=True)
            for a, b in zip(got, want):
                assert (a is None) == (b is None)
                if a is not None:
                    torch.testing.assert_close(a, b, rtol=g_tol, atol=g_tol * b.abs().max().item())
        assert torch.autograd.grad(s_loss, p, allow_unused=True) == (None,)   # the prior is detached
        assert torch.autograd.grad(p_loss, s, allow_unused=True) == (None,)   # the series is detached


def test_distance_table_is_a_buffer_and_the_model_runs_on_cpu():
    model = small().to("cpu")
    names = dict(model.named_buffers())
    assert "layers.0.attention.distances" in names and names["layers.0.attention.distances"].device.type == "cpu"
    assert names["layers.0.attention.distances"][2, 5] == 3
    assert not any("distances" in k for k in model.state_dict())   # rebuilt from the window, not saved
    assert torch.isfinite(model(batch()["x"]).reconstruction).all()


def test_paper_size_has_the_reference_parameter_count():
    # 4,863,055 in the reference, less its unused AttentionLayer.norm (3 layers × 2 × 512): MC-T2's 4.86M
    model = AnomalyTransformer(55, 55, 100)
    assert sum(p.numel() for p in model.parameters()) == 4_863_055 - 3 * 2 * 512


def test_losses_match_the_reference():
    model, obj = small(), AssociationObjective(lam=3.0)
    b = batch()
    out = model(b["x"])
    t = obj.terms(b, out)
    rec, s_loss, p_loss = reference_losses(out, b["y"])
    torch.testing.assert_close(t["rec"], rec)
    torch.testing.assert_close(t["series_loss"], s_loss)
    torch.testing.assert_close(t["prior_loss"], p_loss)
    torch.testing.assert_close(t["loss1"], rec - 3 * s_loss)
    torch.testing.assert_close(t["loss2"], rec + 3 * p_loss)
    assert s_loss.item() > 0  # the two maps differ at initialisation


def grads(params):
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


def fit_context(det, lr=0.0, **kw):
    w = Windows(np.random.default_rng(0).normal(size=(60, C)).astype(np.float32), WindowSpec(window=L))
    tr = Trainer(epochs=1, device="cpu", progress=False, optimizer=lambda params: torch.optim.SGD(params, lr=lr), **kw)
    ctx = FitContext(tr, det, w, *w.split(0.2), torch.arange(C), torch.arange(S))
    det.on_fit_start(ctx)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(tr.make_optimizer)
    ctx.epoch, ctx.stage = 1, "train"
    return ctx


def recording_passes(ctx, params):
    """Snapshots of ``params``' gradients after each backward pass of a training step."""
    snaps = []
    backward = ctx.backward

    def rec(loss, retain_graph=False):
        backward(loss, retain_graph=retain_graph)
        snaps.append(grads(params))

    ctx.backward = rec
    return snaps


def delta(after, before):
    return [a if b is None else a - b for a, b in zip(after, before)]


def test_minimax_pass_1_pushes_the_series_away_and_pass_2_pulls_the_prior_in():
    """Autograd, against the reference's loss transcribed above: pass 1 gives the σ
    projections (prior) nothing and the Q/K projections (series) the gradient of MSE −
    λ·series_loss; pass 2 gives Q/K only the MSE gradient and σ the gradient of
    λ·prior_loss. Stepping against each pass's association part raises the discrepancy
    through the series and lowers it through the prior. Q/K of the last layer: an earlier
    layer's Q/K also shape the later layers' inputs, hence their priors (as in the reference)."""
    lam = 3.0
    model, obj = small(), AssociationObjective(lam=lam)
    det = Detector(model, obj)
    att = model.layers[-1].attention
    qk = [att.query.weight, att.key.weight]
    sig = [p for layer in model.layers for p in (layer.attention.sigma.weight, layer.attention.sigma.bias)]
    ctx = fit_context(det)
    snaps = recording_passes(ctx, qk + sig)
    b = batch()
    det.training_step(b, ctx)
    pass1, pass2 = snaps[0], delta(snaps[1], snaps[0])
    qk1, sig1, qk2, sig2 = pass1[:2], pass1[2:], pass2[:2], pass2[2:]

    # independent gradients of each term, from the transcribed reference losses
    out = model(b["x"])
    rec, s_loss, p_loss = reference_losses(out, b["y"], lam)
    g_rec_qk = torch.autograd.grad(rec, qk, retain_graph=True)
    g_series_qk = torch.autograd.grad(-lam * s_loss, qk, retain_graph=True)
    g_prior_sig = torch.autograd.grad(lam * p_loss, sig, retain_graph=True)
    assert set(torch.autograd.grad(s_loss, sig, allow_unused=True, retain_graph=True)) == {None}  # prior detached
    assert torch.autograd.grad(p_loss, qk, allow_unused=True, retain_graph=True) == (None, None)    # series detached

    # pass 1: the prior branch gets nothing; Q/K get MSE − λ·series_loss
    assert sig1 == [None] * len(sig)
    for got, r, s in zip(qk1, g_rec_qk, g_series_qk):
        torch.testing.assert_close(got, r + s, rtol=1e-4, atol=1e-6)
        assert s.abs().max() > 1e-4
    # pass 2: Q/K get the MSE gradient only (once more: the reference counts it twice); σ gets λ·prior_loss
    for got, r in zip(qk2, g_rec_qk):
        torch.testing.assert_close(got, r, rtol=1e-4, atol=1e-6)
    for got, p in zip(sig2, g_prior_sig):
        torch.testing.assert_close(got, p, rtol=1e-4, atol=1e-6)
        assert p.abs().max() > 1e-6

    # directions: a small step against pass 1's association part pushes the series away
    # (the discrepancy rises); one against pass 2's pulls the prior towards the series (it falls)
    def discrepancy():
        with torch.no_grad():
            return reference_losses(model(b["x"]), b["y"], lam)[1].item()

    d0 = discrepancy()
    with torch.no_grad():
        for p, g in zip(qk, g_series_qk):
            p -= 1e-2 * g
    d1 = discrepancy()
    with torch.no_grad():
        for p, g in zip(sig, g_prior_sig):
            p -= 1e-1 * g
    d2 = discrepancy()
    assert d1 > d0 and d2 < d1


def test_head_loss_joins_exactly_one_pass():
    torch.manual_seed(0)
    head = MADClusterHead()
    det = Detector(small(), AssociationObjective(), [head])
    ctx = fit_context(det)
    head_params = [p for p in head.parameters() if p.requires_grad]
    assert len(head_params) == 2  # ν and the centre
    b = batch()
    expected = torch.autograd.grad(head.loss(det(b["x"]))["loss"], head_params)   # one head loss, before the step
    snaps = recording_passes(ctx, head_params)
    det.training_step(b, ctx)
    assert all(g is not None and g.abs().max() > 0 for g in snaps[0])          # pass 1 carries the head loss
    assert all(torch.equal(a, b_) for a, b_ in zip(snaps[1], snaps[0]))        # pass 2 adds nothing
    for got, e in zip(snaps[0], expected):                                     # ... and exactly once
        torch.testing.assert_close(got, e, rtol=1e-4, atol=1e-7)
    # the head's centre is in the model optimiser (one step for both passes), ν in its own
    model_params = {id(p) for g in ctx.optimizers["model"].param_groups for p in g["params"]}
    assert id(head.centre) in model_params and id(head.nu) not in model_params


def test_one_step_applies_the_sum_of_both_passes():
    det = Detector(small(), AssociationObjective())
    ctx = fit_context(det, lr=0.1)
    q = det.backbone.layers[0].attention.query.weight
    before = q.detach().clone()
    snaps = recording_passes(ctx, [q])
    det.training_step(batch(), ctx)
    torch.testing.assert_close(q.detach(), before - 0.1 * snaps[1][0])   # SGD on the summed gradient, once


def test_lr_is_halved_each_epoch_from_epoch_3():
    torch.manual_seed(0)
    det = Detector(small(), AssociationObjective())
    w = Windows(np.random.default_rng(0).normal(size=(40, C)).astype(np.float32), WindowSpec(window=L))
    hist = Trainer(epochs=4, batch_size=64, patience=None, device="cpu", progress=False,
                   optimizer=lambda params: torch.optim.Adam(params, lr=1e-4), lr_decay=0.9).fit(
        det, w, np.arange(C), np.arange(S))
    # the reference: adjust_learning_rate(opt, epoch + 1, lr) after each epoch → lr·0.5^(epoch − 1)
    assert [h["lr_model"] for h in hist] == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])  # trainer.lr_decay does not replace it
    assert {"train_rec", "train_assdis", "train_loss2", "val_loss1", "val_rec"} <= set(hist[0])
    assert hist[0]["val_loss"] == pytest.approx(hist[0]["val_loss1"])   # loss1 is monitored


def test_validation_monitors_the_configured_loss_plus_the_head():
    b = batch()
    for monitor in ("loss1", "loss2", "rec"):
        torch.manual_seed(0)
        det = Detector(small(), AssociationObjective(monitor=monitor), [MADClusterHead(mapping="one-class")])
        ctx = fit_context(det)
        ctx.stage = "val"
        v = det.validation_step(b, ctx)
        with torch.no_grad():
            out = det(b["x"])
            rec, s_loss, p_loss = reference_losses(out, b["y"])
            head = det.heads[0].loss(out)["loss"]
        ref = {"loss1": rec - 3 * s_loss, "loss2": rec + 3 * p_loss, "rec": rec}[monitor]
        torch.testing.assert_close(v["loss"], ref + head)
    with pytest.raises(ConfigError, match=r"^objective.monitor='val'"):
        AssociationObjective(monitor="val")


def test_score_is_the_softmax_of_minus_assdis_times_the_step_mse():
    model, obj = small(), AssociationObjective(temperature=50.0)
    b = batch()
    with torch.no_grad():
        out = model(b["x"])
        step, res = obj.score(b, out)
        # solver.py test(): per layer my_kl_loss(series, prior)·T + my_kl_loss(prior, series)·T, summed
        series, prior = out.extras["series"], out.extras["prior"]
        s = sum(my_kl_loss(series[u], prior[u]) * 50 for u in range(len(prior)))
        p = sum(my_kl_loss(prior[u], series[u]) * 50 for u in range(len(prior)))
        metric = torch.softmax(-s - p, dim=-1)
        loss = torch.mean((b["x"][..., :S] - out.reconstruction) ** 2, dim=-1)
    torch.testing.assert_close(step, metric * loss)
    torch.testing.assert_close(res, b["y"] - out.reconstruction)
    assert step.shape == (6, L)
    torch.testing.assert_close((step / loss).sum(-1), torch.ones(6))   # a softmax over the window's steps


def test_n_heads_not_dividing_d_model_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"^backbone.model.n_heads=3 does not divide backbone.model.d_model=16$"):
        AnomalyTransformer(C, S, L, d_model=16, n_heads=3)
    assert_refused_before_training(["backbone=anomaly_transformer", "backbone.model.n_heads=3"], tmp_path,
                                   r"^backbone.model.n_heads=3 does not divide")


def test_recipe_and_the_smd_epochs():
    cfg = compose_cfg(["backbone=anomaly_transformer"], tiny=False)
    assert cfg.objective.name == "association"
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.optimizer.lr, cfg.trainer.patience) == (3, 256, 1e-4, 3)
    assert (cfg.backbone.model.d_model, cfg.backbone.model.n_heads, cfg.backbone.model.layers) == (512, 8, 3)
    assert compose_cfg(["backbone=anomaly_transformer", "dataset=smd"], tiny=False).trainer.epochs == 10
    assert compose_cfg(["backbone=anomaly_transformer", "dataset=smd", "trainer.epochs=2"], tiny=False).trainer.epochs == 2
