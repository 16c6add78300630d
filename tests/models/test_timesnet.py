"""backbone=timesnet with objective=reconstruct: the Inception block against its six
convolutions, FFT period selection against numpy per window and per batch, a TimesBlock
against the equations written out, the per-window normalisation undone at the output,
scores that do not depend on trainer.eval_batch_size (and do under reference_quirks), the
embedding, and top_k beyond the window's frequencies refused with the key named."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from madbench import run
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError
from madbench.fit import Trainer
from madbench.models.timesnet import InceptionBlock, TimesBlock, TimesNet
from madbench.objectives.reconstruct import ReconstructObjective
from tests.conftest import compose_cfg


def test_inception_block_is_the_mean_of_its_same_size_convolutions():
    torch.manual_seed(0)
    blk = InceptionBlock(3, 5, num_kernels=6)
    for k in blk.kernels:                       # non-zero biases, so their mean is checked too
        torch.nn.init.normal_(k.bias)
    x = torch.randn(4, 3, 7, 2)                  # a thin grid: most of an 11×11 kernel falls in the padding
    expected = torch.stack([k(x) for k in blk.kernels], -1).mean(-1)
    torch.testing.assert_close(blk(x), expected, rtol=1e-5, atol=1e-5)
    assert [k.weight.shape[-1] for k in blk.kernels] == [1, 3, 5, 7, 9, 11]


def wave(periods, L=40, d=4, seed=0):
    """[len(periods), L, d]: window i is a sine of period periods[i] plus small noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(L)
    xs = [np.sin(2 * np.pi * t / p)[:, None] * rng.uniform(1, 2, d) + 0.05 * rng.normal(size=(L, d)) for p in periods]
    return torch.tensor(np.stack(xs), dtype=torch.float32)


def numpy_top(x, k, per_batch):
    amp = np.abs(np.fft.rfft(x.numpy(), axis=1)).mean(-1)      # [B, L//2 + 1]
    amp[:, 0] = 0                                               # the zero frequency never counts
    if per_batch:
        top = np.argsort(-amp.mean(0))[:k]
        return np.tile(top, (len(x), 1)), amp
    return np.argsort(-amp, axis=1)[:, :k], amp


@pytest.mark.parametrize("per_batch", [False, True])
def test_periods_are_the_top_k_fft_frequencies_per_window_or_per_batch(per_batch):
    x = wave([10, 10, 10, 4, 8])                                 # four windows of one kind, one of another
    blk = TimesBlock(4, 4, top_k=2, num_kernels=1, per_batch=per_batch)
    period, weight = blk.periods(x)
    top, amp = numpy_top(x, 2, per_batch)
    np.testing.assert_array_equal(period.numpy(), 40 // top)
    np.testing.assert_allclose(weight.numpy(), np.take_along_axis(amp, top, 1), rtol=1e-5)
    if per_batch:
        assert (period[:, 0] == 10).all()                        # the batch's dominant period, for every window
    else:
        assert period[:, 0].tolist() == [10, 10, 10, 4, 8]       # each window its own


def test_times_block_folds_convolves_and_weighs_each_period():
    """The block written out for one window: for each period p, zero-pad to a multiple of p,
    fold to [d, L/p, p], the two Inception blocks with GELU between, unfold, crop; then the
    softmax-of-amplitude weighted sum plus the input."""
    torch.manual_seed(0)
    blk = TimesBlock(3, 5, top_k=3, num_kernels=2)
    x = torch.randn(6, 21, 3)                                    # L = 21: periods that do not divide L
    merges = []
    for inception in (blk.conv[0], blk.conv[2]):                 # each kernel merged once per forward
        merged = inception.merged
        inception.merged = lambda merged=merged: merges.append(1) or merged()
    out = blk(x)
    assert len(merges) == 2
    period, weight = blk.periods(x)
    expected = []
    for b in range(len(x)):
        parts = []
        for p in period[b].tolist():
            n = -(-21 // p)
            g = F.pad(x[b], (0, 0, 0, n * p - 21)).T.reshape(1, 3, n, p)
            g = blk.conv[2](F.gelu(blk.conv[0](g)))
            parts.append(g.reshape(3, n * p).T[:21])
        w = torch.softmax(weight[b], 0)
        expected.append(sum(wi * pi for wi, pi in zip(w, parts)) + x[b])
    expected = torch.stack(expected)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # the same gradients for every kernel as the window-by-window path (one merge per use there)
    params = list(blk.parameters())
    got = torch.autograd.grad((out ** 2).sum(), params)
    want = torch.autograd.grad((expected ** 2).sum(), params)
    for g, w_ in zip(got, want):
        torch.testing.assert_close(g, w_, rtol=1e-4, atol=1e-5)


def small(**kw):
    torch.manual_seed(0)
    return TimesNet(5, 3, 20, d_model=8, d_ff=8, layers=2, top_k=3, num_kernels=3, **kw)


def test_normalisation_per_window_is_undone_at_the_output():
    m = small(dropout=0.0).eval()
    x = torch.randn(4, 20, 5) * 3
    a = torch.tensor([2.0, 0.5, 10.0, 1.0, 1.0])
    b = torch.tensor([1.0, -3.0, 100.0, 0.0, 0.0])
    with torch.no_grad():
        rec = m(x).reconstruction
        assert rec.shape == (4, 20, 3)
        # per channel: rec(a·x + b) = a·rec(x) + b on the sensors (the first 3 inputs) ...
        torch.testing.assert_close(m(x * a + b).reconstruction, rec * a[:3] + b[:3], rtol=1e-4, atol=1e-3)
        # ... and rescaling a covariate (inputs 4, 5) changes nothing
        c = torch.tensor([1.0, 1.0, 1.0, 7.0, 0.5])
        torch.testing.assert_close(m(x * c).reconstruction, rec, rtol=1e-4, atol=1e-4)


def test_embedding_is_the_last_blocks_layer_normed_output():
    m = small().eval()
    out = m(torch.randn(4, 20, 5))
    assert out.embedding.shape == (4, 20, 8)
    torch.testing.assert_close(out.embedding.mean(-1), torch.zeros(4, 20), atol=1e-5, rtol=0)  # LN at init: γ=1, β=0
    torch.testing.assert_close(m.projection(out.embedding) * 0, out.reconstruction * 0)


def scores(quirks: bool, eval_batch_size: int):
    rng = np.random.default_rng(0)
    t = np.arange(120)
    # periods that drift along the series, so windows disagree on their dominant frequency
    series = np.stack([np.sin(2 * np.pi * t / (3 + 0.06 * t)), np.cos(2 * np.pi * t / 9)] * 2 + [rng.normal(size=120)], 1)
    w = Windows(series.astype(np.float32), WindowSpec(window=20))
    det = Detector(small(reference_quirks=quirks), ReconstructObjective())
    (s,) = Trainer(device="cpu", progress=False, eval_batch_size=eval_batch_size).score(
        det, w, np.arange(5), np.arange(3))
    return s


def test_scores_do_not_depend_on_the_eval_batch_size_and_do_under_reference_quirks():
    a, b, c = scores(False, 1000), scores(False, 7), scores(False, 1)
    np.testing.assert_allclose(a.step, b.step, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.step, c.step, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.residuals, c.residuals, rtol=1e-5, atol=1e-6)
    assert np.isfinite(a.step).all()
    q1, q7 = scores(True, 1000), scores(True, 7)
    assert not np.allclose(q1.step, q7.step, rtol=1e-3)          # TSLib: the batch picks the periods
    # a batch of one window: the batch's periods are the window's own
    np.testing.assert_allclose(scores(True, 1).step, c.step, rtol=1e-5, atol=1e-7)


def test_top_k_beyond_the_windows_frequencies_is_refused_with_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^backbone.model.top_k=11; expected an integer in \[1, 10\]"):
        TimesNet(5, 3, 20, top_k=11)
    TimesNet(5, 3, 20, top_k=10)                                 # every non-zero frequency is allowed
    with pytest.raises(ConfigError, match=r"^backbone.model.d_ff=0"):
        TimesNet(5, 3, 20, d_ff=0)
    cfg = compose_cfg(["backbone=timesnet", "backbone.model.top_k=11", "dataset.n_systems=1"])  # window 20
    with pytest.raises(ConfigError) as e:
        run.main(cfg, tmp_path)
    assert str(e.value).startswith("backbone.model.top_k=11") and "\n" not in str(e.value)
    assert not (tmp_path / "scores.npz").exists()


def test_per_dataset_sizes_and_recipe_are_the_tslib_scripts():
    expect = {"msl": (8, 16, 1, 3, 1), "smap": (128, 128, 3, 3, 3), "smd": (64, 64, 2, 5, 10), "psm": (64, 64, 2, 3, 3),
              "msl_merged": (8, 16, 1, 3, 1), "smd_merged": (64, 64, 2, 5, 10)}
    for ds, (d, ff, layers, k, epochs) in expect.items():
        cfg = compose_cfg(["backbone=timesnet", f"dataset={ds}"], tiny=False)
        m = cfg.backbone.model
        assert (m.d_model, m.d_ff, m.layers, m.top_k, cfg.trainer.epochs) == (d, ff, layers, k, epochs), ds
        assert cfg.trainer.batch_size == 128 and cfg.trainer.lr_decay == 0.5 and cfg.trainer.patience == 3
        assert cfg.trainer.optimizer.lr == 1e-4
