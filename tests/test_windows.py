import numpy as np
import pytest
import torch

from madbench.data.windows import Windows, WindowSpec


def series(T, D, off=0.0):
    return (np.arange(T * D, dtype=np.float32).reshape(T, D) + off)


def test_windows_are_views_of_one_base_tensor():
    x = series(50, 3)
    w = Windows(x, WindowSpec(window=10))
    # the base tensor shares memory with the input array: no copy of the series
    assert w.base.data_ptr() == x.__array_interface__["data"][0]
    # the unfolded view shares the same storage (zero-copy windows)
    assert w._view.untyped_storage().data_ptr() == w.base.untyped_storage().data_ptr()
    assert w._view.shape == (41, 3, 10)


def test_window_contents_and_targets_forecast():
    x = series(30, 2)
    spec = WindowSpec(window=5, horizon=1)
    w = Windows(x, spec)
    assert len(w) == 30 - 5 - 1 + 1
    xb = w.inputs(np.array([0, 3]))
    np.testing.assert_array_equal(xb[1].numpy(), x[3:8])
    yb = w.targets(np.array([0, 3]), torch.tensor([1]))
    np.testing.assert_array_equal(yb[1].numpy(), x[8:9, [1]])
    assert list(spec.score_offsets()) == [5]


def test_reference_gap_skips_one_step():
    x = series(30, 1)
    spec = WindowSpec(window=5, horizon=1, gap=1)
    w = Windows(x, spec)
    assert len(w) == 30 - 7 + 1
    np.testing.assert_array_equal(w.targets(np.array([0]))[0].numpy(), x[6:7])


def test_stride_and_reconstruction_offsets():
    x = series(23, 1)
    spec = WindowSpec(window=5, stride=3)
    w = Windows(x, spec)
    assert list(w.local_start) == [0, 3, 6, 9, 12, 15, 18]
    assert list(spec.score_offsets()) == [0, 1, 2, 3, 4]


def test_pooled_windows_never_cross_series():
    a, b = series(20, 2), series(15, 2, off=1000)
    w = Windows([a, b], WindowSpec(window=6, horizon=1))
    assert len(w) == (20 - 7 + 1) + (15 - 7 + 1)
    for i in range(len(w)):
        xb = w.inputs(np.array([i]))[0].numpy()
        assert (xb < 1000).all() or (xb >= 1000).all()
    tr, va = w.split(0.2)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(w)
    # validation is the last windows of each series, in time
    for sid in (0, 1):
        t = w.local_start[tr][w.series_id[tr] == sid]
        v = w.local_start[va][w.series_id[va] == sid]
        assert t.max() < v.min()


def test_restrided_shares_the_base_tensor_and_equals_a_fresh_windowing():
    a, b = series(40, 2), series(25, 2, off=1000)  # pooled: the base is a concatenated copy
    train = Windows([a, b], WindowSpec(window=6, stride=4, horizon=1))
    score_spec = WindowSpec(window=6, stride=1, horizon=1)
    again, fresh = train.restrided(score_spec), Windows([a, b], score_spec)
    assert again.base is train.base and again.spec == score_spec
    for attr in ("starts", "series_id", "local_start"):
        np.testing.assert_array_equal(getattr(again, attr), getattr(fresh, attr))
    idx = np.arange(len(fresh))
    assert torch.equal(again.inputs(idx), fresh.inputs(idx)) and torch.equal(again.targets(idx), fresh.targets(idx))
    assert len(train) < len(again)


@pytest.mark.parametrize("kw,msg", [({"window": 1}, "dataset.window"), ({"window": 5, "stride": 6}, "dataset.stride")])
def test_bad_spec(kw, msg):
    with pytest.raises(ValueError, match=msg):
        WindowSpec(**kw)


def test_inputs_are_the_windows_rows_and_a_reconstructions_target_is_their_sensor_part():
    """Windows.inputs gathers whole base rows per window (then the columns, unless all of
    them in order); Trainer.batch takes a reconstruction's target as the sensors' slice of
    x. Both must equal a window cut by hand."""
    from madbench.fit import Trainer

    x = np.random.default_rng(0).random((30, 5)).astype(np.float32)
    w = Windows(x, WindowSpec(window=7, stride=2))
    idx = np.array([0, 3, 5])
    by_hand = np.stack([x[s:s + 7] for s in w.starts[idx]])
    np.testing.assert_array_equal(w.inputs(idx).numpy(), by_hand)
    np.testing.assert_array_equal(w.inputs(idx, torch.arange(5)).numpy(), by_hand)
    cols = torch.tensor([3, 0, 4])
    np.testing.assert_array_equal(w.inputs(idx, cols).numpy(), by_hand[..., [3, 0, 4]])
    tr = Trainer(epochs=1, device="cpu", progress=False)
    b = tr.batch(w, idx, cols, torch.tensor([3, 0]))  # sensors lead the inputs: y is a view of x
    np.testing.assert_array_equal(b["y"].numpy(), by_hand[..., [3, 0]])
    assert b["y"].data_ptr() == b["x"].data_ptr()
    b = tr.batch(w, idx, cols, torch.tensor([4]))  # not leading: gathered on its own
    np.testing.assert_array_equal(b["y"].numpy(), by_hand[..., [4]])
    f = Windows(x, WindowSpec(window=7, horizon=1))
    b = tr.batch(f, idx, torch.arange(5), torch.tensor([0]))  # a forecast's target is the next step
    np.testing.assert_array_equal(b["y"].numpy(), np.stack([x[s + 7:s + 8, [0]] for s in f.starts[idx]]))
