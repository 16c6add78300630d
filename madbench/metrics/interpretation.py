"""Which sensors drove an anomaly: a per-step sensor ranking scored against ground truth.

The input is an attribution ``A[t, s]`` (higher = sensor ``s`` contributed more at step
``t``; ``madbench.attribution`` builds it from residuals, M2AD p-values or gradients) and
ground-truth *events*: inclusive spans ``(start, end)``, each with its set ``G`` of
sensors (SMD's ``interpretation_label``).

At one step, with ``G`` the truth set (``|G| >= 1``) and the sensors ranked by ``A``:

- ``HitRate@P%`` (Su et al., OmniAnomaly, KDD 2019): of the top ``k = floor(P/100 · |G|)``
  ranked sensors, the number in ``G``, divided by ``|G|``. ``k`` is capped at the number
  of sensors. At P = 100 it is the precision of the top |G|; at P = 150 the ranking gets
  half as many candidates again (still divided by |G|, so it stays <= 1).
- ``NDCG@P%`` (binary relevance, ``k`` as above): ``DCG@k / IDCG@k`` with
  ``DCG@k = sum_{i=1..k} rel_i / log2(i + 1)`` and ``IDCG@k`` the same for the ideal
  ranking (``sum_{i=1..min(k, |G|)} 1 / log2(i + 1)``). This is ``sklearn.metrics.
  ndcg_score(k=k)`` on a ranking without ties.

**Ties** are broken by sensor index: of two sensors with equal attribution the one with
the lower index (its position in the entity's ``sensors``) ranks first. NaN attribution
ranks last; a step whose attribution is NaN for every sensor (an unscored step) is left
out. (sklearn's ``ndcg_score`` averages over tied orderings instead; TranAD's
``hit_att`` takes ``round`` instead of ``floor`` for ``k``, which differs at P = 150 for
odd ``|G|``.)

**Which steps**: the steps inside an event's span that carry a point label of 1
(``span ∩ labels``; on SMD 4 of 268 spans are not exactly a run of ``test_label``, and
machine-2-3's ``7910-8010`` covers 9 unlabelled rows, which are left out). Where spans
overlap (2 pairs on machine-3-3) a step's ``G`` is the union of the sets of the spans
that cover it.

**Aggregation**: ``hit_100``, ``hit_150``, ``ndcg_100`` are means over all such steps
(pooled over entities for an ``ALL`` row); the ``*_event`` columns first average within
each event, then over events. An event whose sensor set is empty, or that has no
labelled scored step, is skipped and counted in ``interp_events_skipped``.

These metrics read the test labels and the ground-truth sensors by definition: they
describe a ranking, never choose a threshold, model or epoch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["INTERPRETATION_COLUMNS", "rank_sensors", "hit_rate", "ndcg", "step_metrics", "event_parts",
           "summarise"]

#: result columns (madbench.rundir appends them to the result schema)
INTERPRETATION_COLUMNS = ["attribution", "hit_100", "hit_150", "ndcg_100", "hit_100_event", "hit_150_event",
                          "ndcg_100_event", "interp_steps", "interp_events", "interp_events_skipped"]
#: (column, P, kind)
_STEP_METRICS = (("hit_100", 100, "hit"), ("hit_150", 150, "hit"), ("ndcg_100", 100, "ndcg"))


def _as_2d(scores, truth) -> tuple[np.ndarray, np.ndarray, bool]:
    a = np.asarray(scores, dtype=np.float64)
    g = np.asarray(truth)
    single = a.ndim == 1
    a, g = np.atleast_2d(a), np.atleast_2d(g)
    if g.dtype != bool:
        if g.size and not np.all((g == 0) | (g == 1)):
            raise ValueError("truth must be a boolean (or 0/1) sensor mask")
        g = g.astype(bool)
    if a.shape != g.shape:
        raise ValueError(f"scores {a.shape} and truth {g.shape} must have the same shape [steps, sensors]")
    return a, g, single


def rank_sensors(scores) -> np.ndarray:
    """Sensor indices from most to least attributed (per row for ``[N, S]``): descending
    score, ties by lower index, NaN last."""
    a = np.asarray(scores, dtype=np.float64)
    # a stable sort of -a keeps equal scores in index order; NaN sorts last
    return np.argsort(-a, axis=-1, kind="stable")


def _cutoff(n_true: np.ndarray, p: float, n_sensors: int) -> np.ndarray:
    # floor(P/100 · |G|) in integer arithmetic (P given in percent), so 150 % of 3 is 4, not 4.4999
    k = (n_true * int(round(p * 100))) // 10000
    return np.minimum(k, n_sensors)


def _ranked_relevance(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    order = rank_sensors(a)
    return np.take_along_axis(g, order, axis=1)


def hit_rate(scores, truth, p: float = 100):
    """HitRate@P% of one ranking (``scores`` [S], ``truth`` bool [S]) or per row of
    ``[N, S]``; NaN where the truth set is empty."""
    a, g, single = _as_2d(scores, truth)
    n_true = g.sum(1)
    k = _cutoff(n_true, p, a.shape[1])
    rel = _ranked_relevance(a, g)
    hits = np.concatenate([np.zeros((len(a), 1)), np.cumsum(rel, axis=1)], axis=1)[np.arange(len(a)), k]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n_true > 0, hits / n_true, np.nan)
    return float(out[0]) if single else out


def ndcg(scores, truth, p: float = 100):
    """NDCG@P% (binary relevance) of one ranking or per row; NaN where the truth set is
    empty (or the cut-off ``k`` is 0)."""
    a, g, single = _as_2d(scores, truth)
    n_true = g.sum(1)
    s = a.shape[1]
    k = _cutoff(n_true, p, s)
    disc = 1.0 / np.log2(np.arange(2, s + 2))
    rel = _ranked_relevance(a, g)
    dcg = np.concatenate([np.zeros((len(a), 1)), np.cumsum(rel * disc, axis=1)], axis=1)[np.arange(len(a)), k]
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(k, n_true)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((n_true > 0) & (k > 0), dcg / ideal, np.nan)
    return float(out[0]) if single else out


def step_metrics(attribution, truth) -> dict[str, np.ndarray]:
    """Per step (row) of ``attribution`` [N, S] against ``truth`` bool [N, S]: ``hit_100``,
    ``hit_150`` and ``ndcg_100``."""
    out = {}
    for col, p, kind in _STEP_METRICS:
        out[col] = (hit_rate if kind == "hit" else ndcg)(attribution, truth, p)
    return out


def event_parts(attribution, steps, labels, spans, sensor_sets) -> dict:
    """One entity's per-step and per-event values, for :func:`summarise`.

    ``attribution`` [N, S] holds the attribution of test steps ``steps`` [N] (it may
    hold more steps than needed; steps outside every span, or unlabelled, are ignored).
    ``labels`` [T] are the point labels, ``spans`` [E, 2] inclusive event spans and
    ``sensor_sets`` bool [E, S] each event's ground-truth sensors.
    """
    attribution = np.asarray(attribution, dtype=np.float64).reshape(len(steps), -1) if len(steps) else \
        np.zeros((0, np.shape(sensor_sets)[1] if np.ndim(sensor_sets) == 2 else 0))
    steps = np.asarray(steps, dtype=np.int64)
    labels = np.asarray(labels)
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    sets = np.asarray(sensor_sets, dtype=bool).reshape(len(spans), -1)
    if len(steps) and sets.shape[1] != attribution.shape[1]:
        raise ValueError(f"attribution has {attribution.shape[1]} sensors, the truth sets {sets.shape[1]}")
    # each step's truth set: the union of the sets of the spans that cover it
    row_of = {int(t): i for i, t in enumerate(steps)}
    truth = np.zeros(attribution.shape, dtype=bool)
    for (s, e), g in zip(spans, sets):
        for t in range(max(int(s), 0), int(e) + 1):
            i = row_of.get(t)
            if i is not None:
                truth[i] |= g
    in_event = truth.any(1)
    labelled = (labels[steps] == 1) if len(steps) else np.zeros(0, dtype=bool)
    scored = np.isfinite(attribution).any(1)
    use = in_event & labelled & scored
    values = step_metrics(attribution[use], truth[use]) if use.any() else {c: np.zeros(0) for c, _, _ in _STEP_METRICS}
    used_steps = steps[use]
    events, skipped = {c: [] for c, _, _ in _STEP_METRICS}, 0
    for (s, e), g in zip(spans, sets):
        inside = (used_steps >= s) & (used_steps <= e)
        if not g.any() or not inside.any():
            skipped += 1
            continue
        for c in events:
            events[c].append(float(np.mean(values[c][inside])))
    return {"steps": values, "events": {c: np.asarray(v) for c, v in events.items()}, "skipped": skipped}


def summarise(parts: list[dict]) -> dict:
    """The interpretation columns from one or several entities' :func:`event_parts`:
    step means pooled over all steps, event means over all events, counts summed."""
    out: dict = {}
    n_steps = sum(len(p["steps"]["hit_100"]) for p in parts)
    n_events = sum(len(p["events"]["hit_100"]) for p in parts)
    for c, _, _ in _STEP_METRICS:
        st = np.concatenate([p["steps"][c] for p in parts]) if parts else np.zeros(0)
        ev = np.concatenate([p["events"][c] for p in parts]) if parts else np.zeros(0)
        out[c] = float(st.mean()) if st.size else float("nan")
        out[f"{c}_event"] = float(ev.mean()) if ev.size else float("nan")
    out.update(interp_steps=n_steps, interp_events=n_events, interp_events_skipped=sum(p["skipped"] for p in parts))
    return out
