"""Thresholds that never look at test labels, on hand-computed numbers; peaks over
threshold (POT, Siffer et al. KDD 2017) against a known generalized Pareto tail."""
import numpy as np
import pytest
from scipy import stats

from madbench.errors import ConfigError, DataError
from madbench.scoring.thresholds import (PeaksOverThreshold, empirical_pvalues, percentile_threshold,
                                         validation_threshold)


def test_validation_threshold_quantile_and_max_by_hand():
    v = np.array([3.0, np.nan, 1.0, 5.0, 2.0, 4.0])  # NaN = an unscored step, left out
    # linear quantile of [1, 2, 3, 4, 5]: position q·4
    assert validation_threshold(v, q=0.5) == 3.0
    assert validation_threshold(v, q=0.9) == pytest.approx(4.6)      # 4 + 0.6·(5 − 4)
    assert validation_threshold(v, q=0.99) == pytest.approx(4.96)    # 4 + 0.96
    assert validation_threshold(v, method="max", factor=1.2) == pytest.approx(6.0)
    assert validation_threshold(v, method="max") == 5.0              # factor 1 by default


@pytest.mark.parametrize("kw,match", [({"q": 1.0}, r"threshold\.q=1\.0"), ({"q": 0.0}, r"threshold\.q=0\.0"),
                                      ({"method": "median"}, r"threshold\.method='median'")])
def test_validation_threshold_refuses_bad_settings(kw, match):
    with pytest.raises(ConfigError, match=match):
        validation_threshold(np.arange(5.0), **kw)


def test_validation_threshold_needs_a_finite_score():
    with pytest.raises(ConfigError, match="no finite validation scores"):
        validation_threshold(np.array([np.nan, np.inf]))


def test_percentile_threshold_by_hand():
    s = np.array([1, 1, 2, 2, 3, 3, 4, 6, 7, 8, np.nan], float)
    # (100 − 25)th percentile of the 10 finite scores: position 0.75·9 = 6.75 → 4 + 0.75·2 = 5.5
    assert percentile_threshold(s, 25) == pytest.approx(5.5)
    # 10 % → 90th: position 8.1 → 7 + 0.1·1 = 7.1
    assert percentile_threshold(s, 10) == pytest.approx(7.1)
    for bad in (0, 100, -1):
        with pytest.raises(ConfigError, match="anomaly_ratio"):
            percentile_threshold(s, bad)


def test_empirical_pvalues_by_hand():
    ref = np.array([1.0, 2.0, 2.0, 3.0, np.nan])  # 4 finite null scores
    p = empirical_pvalues(ref, np.array([0.5, 2.0, 2.5, 3.0, 9.0, np.nan]))
    # (1 + #{ref >= s}) / (1 + 4): 0.5 → 5/5; 2 → (1+3)/5 (ties count); 2.5 → 2/5; 3 → 2/5; 9 → 1/5
    np.testing.assert_allclose(p[:5], [1.0, 0.8, 0.4, 0.4, 0.2])
    assert np.isnan(p[5])


# -- POT -----------------------------------------------------------------------------------
def pareto_tail_sample(n=20000, seed=0, shape=0.2, scale=1.0):
    """Scores whose tail above 0 is an exact GPD(shape, scale): P(S > s) = genpareto.sf(s)."""
    return stats.genpareto.rvs(shape, scale=scale, size=n, random_state=seed)


@pytest.mark.parametrize("shape", [0.2, 0.0, -0.2])
def test_pot_recovers_a_known_pareto_quantile(shape):
    """Over 8 samples of 20 000 scores, the 1e-4 quantile (2 scores of a sample exceed it)
    from the tail fitted above the 0.98 quantile: the median estimate within 5 % of the
    true quantile, each within 20 %, and the p-value at the truth ~ 1e-4."""
    risk = 1e-4
    truth = stats.genpareto.isf(risk, shape)
    est, shapes, p_at_truth = [], [], []
    for seed in range(8):
        x = pareto_tail_sample(seed=seed, shape=shape)
        pot = PeaksOverThreshold(level=0.98).fit(x)
        est.append(pot.threshold(risk))
        shapes.append(pot.shape_)
        p_at_truth.append(pot.pvalues(np.array([truth]))[0])
        # strict's pot threshold is the same quantile, q = 1 - risk
        assert validation_threshold(x, method="pot", q=1 - risk, level=0.98) == pytest.approx(est[-1])
    rel = np.array(est) / truth - 1
    assert abs(np.median(rel)) < 0.05 and np.abs(rel).max() < 0.2, rel
    assert np.median(shapes) == pytest.approx(shape, abs=0.03)
    assert np.median(p_at_truth) == pytest.approx(risk, rel=0.3)


def test_pot_by_the_formula_on_its_own_fit():
    """Siffer's z_q = u + sigma/gamma ((q n / N_t)^-gamma - 1), transcribed."""
    x = pareto_tail_sample(n=5000, seed=3)
    pot = PeaksOverThreshold(level=0.95).fit(x)
    u = np.quantile(x, 0.95)
    excess = x[x > u] - u
    gamma, _, sigma = stats.genpareto.fit(excess, floc=0)
    q, n, n_t = 1e-4, len(x), len(excess)
    assert pot.u_ == u and pot.n_u_ == n_t
    assert pot.threshold(q) == pytest.approx(u + sigma / gamma * ((q * n / n_t) ** -gamma - 1), rel=1e-9)
    # below u the p-value is the empirical one; NaN stays NaN
    p = pot.pvalues(np.array([np.median(x), np.nan]))
    assert p[0] == pytest.approx(empirical_pvalues(x, [np.median(x)])[0]) and np.isnan(p[1])


def test_pot_on_a_short_split_starts_the_tail_at_the_11th_largest_score():
    x = pareto_tail_sample(n=412, seed=1)  # MSL C-1's validation length: 8 scores above the 0.98 quantile
    pot = PeaksOverThreshold(level=0.98).fit(x)
    assert pot.n_u_ == 10 and pot.u_ == np.sort(x)[-11]
    assert pot.pvalues(np.array([x.max() * 3]))[0] < 1 / 413  # below the empirical floor


def test_pot_refuses_a_tail_it_cannot_fit():
    with pytest.raises(DataError, match="a fitted tail needs at least 10"):
        PeaksOverThreshold().fit(np.arange(15.0))
    with pytest.raises(DataError, match="a fitted tail needs at least 10"):
        PeaksOverThreshold().fit(np.r_[np.zeros(900), np.ones(100)])  # one distinct high score
    with pytest.raises(ConfigError, match=r"^protocol\.strict\.threshold\.method='foo'; expected one of quantile, max, pot$"):
        validation_threshold(np.arange(100.0), method="foo")
