"""backbone=dcdetector with objective=contrastive: every shortcut madbench takes checked against
the reference's computation transcribed here (BACKBONES.md, DCdetector: per-channel [L×L]
maps, expanded, then averaged over channels; my_kl_loss on them), the corrected per-step
score against the reference's constant window score, the MADCluster embedding in both modes,
and the bad-input errors."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from madbench import run
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.heads.madcluster import MADClusterHead
from madbench.models import dcdetector
from madbench.models.dcdetector import DCdetector
from madbench.objectives.contrastive import ContrastiveObjective, expanded_kls
from tests.conftest import compose_cfg

torch.set_default_dtype(torch.float32)


def small(window=20, patch_sizes=(2, 5), **kw):
    kw.setdefault("d_model", 16)
    kw.setdefault("layers", 2)
    return DCdetector(4, 4, window, patch_sizes=list(patch_sizes), **kw)


# -- the reference, transcribed from the equations (attn.py, solver.py) ----------------------
def ref_kl(p, q):
    """my_kl_loss: Σ_j p (log(p + 1e-4) − log(q + 1e-4)), mean over heads → [B, L]."""
    return (p * (torch.log(p + 1e-4) - torch.log(q + 1e-4))).sum(-1).mean(1)


def ref_expand(series_small, prior_small, window):
    """The reference's upsampling of per-channel (or mean) maps to [.., L, L]."""
    p = prior_small.shape[-1]
    n = window // p
    s = series_small.repeat_interleave(p, dim=-1).repeat_interleave(p, dim=-2)
    q = prior_small.repeat(1, 1, n, n)
    return s, q


def ref_maps(model, x):
    """Per (patch size, layer): the reference's DAC_structure on the model's weights — Q and K
    by the two Linear layers (a zero key bias), einsum, softmax, expand each channel's maps
    to [B·C, H, L, L], then the mean over channels. Dropout off."""
    b, L, c = x.shape
    if model.revin:
        x = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    xc = x.permute(0, 2, 1).reshape(b * c, L)
    out_s, out_p = [], []
    for i, p in enumerate(model.patch_sizes):
        e_s = model.patch_embed[i](xc.reshape(-1, L // p, p))
        e_n = model.inpatch_embed[i](model.inpatch_tokens(xc, p))
        for layer in model.layers:
            h = layer.n_heads

            def attn(e):
                q = layer.query(e).view(e.shape[0], e.shape[1], h, -1)
                k = layer.key(e).view(e.shape[0], e.shape[1], h, -1)
                scores = torch.einsum("blhe,bshe->bhls", q, k) / math.sqrt(q.shape[-1])
                return torch.softmax(scores, dim=-1)

            s_full, p_full = ref_expand(attn(e_s), attn(e_n), L)          # [B·C, H, L, L]
            out_s.append(s_full.view(b, c, *s_full.shape[1:]).mean(1))
            out_p.append(p_full.view(b, c, *p_full.shape[1:]).mean(1))
    return out_s, out_p


def ref_loss_and_step(series, prior):
    """solver.py's training loss and test metric input on the expanded [B, H, L, L] maps."""
    L = series[0].shape[-1]
    series_loss = prior_loss = 0.0
    step = 0.0
    for s, p in zip(series, prior):
        ph = p / p.sum(-1, keepdim=True).repeat(1, 1, 1, L)
        series_loss = series_loss + (ref_kl(s, ph.detach()).mean() + ref_kl(ph.detach(), s).mean())
        prior_loss = prior_loss + (ref_kl(ph, s.detach()).mean() + ref_kl(s.detach(), ph).mean())
        step = step + ref_kl(s, ph) + ref_kl(ph, s)
    return prior_loss / len(series) - series_loss / len(series), series_loss / len(series), step


# -- the shortcuts -------------------------------------------------------------------------------
@pytest.mark.parametrize("compose", [True, False])
@pytest.mark.parametrize("quirks", [False, True])
@pytest.mark.parametrize("n_heads", [1, 2])
def test_small_channel_mean_maps_expand_to_the_reference_maps(quirks, n_heads, compose, monkeypatch):
    """Channel mean before the p×p expansion and the tiling == the reference's expand-then-mean;
    the merged query-key product (1 head), the scores from the embeddings' narrow inputs
    (``compose``) and the missing key bias change no map."""
    torch.manual_seed(0)
    monkeypatch.setattr(DCdetector, "compose", compose)
    model = small(n_heads=n_heads, reference_quirks=quirks, dropout=0.0).eval()
    x = torch.randn(3, 20, 4) * 2 + 1
    out = model(x)
    with torch.no_grad():
        for layer in model.layers:  # the reference's key bias: its softmax over keys cancels it
            layer.key.bias = torch.nn.Parameter(torch.randn(16))
    ref_s, ref_p = ref_maps(model, x)
    # (the tiny sizes use both paths: 3·c_in < d for the patch-wise tokens, not for p = 2's in-patch ones)
    assert [model.patch_embed[0].composable(), model.inpatch_embed[0].composable()] == [True, False]
    assert len(out.extras["patch_series"]) == len(ref_s) == 4
    for s, p, rs, rp in zip(out.extras["patch_series"], out.extras["patch_prior"], ref_s, ref_p):
        es, ep = ref_expand(s, p, 20)
        torch.testing.assert_close(es, rs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ep, rp, rtol=1e-6, atol=1e-6)


def unfused_scaled_scores(layer, view):
    """The scores as madbench computed them before the fused form (commit 1bc9233): three
    batched products and two full-size adds on the narrow inputs, or the merged d×d product,
    then × 1/√E on the full map."""
    emb, x, composed = view
    h, d = layer.n_heads, layer.query.in_features
    wq, wk = layer.query.weight.view(h, -1, d), layer.key.weight.view(h, -1, d)
    m, v = wq.transpose(1, 2) @ wk, (layer.query.bias.view(h, 1, -1) @ wk).squeeze(1)
    if composed:
        a, pe = emb.matrix(), emb.pe[0]
        row = pe @ m + v[:, None]
        k = a.t() @ m @ a
        u = a.t() @ m @ pe.t()
        z = x[:, None]
        scores = (z @ k + row @ a) @ z.transpose(-1, -2) + z @ u + row @ pe.t()
    elif h == 1:
        g = torch.addmm(v, x.reshape(-1, d), m[0]).view(x.shape[0], x.shape[1], d)
        scores = torch.bmm(g, x.transpose(1, 2)).unsqueeze(1)
    else:
        q = layer.query(x).view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)
        k = layer.key(x).view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
    return scores * layer.scale


@pytest.mark.parametrize("n_heads", [1, 2])
def test_fused_scores_equal_the_unfused_computation(n_heads):
    """One baddbmm onto the batch-independent term, the scale folded into W_q, against the
    unfused scores above, on both paths (narrow inputs and embeddings), one head and two:
    within 1e-5 of the largest score."""
    torch.manual_seed(5)
    model = small(n_heads=n_heads, d_model=32).eval()
    xc = torch.randn(6, 20)
    for i, p in enumerate(model.patch_sizes):
        for emb, tokens in ((model.patch_embed[i], xc.reshape(-1, 20 // p, p)),
                            (model.inpatch_embed[i], model.inpatch_tokens(xc, p))):
            for composed in (True, False):
                if composed and not emb.composable():
                    continue
                view = (emb, emb.neighbours(tokens), True) if composed else (emb, emb(tokens), False)
                for layer in model.layers:
                    with torch.no_grad():
                        got, want = layer.logits(view), unfused_scaled_scores(layer, view)
                    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_training_keeps_only_the_narrow_inputs_of_the_composed_scores():
    """Issue 27 (the DCdetector job's peak is training's): the composed scores of a view save
    for the backward pass nothing that grows with the batch except z itself, which the view
    holds anyway; the concatenated [zK + R | z] and [zᵀ ; U] factors of the one-product form
    (2 × z's size each, per layer and view) are gone. Gradients as the unfused form."""
    torch.manual_seed(3)
    model = small(window=20, patch_sizes=(5,), d_model=32, layers=1).train()
    layer, emb = model.layers[0], model.patch_embed[0]

    def saved_besides_z(n_series):
        z = emb.neighbours(torch.randn(n_series, 4, 5))   # n_series series of 4 tokens of 5 steps
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            scores = layer.logits((emb, z, True))
        assert z.untyped_storage().data_ptr() in saved
        return sum(n for ptr, n in saved.items() if ptr != z.untyped_storage().data_ptr()), z, scores

    small_batch, _, _ = saved_besides_z(64)
    others, z, scores = saved_besides_z(1024)
    assert others == small_batch < z.untyped_storage().nbytes() / 8, (small_batch, others, z.untyped_storage().nbytes())
    w = torch.randn_like(scores)
    params = [layer.query.weight, layer.query.bias, layer.key.weight, emb.conv.weight]
    got = torch.autograd.grad((scores * w).sum(), params)
    want = torch.autograd.grad((unfused_scaled_scores(layer, (emb, z, True)) * w).sum(), params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


def test_kl_on_small_maps_equals_kl_of_expanded_maps_values_and_gradients():
    """The factorised KLs against my_kl_loss on the [L×L] maps — per step, both directions,
    with rows that do not sum to 1 (what attention dropout leaves)."""
    torch.manual_seed(1)
    b, h, L = 3, 2, 30
    for p in (1, 2, 3, 5, 30):
        n = L // p
        s = torch.rand(b, h, n, n, dtype=torch.float64, requires_grad=True)
        q = torch.rand(b, h, p, p, dtype=torch.float64, requires_grad=True)
        kl_sp, kl_ps = expanded_kls(s, q)
        es, eq = ref_expand(s, q, L)
        eqh = eq / eq.sum(-1, keepdim=True)
        ref_sp = (es * (torch.log(es + 1e-4) - torch.log(eqh + 1e-4))).sum(-1)
        ref_ps = (eqh * (torch.log(eqh + 1e-4) - torch.log(es + 1e-4))).sum(-1)
        torch.testing.assert_close(kl_sp, ref_sp, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(kl_ps, ref_ps, rtol=1e-10, atol=1e-10)
        w = torch.randn(b, h, L, dtype=torch.float64)
        g = torch.autograd.grad(((kl_sp + 2 * kl_ps) * w).sum(), (s, q))
        g_ref = torch.autograd.grad(((ref_sp + 2 * ref_ps) * w).sum(), (s, q))
        for a, r in zip(g, g_ref):
            torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("compose", [True, False])
@pytest.mark.parametrize("quirks", [False, True])
def test_loss_score_and_gradients_equal_the_reference_computation(quirks, compose, monkeypatch):
    """Same weights, same batch, eval mode: madbench's loss (exactly 0 in value), its
    gradients and the per-step discrepancy equal the reference's [B·C, H, L, L] computation."""
    torch.manual_seed(2)
    monkeypatch.setattr(DCdetector, "compose", compose)
    model = small(reference_quirks=quirks).eval()
    obj = ContrastiveObjective(reference_quirks=quirks)
    x = torch.rand(3, 20, 4)
    out = model(x)
    d = obj.loss({"x": x}, out)
    g = torch.autograd.grad(d["loss"], list(model.parameters()), allow_unused=True)
    ref_s, ref_p = ref_maps(model, x)
    ref_loss, ref_disc, ref_step = ref_loss_and_step(ref_s, ref_p)
    g_ref = torch.autograd.grad(ref_loss, list(model.parameters()), allow_unused=True)
    assert d["loss"].item() == 0.0 and ref_loss.item() == 0.0  # prior − series: the same numbers
    assert d["discrepancy"].item() == pytest.approx(ref_disc.item(), rel=1e-6)
    n_grads = 0
    for (name, _), a, r in zip(model.named_parameters(), g, g_ref):
        assert (a is None) == (r is None), name
        if a is not None:
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6 * r.abs().max().item())
            n_grads += a.abs().sum().item() > 0
    assert n_grads >= 4  # the loss trains the embeddings and the query/key projections
    with torch.no_grad():
        torch.testing.assert_close(obj.discrepancy(out), ref_step, rtol=1e-6, atol=1e-6)


def test_recompute_gives_the_same_maps_and_gradients(monkeypatch):
    torch.manual_seed(3)
    monkeypatch.setattr(DCdetector, "compose", False)  # recomputation acts on the embedding path
    monkeypatch.setattr(dcdetector, "RECOMPUTE_WINDOWS", 3)  # 4 windows: groups of 3 and 1
    a, b = small(recompute=True), small(recompute=False)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 20, 4)
    obj = ContrastiveObjective()
    out_a, out_b = a(x), b(x)
    for u, v in zip(out_a.extras["patch_series"] + out_a.extras["patch_prior"], out_b.extras["patch_series"] + out_b.extras["patch_prior"]):
        torch.testing.assert_close(u, v)
    ga = torch.autograd.grad(obj.loss({}, out_a)["loss"], list(a.parameters()), allow_unused=True)
    gb = torch.autograd.grad(obj.loss({}, out_b)["loss"], list(b.parameters()), allow_unused=True)
    for u, v in zip(ga, gb):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v)


# -- the score -----------------------------------------------------------------------------------
def fitted(quirks, epochs=1):
    torch.manual_seed(4)
    rng = np.random.default_rng(0)
    t = np.arange(400)
    series = np.stack([np.sin(t / 7 + k) + 0.1 * rng.normal(size=400) for k in range(4)], 1).astype(np.float32)
    det = Detector(small(reference_quirks=quirks), ContrastiveObjective(reference_quirks=quirks))
    trainer = Trainer(epochs=epochs, batch_size=64, device="cpu", progress=False)
    w = Windows(series, WindowSpec(window=20))
    hist = trainer.fit(det, w, np.arange(4), np.arange(4))
    return det, trainer, w, hist


def test_reference_window_score_is_the_constant_1_over_L_and_the_corrected_score_is_not():
    det, trainer, w, _ = fitted(quirks=True)
    (ref,) = trainer.score(det, w, np.arange(4), np.arange(4))
    # every window of the reference scores 1/L, so every placed step does too: no ranking at all
    np.testing.assert_allclose(ref.window, 1 / 20, rtol=1e-6)
    np.testing.assert_allclose(ref.step, 1 / 20, rtol=1e-6)

    det, trainer, w, _ = fitted(quirks=False)
    (cor,) = trainer.score(det, w, np.arange(4), np.arange(4))
    assert np.isfinite(cor.step).all() and cor.step.std() > 1e-3  # a ranking of the timestamps
    batch = trainer.batch(w, np.arange(8), torch.arange(4), torch.arange(4))
    det.eval()
    with torch.no_grad():
        step, res = det.objective.score(batch, det(batch["x"]))
        expected = torch.softmax(-50.0 * det.objective.discrepancy(det(batch["x"])), dim=-1)
    assert res is None and step.shape == (8, 20)
    torch.testing.assert_close(step, expected)
    assert (step.std(1) > 1e-3).all()  # per step inside each window, never averaged away
    # ... but any window mean of a softmax over the window is 1/L: protocol=madcluster's window
    # score (the mean of its steps) cannot rank DCdetector windows in either mode
    np.testing.assert_allclose(cor.window, 1 / 20, rtol=1e-5)


def test_validation_monitors_the_discrepancy_not_the_zero_training_value():
    *_, hist = fitted(quirks=False, epochs=2)
    assert len(hist) == 2
    for rec in hist:
        assert rec["train_loss"] == 0.0 and rec["val_contrastive"] == 0.0
        assert rec["val_loss"] == pytest.approx(rec["val_discrepancy"]) and rec["val_loss"] != 0.0


# -- the model -----------------------------------------------------------------------------------
def test_in_patch_tokens_are_the_steps_at_one_position_of_every_patch():
    x = torch.arange(20.0)[None]                  # one channel, L = 20
    cor = small().inpatch_tokens(x, 5)            # p = 5 tokens of N = 4 steps
    assert cor[0, 2].tolist() == [2.0, 7.0, 12.0, 17.0]          # x[2::5]: the paper, and step i's row i % p
    ref = small(reference_quirks=True).inpatch_tokens(x, 5)
    assert ref[0, 2].tolist() == [8.0, 9.0, 10.0, 11.0]          # the reference's contiguous chunk (issue #10)


def test_revin_by_default_makes_the_maps_invariant_to_a_per_channel_scale_and_shift():
    torch.manual_seed(6)
    x = torch.randn(2, 20, 4)
    y = x * torch.tensor([3.0, 0.5, 10.0, 1.0]) + torch.tensor([5.0, -2.0, 0.0, 100.0])
    cor = small().eval()
    for a, b in zip(cor(x).extras["patch_series"], cor(y).extras["patch_series"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    quirk = small(reference_quirks=True).eval()                  # MADCluster drops RevIN
    assert not torch.allclose(quirk(x).extras["patch_series"][0], quirk(y).extras["patch_series"][0], atol=1e-3)


def test_reference_quirks_is_the_madcluster_model():
    cor, ref = small(), small(reference_quirks=True)
    assert cor.revin and not ref.revin
    assert all(m.p == 0.0 for m in cor.modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.p == 0.1 for m in ref.modules() if isinstance(m, torch.nn.Dropout))
    assert cor.window_embed is None and ref.window_embed is not None
    # He-normal Linear weights, zero biases (MADCluster_UTILS.he_init_normal)
    big = DCdetector(4, 4, 20, d_model=256, layers=1, patch_sizes=[5], reference_quirks=True)
    w = big.layers[0].query.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert (big.layers[0].query.bias == 0).all()
    # no value or output projection, no LayerNorm: nothing the reference computes and discards
    names = [n for n, _ in ref.named_parameters()]
    assert not any(k in n for n in names for k in ("value", "out_proj", "norm", "projection"))


def test_embedding_is_per_step_and_the_dcdetector_loss_reaches_it_only_by_default():
    torch.manual_seed(7)
    x = torch.rand(3, 20, 4)
    obj = ContrastiveObjective()
    cor = small()
    out = cor(x)
    assert out.embedding.shape == (3, 20, 16)
    # the patch-wise embeddings, channel mean, each patch's embedding on its p steps, mean over p
    xc = ((x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)).permute(0, 2, 1)
    e2 = cor.patch_embed[0](xc.reshape(12, 10, 2)).view(3, 4, 10, 16).mean(1)
    e5 = cor.patch_embed[1](xc.reshape(12, 4, 5)).view(3, 4, 4, 16).mean(1)
    expected = (e2.repeat_interleave(2, 1) + e5.repeat_interleave(5, 1)) / 2
    torch.testing.assert_close(out.embedding, expected)
    g = torch.autograd.grad(obj.loss({}, out)["loss"], out.embedding, allow_unused=True, retain_graph=True)
    shared = [p for p in cor.patch_embed.parameters()]
    gl = torch.autograd.grad(obj.loss({}, out)["loss"], shared, retain_graph=True)
    ge = torch.autograd.grad(out.embedding.sum(), shared)
    assert all(a.abs().sum() > 0 and b.abs().sum() > 0 for a, b in zip(gl, ge))  # both train the same weights
    assert g[0] is None  # (the loss reads the maps, not the embedding itself)

    ref = small(reference_quirks=True)
    out = ref(x)
    assert out.embedding.shape == (3, 20, 16)
    # x_ori: no DCdetector loss reaches it, and the attention never sees it
    g = torch.autograd.grad(obj.loss({}, out)["loss"], list(ref.window_embed.parameters()), allow_unused=True)
    assert all(v is None for v in g)
    torch.manual_seed(0)
    before = [s.clone() for s in ref.eval()(x).extras["patch_series"]]
    with torch.no_grad():
        ref.window_embed.conv.weight.normal_()
    assert all(torch.equal(a, b) for a, b in zip(before, ref(x).extras["patch_series"]))


def test_madcluster_head_trains_on_the_embedding_in_both_modes():
    for quirks in (False, True):
        torch.manual_seed(8)
        det = Detector(small(reference_quirks=quirks), ContrastiveObjective(reference_quirks=quirks),
                       [MADClusterHead()])
        rng = np.random.default_rng(1)
        w = Windows(rng.normal(size=(200, 4)).astype(np.float32), WindowSpec(window=20))
        hist = Trainer(epochs=1, batch_size=64, device="cpu", progress=False).fit(det, w, np.arange(4), np.arange(4))
        assert np.isfinite(hist[0]["val_loss"]) and hist[0]["train_loss"] != 0.0  # the head's term
        assert det.heads[0].centre.shape == (1, 16)


def test_bf16_autocast_on_cpu_stays_close_to_fp32():
    torch.manual_seed(9)
    model = small().eval()
    obj = ContrastiveObjective()
    x = torch.rand(4, 20, 4)
    with torch.no_grad():
        ref = obj.discrepancy(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        low = obj.discrepancy(out)
    assert out.extras["patch_series"][0].dtype == torch.bfloat16 and low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=0.05, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = obj.loss({}, small().train()(x))["loss"]
    loss.backward()
    assert torch.isfinite(loss)


# -- bad input -----------------------------------------------------------------------------------
def test_bad_sizes_are_one_line_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"^backbone.model.patch_sizes=\[2, 3\]: 3 does not divide the window "
                                          r"\(dataset.window=20\)$"):
        small(patch_sizes=[2, 3])
    with pytest.raises(ConfigError, match=r"^backbone.model.n_heads=3 does not divide backbone.model.d_model=16$"):
        small(n_heads=3)
    with pytest.raises(ConfigError, match=r"^backbone.model.patch_sizes=\['35'\]; expected a non-empty list"):
        DCdetector(4, 4, 20, patch_sizes="35")  # DCdetector's argparse quirk would have made it [3, 5]
    with pytest.raises(ConfigError, match=r"^objective.temperature=0"):
        ContrastiveObjective(temperature=0)


def test_a_run_with_a_patch_size_that_does_not_divide_the_window_is_refused_before_training(tmp_path):
    cfg = compose_cfg(["backbone=dcdetector", "backbone.model.patch_sizes=[3]", "dataset.n_systems=1"])
    with pytest.raises(ConfigError, match=r"^backbone.model.patch_sizes=\[3\]: 3 does not divide the window") as e:
        run.main(cfg, tmp_path)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "scores.npz").exists()
    rows = pd.read_csv(tmp_path / "results.csv")
    assert (rows.status == "failed").all() and rows.error.str.contains("patch_sizes").all()


def test_compiles_with_the_same_gradients():
    """trainer.compile's path: the backbone under torch.compile (aot_eager: forward and
    backward graphs traced, no code generation) gives the eager gradients."""
    torch.manual_seed(10)
    a, b = small(layers=1, patch_sizes=[5]), small(layers=1, patch_sizes=[5])
    b.load_state_dict(a.state_dict())
    b.compile(backend="aot_eager")
    x = torch.rand(4, 20, 4)
    obj = ContrastiveObjective()
    ga = torch.autograd.grad(obj.loss({}, a(x))["loss"], list(a.parameters()), allow_unused=True)
    gb = torch.autograd.grad(obj.loss({}, b(x))["loss"], list(b.parameters()), allow_unused=True)
    assert sum(g is not None for g in ga) >= 3
    for u, v in zip(ga, gb):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-7)


def test_dcdetector_paper_experiment_sets_each_datasets_published_sizes():
    expected = {"msl_merged": (90, [3, 5], 64, 3), "smap_merged": (105, [3, 5, 7], 256, 3),
                "smd_merged": (105, [5, 7], 256, 2), "psm": (60, [1, 3, 5], 256, 3)}
    for name, (window, patches, batch, epochs) in expected.items():
        cfg = compose_cfg(["experiment=dcdetector_paper", f"dataset={name}"], tiny=False)
        assert (cfg.dataset.window, list(cfg.backbone.model.patch_sizes), cfg.trainer.batch_size,
                cfg.trainer.epochs) == (window, patches, batch, epochs)
        assert all(window % p == 0 for p in patches)
    # the backbone's own default stays MADCluster's uniform config
    cfg = compose_cfg(["backbone=dcdetector", "dataset=msl"], tiny=False)
    assert (cfg.dataset.window, list(cfg.backbone.model.patch_sizes), cfg.trainer.batch_size) == (100, [2, 5, 10], 128)
