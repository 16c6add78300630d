"""Thresholds that never look at test labels, on hand-computed numbers."""
import numpy as np
import pytest

from madbench.errors import ConfigError
from madbench.scoring.thresholds import empirical_pvalues, percentile_threshold, validation_threshold


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
