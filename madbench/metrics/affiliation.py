"""Affiliation precision / recall (Huet, Navarro & Rossi, KDD 2022), vectorised.

Matches ``vus.affiliation.metrics.pr_from_events`` (the reference implementation by the
paper's authors, shipped inside ``vus``) on the same events; ``vus`` is never imported here.

Events: a binary vector becomes half-open events, step ``i`` being ``[i, i + 1)``, so a run
``[s, e]`` is the event ``(s, e + 1)`` (``convert_vector_to_events``), and the series
range is ``Trange = (0, T)``. ``vus.metrics.get_metrics(score, labels, metric='all')``
computes its ``Affiliation_Precision/Recall`` on ``score > 0.5`` — on a 0/1 prediction
that is the prediction itself, which is what :func:`affiliation` takes.

Definition (the formulas are the reference's closed forms, in the same operation order):

* Each truth event ``J_j`` owns an affiliation zone ``E_j``: from the midpoint between the
  previous event's stop and its start to the midpoint between its stop and the next
  event's start (``Trange`` ends for the first and last zones).
* Individual precision of ``J_j``: the mean over the prediction inside ``E_j`` of the
  survival function of the distance to ``J_j`` (uniform-in-``E_j`` null); undefined when
  no prediction falls in ``E_j``. Precision = the mean of the defined ones.
* Individual recall of ``J_j``: the mean over ``J_j`` of the survival function of the
  distance to the closest predicted piece inside ``E_j``; 0 when ``E_j`` has no
  prediction. Recall = the mean over truth events.

Each predicted event meets a contiguous run of zones, so there are at most
``#pred + #truth`` (prediction piece, zone) pairs; every closed form is evaluated on all
pairs at once and summed per zone with ``bincount``: O(T + #pred + #truth) instead of the
reference's O(#pred * #truth) Python loops.

Degenerate cases (documented choices):

* No truth event: all three values are NaN (the reference raises ``ValueError``).
* No predicted event: precision NaN (undefined, as the reference), recall 0 (as the
  reference), F1 0 (recall is 0).
* F1 = 2PR/(P+R); 0 when P + R = 0 (the reference's ``f1_func`` would divide by zero).
"""
from __future__ import annotations

import numpy as np

from ._common import binary_pair, runs

__all__ = ["affiliation", "affiliation_from_events"]


def _split(lo, hi, ok, c):
    """Cut intervals (lo, hi) (present where ``ok``) at c: the reference's ``cut_J_based_on_mean_func``."""
    b_ok = ok & (c > lo)
    a_ok = ok & (c < hi)
    b_lo, b_hi = lo, np.minimum(hi, c)
    a_lo, a_hi = np.maximum(lo, c), hi
    return (b_lo, b_hi, b_ok), (a_lo, a_hi, a_ok)


def _z(x, ok):
    """Zero where the piece is absent, so that every closed form below gives exactly 0."""
    return np.where(ok, x, 0.0)


def _precision_outside(i_min, i_max, j_min, j_max, e_min, e_max):
    """``integral_mini_interval_Pprecision_CDFmethod`` for pieces I outside J."""
    d_min = np.maximum(i_min - j_max, j_min - i_max)
    d_max = np.maximum(i_max - j_max, j_min - i_min)
    m = np.minimum(j_min - e_min, e_max - j_max)
    A = np.minimum(d_max, m) ** 2 - np.minimum(d_min, m) ** 2
    B = np.maximum(d_max, m) - np.maximum(d_min, m)
    C = (1 / 2) * A + m * B
    linear = (1 / 2) * (d_max ** 2 - d_min ** 2)
    remaining = (j_max - j_min) * (i_max - i_min)
    return (i_max - i_min) - (1 / (e_max - e_min)) * (C + linear + remaining)


def _precision_integral(a, b, j0, j1, e0, e1):
    """``integral_interval_probaCDF_precision``: integral over I = (a, b) of Fbar(d(x, J))."""
    lb_hi = np.minimum(b, j0)
    left_ok = a < lb_hi
    ra_lo = np.maximum(a, j1)
    right_ok = ra_lo < b
    mid = np.minimum(b, j1) - np.maximum(a, j0)
    d_left = np.where(left_ok, _precision_outside(a, np.where(left_ok, lb_hi, a), j0, j1, e0, e1), 0.0)
    d_mid = np.where(mid > 0, mid, 0.0)
    d_right = np.where(right_ok, _precision_outside(np.where(right_ok, ra_lo, b), b, j0, j1, e0, e1), 0.0)
    return d_left + d_mid + d_right


def _recall_outside(i0, i1, q0, q1, ok, e_min, e_max):
    """``integral_mini_interval_Precall_CDFmethod`` for pieces Q of J outside I = (i0, i1)."""
    before = q1 <= i0  # Q lies before I: the pivot is I's start, else its stop
    pivot = np.where(before, i0, i1)
    live = ok & (pivot > e_min) & (pivot < e_max)
    e_mean = (e_min + e_max) / 2
    (qb_lo, qb_hi, qb_ok), (qa_lo, qa_hi, qa_ok) = _split(q0, q1, live, e_mean)
    iemin_mean = (e_min + pivot) / 2
    (bb_lo, bb_hi, bb_ok), (ba_lo, ba_hi, ba_ok) = _split(qb_lo, qb_hi, qb_ok, iemin_mean)
    iemax_mean = (e_max + pivot) / 2
    (ab_lo, ab_hi, ab_ok), (aa_lo, aa_hi, aa_ok) = _split(qa_lo, qa_hi, qa_ok, iemax_mean)
    bb_lo, bb_hi = _z(bb_lo, bb_ok), _z(bb_hi, bb_ok)
    ba_lo, ba_hi = _z(ba_lo, ba_ok), _z(ba_hi, ba_ok)
    ab_lo, ab_hi = _z(ab_lo, ab_ok), _z(ab_hi, ab_ok)
    aa_lo, aa_hi = _z(aa_lo, aa_ok), _z(aa_hi, aa_ok)
    p = pivot
    # pivot after Q (Q before I)
    s_after = ((((p - e_min) * (bb_hi - bb_lo))
                + (2 * p * (ba_hi - ba_lo) - (ba_hi ** 2 - ba_lo ** 2)))
               + (2 * p * (ab_hi - ab_lo) - (ab_hi ** 2 - ab_lo ** 2))) \
        + ((e_max + p) * (aa_hi - aa_lo) - (aa_hi ** 2 - aa_lo ** 2))
    # pivot before Q (Q after I)
    s_before = ((((bb_hi ** 2 - bb_lo ** 2) - (e_min + p) * (bb_hi - bb_lo))
                 + ((ba_hi ** 2 - ba_lo ** 2) - 2 * p * (ba_hi - ba_lo)))
                + ((ab_hi ** 2 - ab_lo ** 2) - 2 * p * (ab_hi - ab_lo))) \
        + ((e_max - p) * (aa_hi - aa_lo))
    s = np.where(p >= q1, s_after, s_before)
    out = (q1 - q0) - (1 / (e_max - e_min)) * s
    return np.where(live, out, 0.0)


def _recall_integral(i0, i1, q0, q1, ok, e0, e1):
    """``integral_interval_probaCDF_recall``: integral over Q (a piece of J) of Fbar(d(y, I))."""
    lb_hi = np.minimum(q1, i0)
    left_ok = ok & (q0 < lb_hi)
    ra_lo = np.maximum(q0, i1)
    right_ok = ok & (ra_lo < q1)
    mid = np.minimum(q1, i1) - np.maximum(q0, i0)
    d_left = _recall_outside(i0, i1, q0, np.where(left_ok, lb_hi, q0), left_ok, e0, e1)
    d_mid = np.where(ok & (mid > 0), mid, 0.0)
    d_right = _recall_outside(i0, i1, np.where(right_ok, ra_lo, q1), q1, right_ok, e0, e1)
    return d_left + d_mid + d_right


def _check_events(s, e, what):
    if s.size and (np.any(e <= s) or np.any(s[1:] <= e[:-1])):
        raise ValueError(f"{what} events must be non-empty, ordered and disjoint (start < stop < next start)")


def _from_arrays(ps, pe, gs, ge, t0, t1) -> dict:
    nan = float("nan")
    G = gs.size
    if G == 0:
        return {"aff_precision": nan, "aff_recall": nan, "aff_f1": nan}
    if ps.size == 0:
        return {"aff_precision": nan, "aff_recall": 0.0, "aff_f1": 0.0}
    if min(ps[0], gs[0]) < t0 or max(pe[-1], ge[-1]) > t1:
        raise ValueError("the range must include all the events")

    # affiliation zones of the truth events
    zl = np.empty(G)
    zr = np.empty(G)
    zl[0] = ((2 * t0 - gs[0]) + gs[0]) / 2
    zr[-1] = (ge[-1] + (2 * t1 - ge[-1])) / 2
    mids = (ge[:-1] + gs[1:]) / 2
    zl[1:] = mids
    zr[:-1] = mids

    # (prediction, zone) pairs with a non-empty intersection, ordered by zone then prediction
    jmin = np.searchsorted(zr, ps, side="right")
    jmax = np.searchsorted(zl, pe, side="left") - 1
    cnt = np.maximum(jmax - jmin + 1, 0)
    k = np.repeat(np.arange(ps.size), cnt)
    offs = np.cumsum(cnt) - cnt
    j = jmin[k] + (np.arange(k.size) - offs[k])
    a = np.maximum(ps[k], zl[j])
    b = np.minimum(pe[k], zr[j])
    keep = a < b
    j, a, b = j[keep], a[keep], b[keep]
    j0, j1, e0, e1 = gs[j].astype(float), ge[j].astype(float), zl[j], zr[j]

    # precision
    num = np.bincount(j, weights=_precision_integral(a, b, j0, j1, e0, e1), minlength=G)
    den = np.bincount(j, weights=b - a, minlength=G)
    has = np.bincount(j, minlength=G) > 0
    p_ind = num[has] / den[has]
    precision = sum(p_ind.tolist()) / p_ind.size

    # recall: J cut into the zones of the pieces inside its zone
    first = np.concatenate([[True], j[1:] != j[:-1]])
    last = np.concatenate([j[1:] != j[:-1], [True]])
    sl = np.empty(a.size)
    sr = np.empty(a.size)
    sl[1:] = (b[:-1] + a[1:]) / 2
    sr[:-1] = sl[1:]
    sl[first] = ((2 * e0[first] - a[first]) + a[first]) / 2
    sr[last] = (b[last] + (2 * e1[last] - b[last])) / 2
    q0 = np.maximum(j0, sl)
    q1 = np.minimum(j1, sr)
    ok = q0 < q1
    rec = _recall_integral(a, b, np.where(ok, q0, 0.0), np.where(ok, q1, 0.0), ok, e0, e1)
    r_num = np.bincount(j, weights=rec, minlength=G)
    r_ind = np.where(has, r_num / (ge - gs), 0.0)
    recall = sum(r_ind.tolist()) / G

    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"aff_precision": float(precision), "aff_recall": float(recall), "aff_f1": float(f1)}


def affiliation_from_events(events_pred, events_gt, trange) -> dict:
    """Affiliation on half-open events ``[(start, stop), ...]`` inside ``trange = (t0, t1)``.

    Same inputs as ``vus.affiliation.metrics.pr_from_events``; returns
    ``{"aff_precision", "aff_recall", "aff_f1"}``.
    """
    ev_p = np.asarray(events_pred, dtype=float).reshape(-1, 2)
    ev_g = np.asarray(events_gt, dtype=float).reshape(-1, 2)
    _check_events(ev_p[:, 0], ev_p[:, 1], "predicted")
    _check_events(ev_g[:, 0], ev_g[:, 1], "truth")
    return _from_arrays(ev_p[:, 0], ev_p[:, 1], ev_g[:, 0], ev_g[:, 1], float(trange[0]), float(trange[1]))


def affiliation(labels, preds) -> dict:
    """Affiliation precision, recall and F1 of a 0/1 prediction against 0/1 labels.

    Returns ``{"aff_precision", "aff_recall", "aff_f1"}``; see the module docstring for the
    definition and for the NaN / 0 conventions.
    """
    y, p = binary_pair(labels, preds)
    gs, ge = runs(y)
    ps, pe = runs(p)
    return _from_arrays(ps.astype(float), pe + 1.0, gs.astype(float), ge + 1.0, 0.0, float(y.size))
