"""backbone=thoc with objective=thoc: the dilated LSTM against its sub-sequences run one by
one, the assignment/update/join equations and the loss against TimeSeAD's formulas
(timesead/models/other/thoc.py, transcribed here), the K-means centres before epoch 1, the
join layers on their own optimiser, τ annealing per epoch (and per batch under
reference_quirks), the per-step score, TimeSeAD's batch-axis recurrence under
reference_quirks, and the bad-input errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector, FitContext
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.heads.madcluster import MADClusterHead
from madbench.models.thoc import THOC, DilatedLSTM
from madbench.objectives.thoc import THOCObjective
from tests.conftest import assert_refused_before_training, compose_cfg

C, S, L = 4, 3, 12


def small(**kw):
    torch.manual_seed(0)
    return THOC(C, S, L, **({"hidden": 6, "dilations": [1, 2, 4], "clusters": 3} | kw))


def batch(B=5, seed=1):
    x = torch.randn(B, L, C, generator=torch.Generator().manual_seed(seed))
    return {"x": x, "y": x[..., :S].clone()}


def test_a_dilated_layer_runs_its_lstm_on_each_sub_sequence():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(C, 5, batch_first=True)
    x = batch()["x"][:, :11]                       # 11 steps: dilation 4 pads one step at the end
    y = DilatedLSTM.dilated(lstm, x, 4)
    assert y.shape == (5, 11, 5)
    for j in range(4):
        torch.testing.assert_close(y[:, j::4], lstm(x[:, j::4])[0])
    torch.testing.assert_close(DilatedLSTM.dilated(lstm, x, 1), lstm(x)[0])


def reference_forward(model, x):
    """TimeSeAD THOC.forward / _do_assignment / _update_f, on madbench's DRNN outputs."""
    outs = model.drnn(x)
    R_last = f_bar = None
    prev = 1
    for l, drnn_out in enumerate(outs):
        f = drnn_out.unsqueeze(2).repeat(1, 1, prev, 1)
        if f_bar is not None:
            f = model.join[l - 1](torch.cat([f_bar, f], dim=-1))
        sim = 0.5 * (torch.einsum("bspf,cf -> bscp", F.normalize(f, dim=-1), F.normalize(model.centres[l], dim=-1)) - 1)
        P = F.softmax((1 / model.tau) * sim, dim=2)
        R_last = F.softmax(torch.einsum("bscp, bsp -> bsc", P, R_last) if R_last is not None else P.squeeze(-1), dim=-1)
        f_bar = torch.einsum("bscp, bspf -> bscf", P, torch.relu(model.transforms[l](f)))
        prev = model.clusters[l]
    return f_bar, R_last, outs


def test_forward_follows_timesead():
    model = small(tau=0.5)  # a low τ, so the assignments are far from uniform
    out = model(batch()["x"])
    f_bar, R, outs = reference_forward(model, batch()["x"])
    torch.testing.assert_close(out.extras["cluster_features"], f_bar)
    torch.testing.assert_close(out.extras["assignments"], R)
    torch.testing.assert_close(out.embedding, outs[-1])          # the embedding: the last DRNN layer
    assert out.embedding.shape == (5, L, 6) and f_bar.shape == (5, L, 3, 6) and R.shape == (5, L, 3)
    for proj, o, fc in zip(model.out_project, outs, out.extras["forecasts"]):
        torch.testing.assert_close(fc, proj(o))
    assert R.std() > 0.01


def test_paper_size_has_half_a_million_parameters():
    # BACKBONES.md: 0.50M (C = 55); MC-T2's +0.13K head delta ⇒ d = 128
    model = THOC(55, 55, 100)
    assert sum(p.numel() for p in model.parameters()) == 497_664
    assert model(torch.zeros(2, 100, 55)).embedding.shape == (2, 100, 128)


def test_loss_and_score_follow_timesead():
    model, obj = small(tau=0.5), THOCObjective(lambda_orth=1.0, lambda_tss=10.0)
    b = batch()
    out = model(b["x"])
    f_bar, R, outs = reference_forward(model, b["x"])
    # THOCLoss: thoc_loss, orth_loss (normalised centres, mean of squares, / layers), tss_loss
    score = 0.5 * (1 - torch.einsum("bscf,cf -> bsc", F.normalize(f_bar, dim=-1), F.normalize(model.centres[-1], dim=-1)))
    thoc = (R * score).mean()
    orth = sum(torch.mean((F.normalize(c, dim=-1) @ F.normalize(c, dim=-1).T - torch.eye(3)) ** 2)
               for c in model.centres) / 3
    tss = sum(F.mse_loss(model.out_project[i](o)[:, :-d, :], b["y"][:, d:, :])
              for i, (o, d) in enumerate(zip(outs, [1, 2, 4]))) / 3
    d = obj.loss(b, out)
    torch.testing.assert_close(d["thoc"], thoc.detach())
    torch.testing.assert_close(d["orth"], orth.detach())
    torch.testing.assert_close(d["tss"], tss.detach())
    torch.testing.assert_close(d["loss"], thoc + orth + 10 * tss)
    # the per-step score: Σ_k R·½(1 − cos)/K, every step of the window
    step, res = obj.score(b, out)
    torch.testing.assert_close(step, (R * score).mean(-1))
    assert res is None and step.shape == (5, L)


def fit_context(det):
    w = Windows(np.random.default_rng(0).normal(size=(200, C)).astype(np.float32), WindowSpec(window=L))
    tr = Trainer(epochs=1, batch_size=8, device="cpu", progress=False)
    return FitContext(tr, det, w, *w.split(0.2), torch.arange(C), torch.arange(S))


def test_centres_come_from_kmeans_on_shuffled_train_batches_before_epoch_1():
    model = small()
    initial = [c.detach().clone() for c in model.centres]
    obj = THOCObjective(kmeans_batches=3)
    det = Detector(model, obj)
    seen = []
    step = obj.training_step
    obj.training_step = lambda d, b, c: (seen.append([p.detach().clone() for p in model.centres]), step(d, b, c))[1]
    w = Windows(np.random.default_rng(0).normal(size=(200, C)).astype(np.float32), WindowSpec(window=L))
    tr_idx, _ = w.split(0.2)
    # the features of the first 3 shuffled batches of 8, before any training
    with torch.no_grad():
        order = np.random.default_rng(7).permutation(tr_idx)[:24]
        feats = [f.reshape(-1, f.shape[-1]) for f in model(w.inputs(order, torch.arange(C))).extras["features"]]
    Trainer(epochs=1, batch_size=8, patience=None, device="cpu", progress=False, seed=7,
            optimizer=lambda params: torch.optim.SGD(params, lr=0.0)).fit(det, w, np.arange(C), np.arange(S))
    first = seen[0]
    for l, (c, f, c0) in enumerate(zip(first, feats, initial)):
        assert not torch.allclose(c, c0)
        # sklearn's K-means with the same seed ...
        km = KMeans(3, n_init="auto", random_state=7).fit(f.numpy())
        np.testing.assert_allclose(c.numpy(), km.cluster_centers_, rtol=1e-4, atol=1e-5)
        # ... whose centres are the means of their own clusters (Lloyd's fixed point)
        nearest = torch.cdist(f, c).argmin(1)
        for k in range(3):
            torch.testing.assert_close(c[k], f[nearest == k].mean(0), rtol=1e-2, atol=1e-3)


def test_join_layers_have_their_own_optimiser_and_both_step_after_one_backward():
    torch.manual_seed(0)
    det = Detector(small(), THOCObjective(), [MADClusterHead()])
    ctx = fit_context(det)
    det.on_fit_start(ctx)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(lambda p: torch.optim.SGD(p, lr=0.1))
    ids = lambda name: {id(p) for g in ctx.optimizers[name].param_groups for p in g["params"]}
    join = {id(p) for p in det.backbone.join.parameters()}
    assert set(ctx.optimizers) == {"model", "join", "madcluster_nu"}
    assert ids("join") == join
    assert ids("model") == {id(p) for p in det.parameters()} - join - {id(det.heads[0].nu)}   # head centre included
    # one backward, then both step: every join and non-join parameter moves by −lr·grad
    params = {n: p for n, p in det.named_parameters()}
    before = {n: p.detach().clone() for n, p in params.items()}
    b = batch()
    out = det(b["x"])
    loss = det.total_loss(b, out, ctx)["loss"]
    g = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
    ctx.epoch, ctx.stage = 1, "train"
    det.training_step(b, ctx)
    for n in ("backbone.join.0.weight", "backbone.transforms.0.weight", "backbone.centres.2", "heads.0.centre"):
        torch.testing.assert_close(params[n].detach(), before[n] - 0.1 * g[n], rtol=1e-4, atol=1e-6)
    # StepLR(20, 0.65) on both
    for _ in range(20):
        for s in ctx.schedulers.values():
            s.step()
    assert [ctx.optimizers[n].param_groups[0]["lr"] for n in ("model", "join")] == pytest.approx([0.065, 0.065])


def anneal_run(quirks: bool, epochs=11, batches=3):
    """τ after each epoch, calling the hooks the Trainer calls (3 batches an epoch)."""
    model = small(tau=100.0)
    det = Detector(model, THOCObjective(reference_quirks=quirks))
    ctx = fit_context(det)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(lambda p: torch.optim.SGD(p, lr=0.0))
    b = batch()
    taus = []
    for epoch in range(1, epochs + 1):
        ctx.epoch, ctx.stage, ctx.logged = epoch, "train", {}
        during = []
        for _ in range(batches):
            during.append(float(model.tau))
            det.training_step(b, ctx)
        ctx.stage = "epoch_end"
        det.on_epoch_end(ctx)
        taus.append((during, ctx.logged["thoc_tau"]))
    return taus


def test_tau_is_annealed_once_every_5_epochs_and_per_batch_under_reference_quirks():
    g = 2 / 3
    taus = anneal_run(quirks=False)
    # epochs 1-5 at 100, 6-10 at 100·2/3, 11 at 100·(2/3)²: constant within each epoch
    assert [v for t in taus for v in t[0]] == pytest.approx([100.0] * 15 + [100 * g] * 15 + [100 * g ** 2] * 3)
    # TimeSeAD: after every batch of epochs 6 and 11 (its epoch counter starts at 0)
    quirk = anneal_run(quirks=True)
    assert [v for t in quirk[:5] for v in t[0]] == pytest.approx([100.0] * 15)
    assert quirk[5][0] == pytest.approx([100.0, 100 * g, 100 * g ** 2])
    assert quirk[9][1] == pytest.approx(100 * g ** 3) and quirk[10][1] == pytest.approx(100 * g ** 6)
    # the floor: no decrease once τ <= 1/300
    obj, tau = THOCObjective(), torch.tensor(0.0034)
    obj._anneal(tau)
    assert float(tau) == pytest.approx(0.0034 * g)
    obj._anneal(tau)
    assert float(tau) == pytest.approx(0.0034 * g)


def test_tau_is_a_buffer_restored_with_the_weights():
    model = small(tau=5.0)
    state = model.state_dict()
    assert float(state["tau"]) == 5.0
    fresh = small()
    fresh.load_state_dict(state)
    assert float(fresh.tau) == 5.0


def test_reference_quirks_recur_across_the_batch_as_timesead_does():
    x = batch()["x"]
    fixed, quirk = small(), small(reference_quirks=True)
    # corrected: a window's output does not depend on the other windows in its batch
    torch.testing.assert_close(fixed(x[2:]).embedding, fixed(x).embedding[2:])
    # quirk: it does (the recurrence runs from the batch's first window to its last)
    assert not torch.allclose(quirk(x[2:]).embedding, quirk(x).embedding[2:])
    # the quirk's first layer is TimeSeAD's: an LSTM with batch_first=False fed [B, L, C]
    lstm = torch.nn.LSTM(C, 6)
    lstm.load_state_dict(quirk.drnn.cells[0].state_dict())
    torch.testing.assert_close(quirk.drnn.dilated(quirk.drnn.cells[0], x.transpose(0, 1), 1).transpose(0, 1),
                               lstm(x)[0])
    torch.testing.assert_close(quirk(x).extras["forecasts"][0], quirk.out_project[0](lstm(x)[0]))


def test_dilations_not_shorter_than_the_window_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"^backbone.model.dilations=\[1, 2, 12\].*dataset.window > 12.*"
                                          r"dataset.window=12$"):
        THOC(C, S, 12, dilations=[1, 2, 12])
    with pytest.raises(ConfigError, match=r"^backbone.model.clusters=\[3, 3\]; expected .* a list of 3"):
        THOC(C, S, 12, clusters=[3, 3])
    with pytest.raises(ConfigError, match=r"^backbone.model.dilations=\[\]"):
        THOC(C, S, 12, dilations=[])
    assert_refused_before_training(["backbone=thoc", "backbone.model.dilations=[1,2,32]"], tmp_path,
                                   r"^backbone.model.dilations=\[1, 2, 32\].*dataset.window > 32")


def test_recipe_and_objective_defaults():
    cfg = compose_cfg(["backbone=thoc"], tiny=False)
    assert cfg.objective.name == "thoc" and list(cfg.backbone.model.dilations) == [1, 2, 4]
    assert (cfg.backbone.model.hidden, cfg.backbone.model.clusters, cfg.backbone.model.tau) == (128, 6, 100.0)
    assert (cfg.trainer.optimizer.lr, cfg.trainer.optimizer.weight_decay, cfg.trainer.batch_size) == (1e-3, 1e-6, 128)
    assert cfg.objective.reference_quirks is False
    assert compose_cfg(["backbone=thoc", "backbone.reference_quirks=true"]).objective.reference_quirks is True
