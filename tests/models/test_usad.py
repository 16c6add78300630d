"""backbone=usad with objective=usad: the architecture at the published sizes, the two-phase
order with fresh forwards and the epoch weights (against the reference's equations,
transcribed below and differentiated by autograd), every gradient zeroed before each
backward by default and the reference's carried-over gradients under reference_quirks,
TSB-AD's summed loss cancelling the adversarial term (and madbench not), the score, the
MADCluster embedding (finite on dead ReLU units), one pass carrying the head, and the
bad-input errors."""
import copy

import pytest
import torch

from madbench import run
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.heads.madcluster import MADClusterHead
from madbench.models.usad import USAD
from madbench.objectives.usad import USADObjective
from tests.conftest import compose_cfg
from tests.models.helpers import assert_m2ad_run_scores_every_step, sgd_context, spy_head_pass

LR = 0.05
L, D, H = 4, 3, 2  # window, input columns, latent units per step: w = 12, z = 8


def reference_losses(m: USAD, x: torch.Tensor, n: int):
    """manigalati/usad ``UsadModel.training_step`` on the flattened window x [B, L·D]."""
    z = m.encoder(x)
    w1 = m.decoder1(z)
    w2 = m.decoder2(z)
    w3 = m.decoder2(m.encoder(w1))
    l1 = 1 / n * torch.mean((x - w1) ** 2) + (1 - 1 / n) * torch.mean((x - w3) ** 2)
    l2 = 1 / n * torch.mean((x - w2) ** 2) - (1 - 1 / n) * torch.mean((x - w3) ** 2)
    return l1, l2, (w1, w2, w3)


def small(seed=0, **kw) -> USAD:
    torch.manual_seed(seed)
    return USAD(D, D, L, hidden=H, **kw).double()


def batch(seed=1, B=6, S=D):
    x = torch.rand(B, L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return {"x": x, "y": x[..., :S].clone()}


def context(det, epoch):
    return sgd_context(det, D, L, LR, epoch)


def grads(loss, params):
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True), params)]


def test_architecture_is_the_references_at_its_published_size():
    with torch.device("meta"):
        m = USAD(55, 55, 100, hidden=100, wide_latent=True)
    w, z = 5500, 10000
    shapes = [tuple(l.weight.shape) for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert shapes == [(w // 2, w), (w // 4, w // 2), (z, w // 4),            # E
                      (w // 4, z), (w // 2, w // 4), (w, w // 2),            # D1
                      (w // 4, z), (w // 2, w // 4), (w, w // 2)]            # D2
    n = sum(p.numel() for p in m.parameters())
    assert 97e6 < n < 99e6  # BACKBONES.md: "L100/h100: 98M params"
    acts = [type(a).__name__ for a in (m.encoder[-1], m.decoder1[-1], m.decoder2[-1])]
    assert acts == ["ReLU", "Sigmoid", "Sigmoid"]


def test_outputs_shapes_and_the_flattening_order():
    m = small()
    x = batch()["x"]
    out = m(x)
    flat = x.reshape(len(x), L * D)  # step by step, as the reference's view([N, w])
    _, _, (w1, w2, w3) = reference_losses(m, flat, 1)
    torch.testing.assert_close(out.extras["ae1"].reshape(len(x), -1), w1)
    torch.testing.assert_close(out.extras["ae2"].reshape(len(x), -1), w2)
    torch.testing.assert_close(out.extras["ae2ae1"].reshape(len(x), -1), w3)
    assert out.embedding.shape == (len(x), L, H)
    torch.testing.assert_close(out.embedding.reshape(len(x), -1), m.encoder(flat))
    # the sensors are the first S input columns
    m2 = USAD(D, 2, L, hidden=H).double()
    out2 = m2(x)
    assert out2.reconstruction.shape == (len(x), L, 2)
    torch.testing.assert_close(out2.reconstruction, out2.extras["ae1"][..., :2])
    # D2(E(x)) enters only the training loss: not computed in eval mode
    m.eval()
    assert "ae2" not in m(x).extras


def test_broadcast_embedding_gives_every_step_the_whole_code():
    m = small(embedding="broadcast")
    x = batch()["x"]
    out = m(x)
    z = m.encoder(x.reshape(len(x), -1))
    assert out.embedding.shape == (len(x), L, L * H)
    for t in range(L):
        torch.testing.assert_close(out.embedding[:, t], z)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("quirks", [False, True])
def test_two_phases_in_order_with_fresh_forwards_and_epoch_weights(n, quirks):
    """One step of objective=usad against the reference loop done by hand with SGD:
    phase 1 moves E and D1 by ∇L1 at θ0; phase 2 moves E and D2 by ∇L2 at θ1 (a fresh
    forward after phase 1). Corrected: D2 steps on ∇L2 only. Reference quirks: D2 also
    steps on its ∇L1 (never zeroed), and D1 keeps ∇L2 for its next step."""
    det = Detector(small(), USADObjective(reference_quirks=quirks))
    ref = copy.deepcopy(det.backbone)
    b = batch()
    x = b["x"].reshape(len(b["x"]), -1)
    E, D1, D2 = (list(m.parameters()) for m in (ref.encoder, ref.decoder1, ref.decoder2))
    l1, _, _ = reference_losses(ref, x, n)
    g1 = grads(l1, E + D1 + D2)
    with torch.no_grad():
        for p, g in zip(E + D1, g1[: len(E + D1)]):
            p -= LR * g
    _, l2, _ = reference_losses(ref, x, n)   # fresh forward at θ1
    g2 = grads(l2, E + D1 + D2)
    with torch.no_grad():
        for p, g in zip(E, g2[: len(E)]):
            p -= LR * g
        for p, g_1, g_2 in zip(D2, g1[len(E + D1):], g2[len(E + D1):]):
            p -= LR * (g_2 + g_1 if quirks else g_2)

    ctx = context(det, epoch=n)
    det.training_step(b, ctx)
    for (name, got), want in zip(det.backbone.named_parameters(), ref.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=name)
    d1_grads = [p.grad for p in det.backbone.decoder1.parameters()]
    if quirks:  # D1 carries L2's gradient (at θ1) into the next batch's phase 1
        for got, want in zip(d1_grads, g2[len(E): len(E + D1)]):
            torch.testing.assert_close(got, want)
        # (in epoch 1 the w3 terms weigh 0: nothing reaches D1 from L2)
        assert any(g.abs().sum() > 0 for g in d1_grads) == (n > 1)
    else:
        assert all(g is None for g in d1_grads)


def test_tsb_ad_summed_loss_cancels_the_adversarial_term_and_madbench_keeps_it():
    m = small()
    b = batch()
    x = b["x"].reshape(len(b["x"]), -1)
    n = 3
    params = list(m.parameters())
    l1, l2, (w1, w2, w3) = reference_losses(m, x, n)
    # TSB-AD: one optimiser on L1 + L2 — exactly the two plain reconstruction losses
    g_sum = grads(l1 + l2, params)
    g_plain = grads((torch.mean((x - w1) ** 2) + torch.mean((x - w2) ** 2)) / n, params)
    for a, c in zip(g_sum, g_plain):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
    # ... although the adversarial term itself has a gradient
    D2 = list(m.decoder2.parameters())
    g_adv = grads((1 - 1 / n) * torch.mean((x - w3) ** 2), D2)
    assert sum(g.abs().sum() for g in g_adv) > 1e-6

    # madbench: phase 2 moves D2 by LR·∇L2 at θ1 (θ0 after phase 1), adversarial term included
    det = Detector(small(), USADObjective())
    theta1 = small()  # the same initial weights, phase 1 done by hand
    l1, _, _ = reference_losses(theta1, x, n)
    ed1 = list(theta1.encoder.parameters()) + list(theta1.decoder1.parameters())
    with torch.no_grad():
        for p, g in zip(ed1, grads(l1, ed1)):
            p -= LR * g
    _, l2, (_, w2, _) = reference_losses(theta1, x, n)
    D2 = list(theta1.decoder2.parameters())
    with_adv, without_adv = grads(l2, D2), grads(torch.mean((x - w2) ** 2) / n, D2)
    before = [p.detach().clone() for p in det.backbone.decoder2.parameters()]
    det.training_step(b, context(det, epoch=n))
    moved = [b0 - p.detach() for b0, p in zip(before, det.backbone.decoder2.parameters())]
    for mv, g in zip(moved, with_adv):
        torch.testing.assert_close(mv, LR * g, rtol=1e-9, atol=1e-12)
    assert sum((LR * g - mv).abs().sum() for mv, g in zip(moved, without_adv)) > 1e-8


def test_validation_monitors_the_score_quantity_and_training_logs_both_losses():
    obj = USADObjective(alpha=0.3, beta=0.7)
    det = Detector(small(), obj)
    b = batch()
    det.eval()
    with torch.no_grad():
        out = det(b["x"])
        val = det.validation_step(b, None)
    x = b["x"]
    want = 0.3 * torch.mean((x - out.extras["ae1"]) ** 2) + 0.7 * torch.mean((x - out.extras["ae2ae1"]) ** 2)
    torch.testing.assert_close(val["loss"], want)
    det.train()
    logged = det.training_step(b, context(det, epoch=2))
    assert {"loss", "loss1", "loss2", "ae1", "ae2", "ae2ae1"} <= set(logged)
    torch.testing.assert_close(logged["loss1"], logged["ae1"] / 2 + logged["ae2ae1"] / 2)
    torch.testing.assert_close(logged["loss"], 0.3 * logged["ae1"] + 0.7 * logged["ae2ae1"])


def test_score_is_alpha_ae1_plus_beta_ae2ae1_per_step_and_averages_to_the_references_window_score():
    obj = USADObjective(alpha=0.2, beta=0.8)
    m = small()
    m.eval()
    b = batch()
    with torch.no_grad():
        out = m(b["x"])
    step, res = obj.score(b, out)
    x = b["x"]
    flat = x.reshape(len(x), -1)
    w1 = m.decoder1(m.encoder(flat))
    w2 = m.decoder2(m.encoder(w1))
    # the reference's testing(): α·mean((x − w1)²) + β·mean((x − D2(E(w1)))²) over the window
    window = 0.2 * torch.mean((flat - w1) ** 2, dim=1) + 0.8 * torch.mean((flat - w2) ** 2, dim=1)
    assert step.shape == (len(x), L)
    torch.testing.assert_close(step.mean(1), window.detach())
    r1, r3 = x - out.extras["ae1"], x - out.extras["ae2ae1"]
    torch.testing.assert_close(res, 0.2 * r1 + 0.8 * r3)
    # sensors only: the S first columns
    b2 = {"x": x, "y": x[..., :1]}
    step2, res2 = obj.score(b2, out)
    torch.testing.assert_close(step2, 0.2 * r1[..., 0] ** 2 + 0.8 * r3[..., 0] ** 2)
    assert res2.shape == (len(x), L, 1)


def test_head_loss_joins_exactly_one_pass_and_its_parameters_one_optimiser():
    for head_pass in ("ae1", "ae2"):
        head = MADClusterHead()
        det = Detector(small(), USADObjective(head_pass=head_pass), [head])
        head.ensure_centre(H)
        det.double()
        owners, calls, stepped = spy_head_pass(det, context(det, epoch=2), head, batch())
        assert owners == {head_pass} and calls == 1
        assert [s[0] for s in stepped] == ["ae1", "ae2"]
        # ν (the head's own optimiser) steps with the pass that carries the head loss
        assert [s for s in stepped if "madcluster_nu" in s] == [s for s in stepped if s[0] == head_pass]


def test_dead_relu_units_give_zero_rows_and_the_head_stays_finite():
    m = small()
    with torch.no_grad():
        m.encoder[-2].bias.fill_(-1e3)  # every latent unit dead: z = 0
    head = MADClusterHead(mapping="one-class")
    det = Detector(m, USADObjective(), [head])
    head.ensure_centre(H)
    det.double()
    b = batch()
    out = det(b["x"])
    assert torch.count_nonzero(out.embedding) == 0
    h = head.loss(out)
    assert torch.isfinite(h["loss"])
    h["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in det.parameters() if p.grad is not None)
    assert torch.isfinite(head.score_factor(out)).all()
    det.zero_grad()
    det.training_step(b, context(det, epoch=2))
    assert all(torch.isfinite(p).all() for p in det.parameters())


def test_a_latent_wider_than_the_input_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^backbone.model.hidden=4 makes USAD's latent \(4·4 = 16\) larger than its "
                                          r"input \(4·3 = 12\)") as e:
        USAD(3, 3, 4, hidden=4)
    assert "\n" not in str(e.value)
    USAD(3, 3, 4, hidden=4, wide_latent=True)  # the published code's setting, allowed on request
    USAD(3, 3, 4, hidden=3)
    for kw, key in (({"embedding": "mean"}, "backbone.model.embedding"), ({"hidden": 0}, "backbone.model.hidden")):
        with pytest.raises(ConfigError, match=f"^{key}"):
            USAD(3, 3, 4, **kw)
    with pytest.raises(ConfigError, match=r"^objective.head_pass"):
        USADObjective(head_pass="both")
    with pytest.raises(ConfigError, match=r"^objective.alpha"):
        USADObjective(alpha=-1)
    # the run refuses it before training (tiny synthetic systems have 12 input columns)
    cfg = compose_cfg(["backbone=usad", "backbone.model.hidden=13", "dataset.n_systems=1"])
    with pytest.raises(ConfigError, match=r"^backbone.model.hidden=13 makes USAD's latent"):
        run.main(cfg, tmp_path)
    assert not (tmp_path / "scores.npz").exists()


def test_reference_quirks_reach_the_objective_from_the_backbone():
    cfg = compose_cfg(["backbone=usad", "backbone.reference_quirks=true"])
    assert cfg.objective.name == "usad" and cfg.objective.reference_quirks is True
    assert run.build_objective(cfg).reference_quirks is True


def test_frozen_module_passes_gradients_to_its_input_and_gets_none_itself():
    from madbench.objectives.base import frozen

    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    with frozen(lin):
        y = lin(x).sum()
    y.backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert lin.weight.grad is None and lin.bias.grad is None
    assert lin.weight.requires_grad and lin.bias.requires_grad  # restored
    torch.testing.assert_close(x.grad, lin.weight.sum(0).expand(4, 3))


def test_a_run_scores_every_step_with_residuals_and_m2ad_scoring(tmp_path):
    assert_m2ad_run_scores_every_step("usad", tmp_path)
