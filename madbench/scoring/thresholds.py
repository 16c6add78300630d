"""Thresholds that never look at test labels (used by the strict, m2ad and tslib
protocols).

Peaks over threshold (POT; Siffer et al., "Anomaly Detection in Streams with Extreme Value
Theory", KDD 2017): the scores above a high empirical quantile ``u`` (the ``level``
quantile, Siffer's t) of null scores are fitted with a generalized Pareto distribution
(``scipy.stats.genpareto``, maximum likelihood, location 0); when fewer than 10 scores
exceed that quantile (a short validation split), u is lowered to the 11th largest. For s > u the tail is then
``P(S > s) = (n_u / n) * GPD.sf(s - u)``, and the threshold at risk r is
``u + sigma / gamma * ((r n / n_u)^(-gamma) - 1)`` (``u - sigma ln(r n / n_u)`` for
gamma = 0). Unlike an empirical quantile or p-value it reaches beyond the largest null
score: an empirical p-value ``(1 + #>=) / (1 + n)`` is never below ``1 / (1 + n)``.
"""
from __future__ import annotations

import math

import numpy as np

from madbench.errors import ConfigError, DataError

METHODS = ("quantile", "max", "pot")
#: keys of ``protocol.<name>.threshold``
THRESHOLD_KEYS = ("method", "q", "factor", "level")
#: the fewest excesses over ``u`` a tail is fitted to
MIN_EXCESSES = 10


class TailFitError(DataError):
    """The null scores have too few distinct values above the tail's start to fit one."""


def _ratio(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{key}={value!r}; expected a ratio in (0, 1)")
    return float(value)


def check_threshold(params: dict, prefix: str = "protocol.strict.threshold") -> dict:
    """``protocol.<name>.threshold`` with defaults filled in; an unknown key or a bad value
    is a ConfigError naming it."""
    unknown = [k for k in params if k not in THRESHOLD_KEYS]
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; expected one of {', '.join(THRESHOLD_KEYS)}")
    p = {"method": "quantile", "q": 0.99, "factor": 1.0, "level": 0.98} | dict(params)
    if p["method"] not in METHODS:
        raise ConfigError(f"{prefix}.method={p['method']!r}; expected one of {', '.join(METHODS)}")
    p["q"], p["level"] = _ratio(f"{prefix}.q", p["q"]), _ratio(f"{prefix}.level", p["level"])
    f = p["factor"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not (math.isfinite(f) and f > 0):
        raise ConfigError(f"{prefix}.factor={f!r}; expected a number > 0")
    return p


def _finite(values, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ConfigError(f"{what}: no finite validation scores to set a threshold from "
                        "(is trainer.val_ratio 0, or the train series too short?)")
    return v


def validation_threshold(val_scores: np.ndarray, method: str = "quantile", q: float = 0.99,
                         factor: float = 1.0, level: float = 0.98) -> float:
    """``quantile``: the q-quantile of the validation scores; ``max``: max × factor;
    ``pot``: the q-quantile of the POT tail fitted to the scores above their ``level``
    quantile (it can lie beyond the largest validation score)."""
    p = check_threshold({"method": method, "q": q, "factor": factor, "level": level})
    v = _finite(val_scores, "protocol.threshold")
    if p["method"] == "quantile":
        return float(np.quantile(v, p["q"]))
    if p["method"] == "max":
        return float(v.max() * p["factor"])
    return PeaksOverThreshold(p["level"]).fit(v).threshold(1.0 - p["q"])


class PeaksOverThreshold:
    """A generalized Pareto tail fitted to the null scores above their ``level`` quantile
    (module doc). ``fit`` then ``pvalues`` / ``threshold``."""

    def __init__(self, level: float = 0.98, what: str = "POT"):
        self.level = _ratio(f"{what}.level", level)
        self.what = what

    def fit(self, reference) -> "PeaksOverThreshold":
        ref = np.sort(_finite(reference, self.what))
        u = float(np.quantile(ref, self.level))
        if np.sum(ref > u) < MIN_EXCESSES and len(ref) >= 2 * MIN_EXCESSES:
            u = float(ref[-MIN_EXCESSES - 1])  # a short validation split: the top 10 scores make the tail
        excess = ref[ref > u] - u
        if len(excess) < MIN_EXCESSES or np.ptp(excess) == 0:
            raise TailFitError(
                f"{self.what}: {len(ref)} finite validation scores, {len(excess)} distinct ones above the tail's "
                f"start; a fitted tail needs at least {MIN_EXCESSES} (and {2 * MIN_EXCESSES} scores): use more "
                "validation data (trainer.val_ratio)")
        from scipy.stats import genpareto  # here: scipy.stats costs every CLI about 1 s to import

        shape, _, scale = genpareto.fit(excess, floc=0.0)
        self.reference_, self.u_, self.n_, self.n_u_ = ref, u, len(ref), len(excess)
        self.shape_, self.scale_ = float(shape), float(scale)
        return self

    def pvalues(self, scores) -> np.ndarray:
        """P(S >= s) under the null: the GPD tail above ``u``, the empirical share at or
        below it. NaN stays NaN."""
        s = np.asarray(scores, dtype=np.float64)
        out = empirical_pvalues(self.reference_, s)
        tail = np.isfinite(s) & (s > self.u_)
        from scipy.stats import genpareto

        out[tail] = self.n_u_ / self.n_ * genpareto.sf(s[tail] - self.u_, self.shape_, scale=self.scale_)
        return out

    def threshold(self, risk: float) -> float:
        """The score exceeded with probability ``risk`` under the null (Siffer's z_q)."""
        ratio = risk * self.n_ / self.n_u_
        if ratio >= 1.0:  # the level quantile is already rarer than asked: no tail needed
            return float(np.quantile(self.reference_, 1.0 - risk))
        if abs(self.shape_) < 1e-12:
            return self.u_ - self.scale_ * math.log(ratio)
        return self.u_ + self.scale_ / self.shape_ * (ratio ** -self.shape_ - 1.0)


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
