"""backbone=deepsvdd with objective=one_class | soft_boundary: the centre from one pass over
train before epoch 1 with the ±eps rule, the bias-free default against collapse (and
DeepOD's biases under reference_quirks), soft-boundary R, and the window score placed on
the timestamps without zero padding."""
import numpy as np
import pytest
import torch

from madbench import run
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.models.deepsvdd import DeepSVDDEncoder
from madbench.objectives.deepsvdd import OneClassObjective, SoftBoundaryObjective, pushed_from_zero
from tests.conftest import compose_cfg, stored


def test_centre_coordinates_near_zero_are_pushed_out_keeping_their_sign():
    c = torch.tensor([0.05, -0.05, 0.3, -0.2, 0.0, 0.0999, -0.1])
    assert pushed_from_zero(c, 0.1).tolist() == pytest.approx([0.1, -0.1, 0.3, -0.2, 0.0, 0.1, -0.1])


def small(**kw):
    return DeepSVDDEncoder(3, 3, 10, d_model=8, n_heads=2, d_ff=8, rep=4, **kw)


def series(T=80, D=3, seed=0):
    return np.random.default_rng(seed).normal(size=(T, D)).astype(np.float32)


def test_centre_is_the_mean_train_representation_before_epoch_1():
    torch.manual_seed(0)
    model, obj = small(), OneClassObjective(eps=0.0)
    w = Windows(series(), WindowSpec(window=10))
    tr_idx, _ = w.split(0.2)
    model.eval()
    with torch.no_grad():
        expected = model(w.inputs(tr_idx)).extras["rep"].mean(0)
    Trainer(epochs=0, device="cpu", progress=False).fit(Detector(model, obj), w, np.arange(3), np.arange(3))
    torch.testing.assert_close(obj.c, expected, rtol=1e-5, atol=1e-6)


def test_bias_free_by_default_and_deepod_biases_under_reference_quirks():
    names = lambda m: [n for n, _ in m.named_parameters() if n.endswith("bias")]
    assert names(small()) == [] and names(small(network="gru")) == []
    quirk = names(small(reference_quirks=True))
    # DeepOD: attention, feed-forward and LayerNorm keep their biases; input/output have none
    assert any("self_attn" in n for n in quirk) and any("norm" in n for n in quirk)
    assert not any(n.startswith(("token", "output")) for n in quirk)


def test_embedding_is_per_step_and_its_last_step_is_the_representation():
    out = small()(torch.randn(5, 10, 3))
    assert out.embedding.shape == (5, 10, 4)
    torch.testing.assert_close(out.extras["rep"], out.embedding[:, -1])


@pytest.mark.parametrize("network,layers,quirks", [("transformer", 1, False), ("transformer", 2, True),
                                                   ("gru", 1, False)])
def test_last_step_path_gives_the_full_sequences_last_step(network, layers, quirks):
    """Without a reader of the embedding, the last layer runs for the last step only: the
    representation equals the full path's last step (the old computation) within 1e-5
    relative, eval mode (dropout off), with DeepOD's biases or without, one or two layers."""
    torch.manual_seed(0)
    model = small(network=network, layers=layers, reference_quirks=quirks, dropout=0.0).eval()
    x = torch.randn(7, 10, 3)
    with torch.no_grad():
        full = model(x)
        model.needs_embedding = False
        last = model(x)
    assert last.embedding is None and full.embedding.shape == (7, 10, 4)
    torch.testing.assert_close(last.extras["rep"], full.embedding[:, -1], rtol=1e-5, atol=1e-6)
    # gradients too (training mode; dropout 0, so the same function)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    model.needs_embedding = True
    g_full = torch.autograd.grad(model(x).extras["rep"].square().sum(), params)
    model.needs_embedding = False
    g_last = torch.autograd.grad(model(x).extras["rep"].square().sum(), params)
    for a, b in zip(g_last, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_detector_asks_for_the_embedding_only_when_a_head_reads_it():
    from madbench.heads.madcluster import MADClusterHead

    assert not Detector(small(), OneClassObjective()).backbone.needs_embedding
    assert Detector(small(), OneClassObjective(), [MADClusterHead()]).backbone.needs_embedding


def test_heads_not_dividing_d_model_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^backbone.model.n_heads=3 does not divide backbone.model.d_model=8"):
        DeepSVDDEncoder(3, 3, 10, d_model=8, n_heads=3)


def test_soft_boundary_sets_r_per_batch_after_warmup():
    torch.manual_seed(0)
    obj = SoftBoundaryObjective(nu=0.2, warmup=1)
    det = Detector(small(), obj)
    w = Windows(series(T=200), WindowSpec(window=10))
    hist = Trainer(epochs=2, batch_size=400, patience=None, device="cpu", progress=False).fit(
        det, w, np.arange(3), np.arange(3))
    assert hist[0]["train_R"] == 0.0  # during the warm-up epoch R stays 0
    assert hist[1]["train_R"] == 0.0 and obj.R.item() > 0  # set after epoch 2's batch (logged before it)
    # with a frozen optimiser, one step after the warm-up sets R to the (1 − ν) quantile of √d
    from madbench.detector import FitContext

    det = Detector(small(dropout=0.0), SoftBoundaryObjective(nu=0.2, warmup=1))
    tr = Trainer(epochs=2, device="cpu", progress=False, optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
    ctx = FitContext(tr, det, w, *w.split(0.2), torch.arange(3), torch.arange(3))
    det.on_fit_start(ctx)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(tr.make_optimizer)
    batch = tr.batch(w, np.arange(50), torch.arange(3), torch.arange(3))
    ctx.epoch = 1
    det.training_step(batch, ctx)
    assert det.objective.R.item() == 0.0
    ctx.epoch = 2
    det.training_step(batch, ctx)
    with torch.no_grad():
        d = det.objective.distance(det(batch["x"])).sqrt()
    assert det.objective.R.item() == pytest.approx(torch.quantile(d, 0.8).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="objective.nu"):
        SoftBoundaryObjective(nu=0.0)


def test_window_score_covers_every_step_with_no_zero_padding(tmp_path):
    cfg = compose_cfg(["backbone=deepsvdd", "dataset.n_systems=1", "trainer.epochs=1", "protocol=[strict,madcluster]"])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all()
    e = stored(tmp_path)["sys0"]
    score = e.score
    assert np.isfinite(score).all() and (score > 0).all()  # every step is covered by some window
    # a window's score is its distance d; its steps all carry d, so the window score is d
    assert e.test.residuals is None
