"""Thresholds that never look at test labels (used by the strict and tslib protocols)."""
from __future__ import annotations

import numpy as np

from madbench.errors import ConfigError

METHODS = ("quantile", "max")


def validation_threshold(val_scores: np.ndarray, method: str = "quantile", q: float = 0.99,
                         factor: float = 1.0) -> float:
    """``quantile``: the q-quantile of the validation scores; ``max``: max × factor."""
    v = np.asarray(val_scores, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ConfigError("protocol.threshold: no finite validation scores to set a threshold from "
                          "(is trainer.val_ratio 0, or the train series too short?)")
    if method == "quantile":
        if not 0.0 < q < 1.0:
            raise ConfigError(f"protocol.threshold.q={q}; expected a ratio in (0, 1)")
        return float(np.quantile(v, q))
    if method == "max":
        return float(v.max() * factor)
    raise ConfigError(f"protocol.threshold.method={method!r}; expected one of {list(METHODS)}")


def percentile_threshold(scores: np.ndarray, anomaly_ratio: float) -> float:
    """TSLib: the (100 − anomaly_ratio) percentile of the given scores (ratio in percent)."""
    if not 0.0 < anomaly_ratio < 100.0:
        raise ConfigError(f"dataset.anomaly_ratio={anomaly_ratio}; expected a percentage in (0, 100)")
    s = np.asarray(scores, dtype=np.float64)
    return float(np.percentile(s[np.isfinite(s)], 100.0 - anomaly_ratio))


def empirical_pvalues(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """p(s) = (1 + #{reference >= s}) / (1 + n): a calibrated p-value for any raw score,
    from null (validation) scores. NaN stays NaN."""
    ref = np.sort(np.asarray(reference, dtype=np.float64)[np.isfinite(reference)])
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    ge = len(ref) - np.searchsorted(ref, s[ok], side="left")
    out[ok] = (1.0 + ge) / (1.0 + len(ref))
    return out
