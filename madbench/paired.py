"""Paired comparisons of two arms (e.g. ``head=none`` vs ``head=madcluster``) on the same
entities, and of several arms over several backbones, as in the benchmark literature
(Demšar, JMLR 2006).

- ``paired_gain``: per entity, the metric of arm B minus arm A (each averaged over seeds
  first); the mean gain, a bootstrap 95% CI of it (``scipy.stats.bootstrap``, percentile,
  seeded) and the two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``; zero
  differences dropped, as Wilcoxon's original test; p = 1 when every difference is 0).
- ``friedman``: the mean rank of each arm over blocks (backbones), rank 1 = best, ties
  averaged, the Friedman χ² test (``scipy.stats.friedmanchisquare``), and the Nemenyi
  critical difference CD = q_α·√(k(k+1)/(6N)), with q_α the studentized range quantile
  over √2 (``scipy.stats.studentized_range``).
- ``cd_diagram``: the critical-difference diagram (matplotlib PNG).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Gain:
    n: int                  # entities paired
    mean_a: float
    mean_b: float
    mean_gain: float        # mean over entities of (b - a)
    ci_low: float
    ci_high: float
    wilcoxon_p: float

    @property
    def significant(self) -> bool:
        """The 95% CI excludes 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def verdict(self) -> str:
        if self.n == 0:
            return "no paired entities"
        if not self.significant:
            return "CI covers 0"
        return "gain" if self.mean_gain > 0 else "loss"


def paired_gain(a: np.ndarray, b: np.ndarray, n_resamples: int = 9999, seed: int = 0) -> Gain:
    """Arm b against arm a on the same entities (aligned arrays, one value per entity)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = b - a
    n = len(d)
    if n == 0:
        return Gain(0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)
    if n == 1 or np.all(d == d[0]):  # no spread: the bootstrap interval is the point itself
        lo = hi = float(d.mean())
    else:
        res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=0.95, method="percentile",
                              random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.all(d == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return Gain(n, float(a.mean()), float(b.mean()), float(d.mean()), lo, hi, p)


@dataclass
class Friedman:
    arms: list[str]
    mean_ranks: np.ndarray   # per arm, rank 1 = best
    statistic: float
    p: float
    cd: float                # Nemenyi critical difference at alpha
    n_blocks: int


def mean_ranks(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """scores [blocks, arms] → the mean over blocks of each arm's rank (1 = best, ties averaged)."""
    s = np.asarray(scores, dtype=np.float64)
    r = stats.rankdata(-s if higher_is_better else s, axis=1)
    return r.mean(axis=0)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks for k arms over n blocks (Demšar 2006, eq. 5)."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6.0 * n)))


def friedman(scores: np.ndarray, arms: list[str], alpha: float = 0.05, higher_is_better: bool = True) -> Friedman:
    """scores [blocks, arms] (e.g. backbones × arms, each a mean over entities and seeds)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s).all(axis=1)]
    n, k = s.shape
    ranks = mean_ranks(s, higher_is_better) if n else np.full(k, np.nan)
    if n >= 2 and k >= 3:
        res = stats.friedmanchisquare(*[s[:, j] for j in range(k)])
        stat, p = float(res.statistic), float(res.pvalue)
    elif n >= 2 and k == 2:  # Friedman needs 3 arms; with 2 it is the sign test's χ² form
        d = np.sign(s[:, 1] - s[:, 0])
        d = d[d != 0]
        p = float(stats.binomtest(int((d > 0).sum()), len(d)).pvalue) if len(d) else 1.0
        stat = float("nan")
    else:
        stat, p = float("nan"), float("nan")
    return Friedman(list(arms), ranks, stat, p, nemenyi_cd(k, n, alpha) if n else float("nan"), n)


def cd_diagram(result: Friedman, path, title: str = "") -> None:
    """The critical-difference diagram: arms on a rank axis (1 = best, at the left), with
    bars joining arms whose mean ranks differ by less than the critical difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.arms)
    order = np.argsort(result.mean_ranks)
    ranks = result.mean_ranks[order]
    names = [result.arms[i] for i in order]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * k))
    ax.set_xlim(1, max(k, 2))
    ax.set_ylim(0, k + 2)
    ax.hlines(k + 1, 1, max(k, 2), color="black")
    for t in range(1, max(k, 2) + 1):
        ax.vlines(t, k + 1, k + 1.15, color="black")
        ax.text(t, k + 1.3, str(t), ha="center", va="bottom", fontsize=8)
    for i, (r, name) in enumerate(zip(ranks, names)):
        y = k - i
        ax.vlines(r, y, k + 1, color="0.3", linewidth=0.8)
        left = i < (k + 1) / 2
        ax.hlines(y, r, 1 if left else max(k, 2), color="0.3", linewidth=0.8)
        ax.text(1 - 0.05 if left else max(k, 2) + 0.05, y, f"{name} ({r:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    # cliques: maximal runs of arms within CD of each other
    y = 0.4
    if np.isfinite(result.cd):
        for i in range(k):
            j = i
            while j + 1 < k and ranks[j + 1] - ranks[i] < result.cd:
                j += 1
            if j > i and not any(ranks[j] - ranks[ii] < result.cd and ii < i for ii in range(i)):
                ax.hlines(y, ranks[i] - 0.03, ranks[j] + 0.03, color="black", linewidth=3)
                y += 0.3
        ax.hlines(k + 1.8, 1, 1 + result.cd, color="black", linewidth=1.5)
        ax.text(1 + result.cd / 2, k + 1.85, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axis("off")
    ax.set_title(title + (f"  Friedman p = {result.p:.3g}, N = {result.n_blocks}" if result.p == result.p else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
