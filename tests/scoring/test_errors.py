"""Point and area errors against independent computations (explicit loops, np.trapezoid)."""
import warnings

import numpy as np
import pandas as pd
import pytest

from madbench.scoring.errors import area_errors, compute_errors, point_errors, rolling_trapezoid


def ewm_loop(x, com):
    """adjust=True EWM by its definition: weights (1 - a)^i over all past values."""
    a = 1.0 / (1.0 + com)
    out = np.empty_like(x, dtype=float)
    for c in range(x.shape[1]):
        for t in range(x.shape[0]):
            w = (1 - a) ** np.arange(t, -1, -1)
            out[t, c] = (w * x[: t + 1, c]).sum() / w.sum()
    return out


def trapz_windows(x, window=10, dx=100.0, min_periods=5):
    """Rolling trapezoid with explicit pandas-style centred windows [i - w//2, i + w - 1 - w//2]."""
    n = len(x)
    left, right = window // 2, window - 1 - window // 2
    out = np.full(n, np.nan)
    for i in range(n):
        w = x[max(0, i - left): min(n, i + right + 1)]
        if len(w) >= min_periods:
            out[i] = np.trapezoid(w, dx=dx)
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    y = rng.random((80, 3))
    y_hat = y + rng.normal(0, 0.2, y.shape)
    return y, y_hat


def test_point_errors_match_definition(data):
    y, y_hat = data
    got = point_errors(y, y_hat)
    np.testing.assert_allclose(got, ewm_loop(np.abs(y - y_hat), 10), rtol=1e-12, atol=0)
    np.testing.assert_allclose(got, pd.DataFrame(np.abs(y - y_hat)).ewm(com=10).mean(), rtol=1e-12)
    np.testing.assert_allclose(point_errors(y, y_hat, com=3), ewm_loop(np.abs(y - y_hat), 3), rtol=1e-12)
    np.testing.assert_array_equal(point_errors(y, y_hat, smooth=False), np.abs(y - y_hat))


def test_point_errors_leading_nan_rows_stay_nan_and_smoothing_starts_after(data):
    y, y_hat = data
    y_hat = y_hat.copy()
    y_hat[:7] = np.nan
    got = point_errors(y, y_hat)
    assert np.isnan(got[:7]).all()
    # smoothing restarts at the first scored row: row 7 is the raw error itself
    np.testing.assert_allclose(got[7], np.abs(y[7] - y_hat[7]), rtol=1e-15)
    np.testing.assert_allclose(got[7:], ewm_loop(np.abs(y[7:] - y_hat[7:]), 10), rtol=1e-12)


def test_rolling_trapezoid_matches_pandas_rolling_apply():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 2))
    for window in (10, 9, 4, 1):
        mp = window // 2
        got = rolling_trapezoid(x, window=window, dx=100.0)
        for c in range(2):
            ref = pd.Series(x[:, c]).rolling(window, center=True, min_periods=mp).apply(
                lambda w: np.trapezoid(w, dx=100.0), raw=True)
            np.testing.assert_allclose(got[:, c], ref.to_numpy(), rtol=1e-12, atol=1e-11)
            np.testing.assert_allclose(got[:, c], trapz_windows(x[:, c], window, 100.0, mp), rtol=1e-12, atol=1e-11)


def test_rolling_trapezoid_short_windows_are_nan():
    x = np.arange(4.0)[:, None]
    # window 10 over 4 rows: every window has 4 < 5 rows
    assert np.isnan(rolling_trapezoid(x, 10)).all()
    assert np.isfinite(rolling_trapezoid(x, 10, min_periods=1)).all()


def test_area_errors_match_independent(data):
    y, y_hat = data
    raw = np.column_stack([trapz_windows(y[:, c]) - trapz_windows(y_hat[:, c]) for c in range(3)])
    sm = ewm_loop(raw, 10)
    expected = (sm - sm.mean()) / sm.std()
    got, (mu, sd) = area_errors(y, y_hat, return_stats=True)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)
    assert mu == pytest.approx(sm.mean()) and sd == pytest.approx(sm.std())
    assert got.mean() == pytest.approx(0, abs=1e-12) and got.std() == pytest.approx(1)
    # one mean/std over all sensors, not per sensor
    assert np.ptp(got.mean(axis=0)) > 1e-3
    np.testing.assert_allclose(compute_errors(y, y_hat, kind="area"), got)


def test_area_errors_with_given_stats(data):
    y, y_hat = data
    _, (mu, sd) = area_errors(y, y_hat, return_stats=True)
    raw = area_errors(y, y_hat, stats=(0.0, 1.0))
    np.testing.assert_allclose(area_errors(y, y_hat, stats=(2.0, 4.0)), (raw - 2.0) / 4.0, rtol=1e-12)
    np.testing.assert_allclose(raw, area_errors(y, y_hat) * sd + mu, rtol=1e-9, atol=1e-9)


def test_area_errors_nan_rows(data):
    y, y_hat = data
    y_hat = y_hat.copy()
    y_hat[:12] = np.nan
    got = area_errors(y, y_hat)
    assert np.isnan(got[:12]).all() and np.isfinite(got[12:]).all()
    np.testing.assert_allclose(got[12:], area_errors(y[12:], y_hat[12:]), rtol=1e-12)


def test_area_errors_zero_std_warns_and_centres():
    y = np.ones((30, 2))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = area_errors(y, y.copy())
    assert any("std" in str(w.message) for w in rec)
    assert not any("divide" in str(w.message) or "invalid value" in str(w.message) for w in rec)
    np.testing.assert_array_equal(got, np.zeros_like(y))


def test_compute_errors_dispatch_and_bad_inputs(data):
    y, y_hat = data
    np.testing.assert_array_equal(compute_errors(y, y_hat, kind="point"), point_errors(y, y_hat))
    np.testing.assert_array_equal(compute_errors(y, y_hat, kind="point", com=2), point_errors(y, y_hat, com=2))
    with pytest.raises(ValueError, match="unknown error kind"):
        compute_errors(y, y_hat, kind="squared")
    with pytest.raises(ValueError, match="same shape"):
        point_errors(y, y_hat[:, :2])
    bad = y_hat.copy()
    bad[40, 1] = np.nan
    with pytest.raises(ValueError, match="row 40"):
        point_errors(y, bad)
    with pytest.raises(ValueError, match="row 40"):
        area_errors(y, bad)
    bad[40, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        point_errors(y, bad)
    with pytest.raises(ValueError, match="shape"):
        point_errors(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_one_dimensional_input_is_one_sensor():
    y = np.linspace(0, 1, 20)
    got = point_errors(y, y[::-1])
    assert got.shape == (20, 1)
    np.testing.assert_allclose(got[:, 0], ewm_loop(np.abs(y - y[::-1])[:, None], 10)[:, 0], rtol=1e-12)
