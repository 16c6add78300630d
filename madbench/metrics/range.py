"""Range-AUC and VUS (Paparrizos et al., VLDB 2022), exact against the ``vus`` package.

Definitions (matched to ``vus`` 0.0.6, ``get_metrics(score, labels, metric='all',
version='opt', slidingWindow=W, thre=250)``; ``vus`` is never imported here):

* Thresholds: ``thr_k = sort(score, descending)[linspace(0, T-1, K).astype(int)]`` for
  ``k = 0..K-1`` (K = 250), and ``pred_k = score >= thr_k``. Ties in the score are
  therefore predicted together, and thresholds repeat when ``T < K``.
* Extended label at window ``w``: every truth event ``[s, e]`` adds ``sqrt(1 - d/w)`` at
  distance ``d = 1..w//2`` before ``s`` and after ``e`` (clipped to the series); the
  contributions add and the sum is clipped to 1. Every contribution is >= sqrt(1/2), so
  a step that receives two or more is exactly 1.
* ``R_AUC_*`` (``metricor.RangeAUC``) uses ``w = W``. ``TP = sum(ext * pred)``,
  ``P_new = (P + sum(ext)) / 2`` (P = number of labelled points),
  ``TPR = min(TP / P_new, 1) * existence``, where existence = the share of the
  extended label's non-zero runs that contain a prediction,
  ``FPR = (N_pred - TP) / (T - P_new)``, ``precision = TP / N_pred``.
  ROC: trapezoid over ``(0,0), (FPR_k, TPR_k)..., (1,1)``. PR: trapezoid over
  ``(TPR_k, precision_k)`` starting from ``(0, 1)``.
* ``VUS_*`` (``metricor.RangeAUC_volume_opt``) averages over ``w = 0..W``. Per window it
  differs from ``RangeAUC`` in three conventions, all replicated: the extended label only
  counts where predicted, so ``P_new = P + TP_ext / 2`` varies with the threshold
  (``TP_ext`` = the extension's share of TP); existence is over the *merged windows*
  ``[s - w//2, e + w//2]`` which merge only when they overlap (touching windows stay two
  segments); and the PR area is a right Riemann sum ``sum(dTPR_k * precision_k)``.

Algorithm: one sort gives the thresholds and the number of predicted steps per threshold.
For each step ``p`` in or near an event the first threshold index that predicts it,
``k_p``, is one ``searchsorted``; every count over ``pred_k`` is then a ``bincount``
over ``k_p`` followed by a cumulative sum over k, never a ``T x K`` matrix. The extended label differs from the binary label only in a zone of
width ``W//2`` around the events; per window only that zone (O(#events * W)) and one
running minimum of ``k_p`` per event (for existence) are touched. Total:
O(T log K + W * (|zone| + #events + K)) time and O(T) memory.

Degenerate inputs (``vus`` is wrong or undefined there):

* No truth event: every value is NaN. ``vus`` raises (ZeroDivisionError in RangeAUC,
  IndexError in the VUS path).
* Every step labelled: the ROC values are NaN (``0/0`` false-positive rate), the PR values
  are defined — this is what ``vus`` returns too.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ._common import as_binary, as_scores, runs

__all__ = ["range_auc", "vus", "range_curves"]

_BIG = np.iinfo(np.int64).max // 4
# per-window work (zone + events) above which the VUS sweep shows a progress bar (~1 s)
_PROGRESS_WORK = 3e7


class _Prepared:
    """Everything shared by R-AUC and VUS for one (labels, scores, K)."""

    def __init__(self, labels, scores, thresholds: int, max_half: int):
        y = as_binary(labels)
        s = as_scores(scores, y.size)
        if thresholds < 1:
            raise ValueError(f"thresholds must be >= 1, got {thresholds}")
        T, K = y.size, int(thresholds)
        self.T, self.K = T, K
        self.P = int(y.sum())
        self.starts, self.ends = runs(y)
        G = self.starts.size
        self.G = G
        if G == 0:  # every value is NaN; nothing else is needed
            return

        ascending = np.sort(s)
        thr = ascending[T - 1 - np.linspace(0, T - 1, K).astype(int)]  # non-increasing
        thr_asc = thr[::-1]
        self.n_pred = (T - np.searchsorted(ascending, thr, side="left")).astype(np.float64)

        def first_k(v):
            """Index of the first threshold that predicts a step of score v (K: none)."""
            return (K - np.searchsorted(thr_asc, v, side="right")).astype(np.int64)

        on = np.flatnonzero(y)
        kp_on = first_k(s[on])
        self.tp_in = np.cumsum(np.bincount(kp_on, minlength=K + 1))[:K].astype(np.float64)

        # zone: unlabelled steps within max_half of an event
        h = int(max_half)
        cover = np.zeros(T + 1, dtype=np.int64)
        np.add.at(cover, np.maximum(self.starts - h, 0), 1)
        np.add.at(cover, self.starts, -1)
        np.add.at(cover, self.ends + 1, 1)
        np.add.at(cover, np.minimum(self.ends + h + 1, T), -1)
        z = np.flatnonzero((np.cumsum(cover[:T]) > 0) & (y == 0))
        self.kz = first_k(s[z])
        li = np.searchsorted(self.ends, z, side="left") - 1  # last event ending before z
        ri = np.searchsorted(self.starts, z, side="right")   # first event starting after z
        ends_p = np.concatenate([self.ends, [-_BIG]])
        starts_p = np.concatenate([self.starts, [_BIG, _BIG]])
        self.dL = np.where(li >= 0, z - ends_p[li], _BIG)
        self.dL2 = np.where(li >= 1, z - ends_p[li - 1], _BIG)
        self.dR = np.where(ri < G, starts_p[ri] - z, _BIG)
        self.dR2 = np.where(ri + 1 < G, starts_p[ri + 1] - z, _BIG)

        # existence: min k_p over each event's window [s - h', e + h'] for h' = 0..h
        # (only steps in or near events are ever looked up; the rest stay "never predicted")
        kp_pad = np.full(T + 2 * h + 1, K, dtype=np.int64)
        kp_pad[on + h] = kp_on
        kp_pad[z + h] = self.kz
        cuts = np.column_stack([self.starts, self.ends + 1]).ravel() + h
        self._kmin0 = np.minimum.reduceat(kp_pad, cuts)[::2]
        self._kp_pad, self._h = kp_pad, h
        self.gaps = self.starts[1:] - self.ends[:-1]

    def ext(self, w: int) -> np.ndarray:
        """Extended-label values on the zone at window ``w`` (exactly as ``vus`` sums them)."""
        w2 = w // 2
        if w2 == 0:
            return np.zeros(self.kz.size)
        cl, cr = self.dL <= w2, self.dR <= w2
        cnt = cl.astype(np.int8) + cr + (self.dL2 <= w2) + (self.dR2 <= w2)
        d = np.where(cl, self.dL, self.dR)
        one = cnt == 1
        val = np.where(cnt >= 2, 1.0, 0.0)
        val[one] = np.sqrt(1 - d[one] / w)
        return val

    def tp_ext(self, val: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(self.kz, weights=val, minlength=self.K + 1))[:self.K]

    def existence(self, kmin: np.ndarray, merge_gap: int) -> np.ndarray:
        """Share of segments with a prediction at each k; events merge when gap <= merge_gap."""
        first = np.concatenate([[True], self.gaps > merge_gap])
        segmin = np.minimum.reduceat(kmin, np.flatnonzero(first))
        hits = np.cumsum(np.bincount(segmin, minlength=self.K + 1))[:self.K]
        return hits / segmin.size

    def event_kmins(self):
        """Yield (h', min k_p over [s - h', e + h'] per event) for h' = 0..h."""
        m = self._kmin0.copy()
        yield 0, m
        for hh in range(1, self._h + 1):
            m = np.minimum(m, np.minimum(self._kp_pad[self.starts - hh + self._h],
                                         self._kp_pad[self.ends + hh + self._h]))
            yield hh, m


def _roc_pr(tpr, fpr, prec, trapezoid_pr: bool) -> tuple[float, float]:
    tf_t = np.concatenate([[0.0], tpr, [1.0]])
    tf_f = np.concatenate([[0.0], fpr, [1.0]])
    roc = float(np.dot(tf_f[1:] - tf_f[:-1], (tf_t[1:] + tf_t[:-1]) / 2))
    width = tf_t[1:-1] - tf_t[:-2]
    if trapezoid_pr:
        p = np.concatenate([[1.0], prec])
        pr = float(np.dot(width, (p[1:] + p[:-1]) / 2))
    else:
        pr = float(np.dot(width, prec))
    return roc, pr


def range_curves(labels, scores, window: int, thresholds: int = 250) -> dict:
    """The R-AUC curve points ``(tpr, fpr, precision)`` at the K thresholds, for plots."""
    prep = _Prepared(labels, scores, thresholds, max(int(window), 0) // 2)
    return _range_auc(prep, int(window), curves=True)


def _range_auc(prep: _Prepared, window: int, curves: bool = False) -> dict:
    nan = float("nan")
    if prep.G == 0:
        return {"r_auc_roc": nan, "r_auc_pr": nan}
    val = prep.ext(window)
    tp_ext = prep.tp_ext(val)
    tp = prep.tp_in + tp_ext
    p_new = (prep.P + (prep.P + val.sum())) / 2
    kmin = None
    for hh, m in prep.event_kmins():
        if hh == window // 2:
            kmin = m
    existence = prep.existence(kmin, 2 * (window // 2) + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.minimum(tp / p_new, 1) * existence
        fpr = (prep.n_pred - tp) / (prep.T - p_new)
        prec = tp / prep.n_pred
    roc, pr = _roc_pr(tpr, fpr, prec, trapezoid_pr=True)
    out = {"r_auc_roc": roc, "r_auc_pr": pr}
    if curves:
        out.update(tpr=tpr, fpr=fpr, precision=prec)
    return out


def _vus(prep: _Prepared, window: int, progress: bool | None = None) -> dict:
    nan = float("nan")
    if prep.G == 0:
        return {"vus_roc": nan, "vus_pr": nan}
    rocs, prs = [], []
    work = (window + 1) * (prep.kz.size + prep.G + prep.K)
    disable = (work < _PROGRESS_WORK) if progress is None else not progress
    gen = prep.event_kmins()
    hh, m = next(gen)
    for w in tqdm(range(window + 1), desc="VUS windows", disable=disable, leave=False):
        w2 = w // 2
        while hh < w2:
            hh, m = next(gen)
        val = prep.ext(w)
        tp_ext = prep.tp_ext(val)
        tp = prep.tp_in + tp_ext
        p_new = (prep.P + (prep.P + tp_ext)) / 2
        existence = prep.existence(m, 2 * w2)
        with np.errstate(divide="ignore", invalid="ignore"):
            tpr = np.minimum(tp / p_new, 1) * existence
            fpr = (prep.n_pred - tp) / (prep.T - p_new)
            prec = tp / prep.n_pred
        roc, pr = _roc_pr(tpr, fpr, prec, trapezoid_pr=False)
        rocs.append(roc)
        prs.append(pr)
    return {"vus_roc": float(sum(rocs) / len(rocs)), "vus_pr": float(sum(prs) / len(prs))}


def _check_window(window) -> int:
    w = int(window)
    if w != window or w < 0:
        raise ValueError(f"window must be a non-negative integer, got {window!r}")
    return w


def range_auc(labels, scores, window: int, thresholds: int = 250) -> dict:
    """Range-AUC-ROC and -PR (``vus`` ``R_AUC_ROC`` / ``R_AUC_PR``) with buffer ``window``.

    Returns ``{"r_auc_roc", "r_auc_pr"}``; NaN when there is no truth event.
    """
    w = _check_window(window)
    return _range_auc(_Prepared(labels, scores, thresholds, w // 2), w)


def vus(labels, scores, window: int, thresholds: int = 250, progress: bool | None = None) -> dict:
    """VUS-ROC and VUS-PR (``vus`` ``VUS_ROC`` / ``VUS_PR``, version ``opt``), windows 0..window.

    Returns ``{"vus_roc", "vus_pr"}``; NaN when there is no truth event. ``progress``:
    None shows a tqdm bar only for sweeps expected to take more than about a second.
    """
    w = _check_window(window)
    return _vus(_Prepared(labels, scores, thresholds, w // 2), w, progress)


def range_and_vus(labels, scores, window: int, thresholds: int = 250) -> dict:
    """Both of the above from one sort (what ``threshold_free`` uses)."""
    w = _check_window(window)
    prep = _Prepared(labels, scores, thresholds, w // 2)
    out = _range_auc(prep, w)
    out.update(_vus(prep, w))
    return out
