"""Paired statistics on constructed cases with known answers (issue 13)."""
import numpy as np
import pytest
from scipy import stats

from madbench.paired import cd_diagram, friedman, mean_ranks, nemenyi_cd, paired_gain


def test_identical_arms_give_p_one_and_a_ci_at_zero():
    a = np.array([0.3, 0.5, 0.1, 0.9, 0.4])
    g = paired_gain(a, a.copy())
    assert g.wilcoxon_p == 1.0 and g.mean_gain == 0.0 and g.ci_low == 0.0 == g.ci_high
    assert not g.significant and g.verdict() == "CI covers 0"


def test_a_constant_shift_is_detected():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.2, 0.6, 12)
    g = paired_gain(a, a + 0.1)
    assert g.mean_gain == pytest.approx(0.1) and g.ci_low == pytest.approx(0.1) and g.ci_high == pytest.approx(0.1)
    # 12 positive differences: the exact two-sided signed-rank p is 2 / 2^12
    assert g.wilcoxon_p == pytest.approx(2 / 2 ** 12)
    assert g.significant and g.verdict() == "gain"


def test_noisy_gain_ci_and_wilcoxon_match_scipy():
    a = np.array([0.2, 0.4, 0.5, 0.3, 0.6, 0.45, 0.35, 0.55])
    d = np.array([0.05, -0.02, 0.1, 0.03, 0.08, -0.01, 0.04, 0.06])
    g = paired_gain(a, a + d, seed=3)
    assert g.mean_gain == pytest.approx(d.mean())
    assert g.wilcoxon_p == pytest.approx(stats.wilcoxon(d).pvalue)
    ref = stats.bootstrap((d,), np.mean, n_resamples=9999, method="percentile", random_state=np.random.default_rng(3))
    assert (g.ci_low, g.ci_high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert g.ci_low < d.mean() < g.ci_high


def test_nan_entities_are_dropped_from_both_arms():
    g = paired_gain(np.array([0.1, np.nan, 0.3]), np.array([0.2, 0.5, np.nan]))
    assert g.n == 1 and g.mean_gain == pytest.approx(0.1)


def test_friedman_ranks_by_hand():
    # 4 backbones × 3 arms (higher is better); ranks per row (1 = best):
    #   [0.5, 0.6, 0.4] → 2, 1, 3
    #   [0.3, 0.3, 0.1] → 1.5, 1.5, 3
    #   [0.2, 0.7, 0.9] → 3, 2, 1
    #   [0.8, 0.9, 0.1] → 2, 1, 3      mean ranks: 2.125, 1.375, 2.5
    s = np.array([[0.5, 0.6, 0.4], [0.3, 0.3, 0.1], [0.2, 0.7, 0.9], [0.8, 0.9, 0.1]])
    np.testing.assert_allclose(mean_ranks(s), [2.125, 1.375, 2.5])
    f = friedman(s, ["none", "madcluster", "other"])
    assert f.p == pytest.approx(stats.friedmanchisquare(*s.T).pvalue) and f.n_blocks == 4
    # Friedman's χ² by hand: rank sums R = 8.5, 5.5, 10 → 12/(N k (k+1)) Σ R² − 3N(k+1)
    # = 12/48 · 202.5 − 48 = 2.625; the one tied pair (t = 2) divides it by
    # 1 − Σ(t³ − t)/(N k (k² − 1)) = 1 − 6/96 → 2.8; χ²(2 dof) survival: p = e^(−2.8/2)
    assert f.statistic == pytest.approx(2.8) and f.p == pytest.approx(np.exp(-1.4))
    # Nemenyi CD for k = 3, N = 4: q_0.05 = 3.314 / √2 (Demšar's table gives 2.343)
    assert nemenyi_cd(3, 4) == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 4)), rel=1e-3)


def test_cd_diagram_is_written(tmp_path):
    f = friedman(np.array([[0.5, 0.6, 0.4], [0.3, 0.4, 0.1], [0.2, 0.7, 0.9]]), ["a", "b", "c"])
    cd_diagram(f, tmp_path / "cd.png", title="test")
    assert (tmp_path / "cd.png").stat().st_size > 1000
