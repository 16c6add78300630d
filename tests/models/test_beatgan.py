"""backbone=beatgan with objective=adversarial: the conv stack and its window-dependent last
kernel at the published sizes, the D step then the G step against the reference's loop
written out by hand (hi-bingo/BeatGAN ``model.py``), D re-initialised when its loss
collapses, BatchNorm in eval mode for scoring and validation, the score and residuals, the
MADCluster embedding, one pass carrying the head, and the bad-input errors."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from madbench import run
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.heads.madcluster import MADClusterHead
from madbench.models.beatgan import BeatGAN, stack_lengths
from madbench.objectives import adversarial
from madbench.objectives.adversarial import AdversarialObjective
from tests.conftest import compose_cfg
from tests.models.helpers import assert_m2ad_run_scores_every_step, sgd_context, spy_head_pass

LR = 0.01
L, D = 16, 3


def small(seed=0, n_outputs=D, **kw) -> BeatGAN:
    torch.manual_seed(seed)
    kw = {"filters": 4, "latent": 5, "layers": 3} | kw
    return BeatGAN(D, n_outputs, L, **kw).double()


def batch(seed=1, B=6):
    x = torch.rand(B, L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return {"x": x, "y": x.clone()}


def context(det, epoch=1):
    return sgd_context(det, D, L, LR, epoch)


def test_last_kernel_follows_the_window_and_the_published_size():
    assert stack_lengths(320, 5) == [320, 160, 80, 40, 20, 10]   # the official ECG windows: k10
    assert stack_lengths(100, 5) == [100, 50, 25, 12, 6, 3]      # TimeSeAD's L // 32 at L = 100: k3
    m = BeatGAN(55, 55, 100)
    assert m.generator.encoder.last.kernel_size == (3,) and m.discriminator.encoder.last.kernel_size == (3,)
    assert m.generator.decoder.first[0].kernel_size == (3,)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(2.27e6, rel=0.005)  # BACKBONES.md: 2.27M
    assert BeatGAN(1, 1, 320).generator.encoder.last.kernel_size == (10,)
    convs = [c for c in m.generator.encoder.modules() if isinstance(c, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512, 50]
    assert all(c.bias is None for c in m.modules() if isinstance(c, (nn.Conv1d, nn.ConvTranspose1d)))
    # BatchNorm from the second encoder layer on (none after the first conv)
    assert type(m.generator.encoder.features[1]).__name__ == "LeakyReLU"
    assert type(m.generator.decoder.activation).__name__ == "Tanh"
    # odd lengths (25 → 12 → 25) come back exactly
    m.eval()
    x = torch.rand(2, 100, 55)
    out = m(x)
    assert out.extras["fake"].shape == (2, 100, 55) and out.extras["latent"].shape == (2, 50)
    m.train()
    out = m(x)
    assert out.extras["d_real"].shape == (2,) and out.extras["feat_real"].shape == (2, 512, 3)


def test_init_is_xavier_normal_convs_and_n1_002_batchnorm():
    m = BeatGAN(8, 8, 64, filters=16)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm1d):
            assert torch.all(mod.bias == 0) and abs(mod.weight.mean().item() - 1) < 0.02
    conv = m.generator.encoder.features[2]  # Conv1d(16 → 32, k4): xavier std = sqrt(2/(fan_in + fan_out))
    std = (2 / (16 * 4 + 32 * 4)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(std, rel=0.15)


def test_embedding_is_the_decoders_last_hidden_map_repeated_or_the_latent_broadcast():
    m = small()
    m.eval()
    x = batch()["x"]
    _, z, hidden = m.generator(x.transpose(1, 2))
    out = m(x)
    assert hidden.shape == (len(x), 4, L // 2) and out.embedding.shape == (len(x), L, 4)
    torch.testing.assert_close(out.embedding[:, 0::2], hidden.transpose(1, 2))
    torch.testing.assert_close(out.embedding[:, 1::2], hidden.transpose(1, 2))
    lat = small(embedding="latent")
    lat.eval()
    out = lat(x)
    assert out.embedding.shape == (len(x), L, 5)
    for t in range(L):
        torch.testing.assert_close(out.embedding[:, t], out.extras["latent"])


def reference_step(G, D, x, w_adv=1.0):
    """The official ``optimize``: update_netd, update_netg (SGD by hand), written on the
    channels-first window x [B, C, L]."""
    bce, mse = nn.BCELoss(), nn.MSELoss()
    d_params, g_params = list(D.parameters()), list(G.parameters())
    out_real, _ = D(x)
    fake, _, _ = G(x)
    out_fake, _ = D(fake)
    err_d = bce(out_real, torch.ones_like(out_real)) + bce(out_fake, torch.zeros_like(out_fake))
    gd = torch.autograd.grad(err_d, d_params)
    with torch.no_grad():
        for p, g in zip(d_params, gd):
            p -= LR * g
    fake, _, _ = G(x)
    _, feat_fake = D(fake)
    _, feat_real = D(x)
    err_g = mse(fake, x) + w_adv * mse(feat_fake, feat_real)
    gg = torch.autograd.grad(err_g, g_params)
    with torch.no_grad():
        for p, g in zip(g_params, gg):
            p -= LR * g
    return err_d.item(), err_g.item()


@pytest.mark.parametrize("w_adv", [1.0, 0.3])
def test_discriminator_step_then_generator_step_on_a_fresh_forward(w_adv):
    det = Detector(small(), AdversarialObjective(w_adv=w_adv))
    ref = copy.deepcopy(det.backbone)
    b = batch()
    err_d, err_g = reference_step(ref.generator, ref.discriminator, b["x"].transpose(1, 2), w_adv)
    logged = det.training_step(b, context(det))
    assert logged["err_d"].item() == pytest.approx(err_d, rel=1e-10)
    assert logged["err_g"].item() == pytest.approx(err_g, rel=1e-10)
    for (name, got), want in zip(det.backbone.named_parameters(), ref.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=name)
    # G's BatchNorm running statistics saw the same two training batches
    for (name, got), want in zip(det.backbone.generator.named_buffers(), ref.generator.buffers()):
        torch.testing.assert_close(got, want, msg=name)
    # the monitored quantity is G's reconstruction error
    assert logged["loss"].item() == pytest.approx(logged["err_g_rec"].item())


def _bn_biases(m):
    return torch.cat([mod.bias.detach().flatten() for mod in m.discriminator.modules() if isinstance(mod, nn.BatchNorm1d)])


def test_discriminator_is_reinitialised_when_its_loss_collapses(monkeypatch):
    # no collapse: D's BatchNorm biases moved away from their initial 0
    det = Detector(small(), AdversarialObjective())
    det.training_step(batch(), context(det))
    assert torch.count_nonzero(_bn_biases(det.backbone)) > 0
    # forced collapse at the default threshold: err_d = 2e-7 < 5e-6
    real_bce = adversarial.F.binary_cross_entropy
    monkeypatch.setattr(adversarial.F, "binary_cross_entropy", lambda p, t: real_bce(p, t) * 0 + 1e-7)
    det = Detector(small(), AdversarialObjective())
    calls = []
    real = det.backbone.reinitialize_discriminator
    det.backbone.reinitialize_discriminator = lambda: calls.append(1) or real()
    ctx = context(det)
    logged = det.training_step(batch(), ctx)
    assert logged["err_d"].item() == pytest.approx(2e-7) and calls == [1]
    assert torch.count_nonzero(_bn_biases(det.backbone)) == 0  # fresh: BatchNorm biases back to 0
    det.training_step(batch(seed=2), ctx)
    det.objective.on_epoch_end(det, ctx)
    assert ctx.logged["d_reinit"] == 2 and det.objective.reinits == 0
    # a threshold below the loss never re-initialises
    det = Detector(small(), AdversarialObjective(d_reinit_below=1e-8))
    det.backbone.reinitialize_discriminator = lambda: pytest.fail("re-initialised above the threshold")
    det.training_step(batch(), context(det))


def test_batchnorm_is_in_eval_mode_for_scoring_and_validation():
    torch.manual_seed(0)
    det = Detector(BeatGAN(D, D, L, filters=4, latent=5, layers=3), AdversarialObjective())
    series = np.random.default_rng(0).random((120, D)).astype(np.float32)
    w = Windows(series, WindowSpec(window=L))
    modes = []
    real_val = det.objective.validation_step
    det.objective.validation_step = lambda d, b, c: modes.append(d.training) or real_val(d, b, c)
    tr = Trainer(epochs=2, batch_size=16, device="cpu", progress=False, patience=None)
    hist = tr.fit(det, w, np.arange(D), np.arange(D))
    assert modes and not any(modes) and np.isfinite(hist[-1]["val_loss"])
    assert "d_reinit" in hist[0] and "train_err_d" in hist[0]
    # a window's score does not depend on the other windows of its batch
    (big,) = Trainer(device="cpu", progress=False, eval_batch_size=1024).score(det, w, np.arange(D), np.arange(D))
    (one,) = Trainer(device="cpu", progress=False, eval_batch_size=1).score(det, w, np.arange(D), np.arange(D))
    np.testing.assert_allclose(one.step, big.step, rtol=1e-5)
    assert np.isfinite(big.step).all() and big.residuals.shape == (120, D)


def test_score_is_the_per_step_squared_error_over_the_sensors():
    m = small(n_outputs=2)
    m.eval()
    b = batch()
    b["y"] = b["x"][..., :2]
    with torch.no_grad():
        out = m(b["x"])
    step, res = AdversarialObjective().score(b, out)
    fake = out.extras["fake"]
    torch.testing.assert_close(res, b["x"][..., :2] - fake[..., :2])
    torch.testing.assert_close(step, ((b["x"][..., :2] - fake[..., :2]) ** 2).mean(-1))
    # with every column a sensor, its window mean is the reference's window MSE
    full = small().eval()
    with torch.no_grad():
        out = full(b["x"])
    step_all, _ = AdversarialObjective().score({"x": b["x"], "y": b["x"]}, out)
    torch.testing.assert_close(step_all.mean(1), ((b["x"] - out.extras["fake"]) ** 2).mean((1, 2)))


def test_head_joins_the_generator_step_only():
    head = MADClusterHead()
    det = Detector(small(), AdversarialObjective(), [head])
    head.ensure_centre(4)
    det.double()
    owners, calls, stepped = spy_head_pass(det, context(det), head, batch())
    assert owners == {"generator"} and calls == 1
    assert stepped == [("discriminator",), ("generator", "madcluster_nu")]


def test_a_batch_of_one_window_is_not_trained_on():
    det = Detector(small(), AdversarialObjective())
    before = copy.deepcopy(det.state_dict())
    assert det.training_step(batch(B=1), context(det)) == {}
    for k, v in det.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_a_window_shorter_than_the_conv_stack_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^dataset.window=20 is shorter than BeatGAN's conv stack allows: its 5 "
                                          r"halving convolutions \(backbone.model.layers\) need a window of at least 32$"):
        BeatGAN(3, 3, 20)
    BeatGAN(3, 3, 32)
    for kw, key in (({"embedding": "mean"}, "backbone.model.embedding"),
                    ({"out_activation": "relu"}, "backbone.model.out_activation"),
                    ({"layers": 0}, "backbone.model.layers")):
        with pytest.raises(ConfigError, match=f"^{key}"):
            BeatGAN(3, 3, 64, **kw)
    with pytest.raises(ConfigError, match="^objective.w_adv"):
        AdversarialObjective(w_adv=-1)
    # the run refuses it before training: debug=tiny windows are 20 steps
    cfg = compose_cfg(["backbone=beatgan", "backbone.model.layers=5", "dataset.n_systems=1"])
    with pytest.raises(ConfigError, match=r"^dataset.window=20 is shorter"):
        run.main(cfg, tmp_path)
    assert not (tmp_path / "scores.npz").exists()


def test_a_run_scores_every_step_with_residuals_and_m2ad_scoring(tmp_path):
    assert_m2ad_run_scores_every_step("beatgan", tmp_path)
