"""Hypothesis strategies shared by the metric tests (small series with event structure), and
the comparison they all use against the references."""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# every property test: >= 200 generated cases, no deadline (the references are slow).
# Derandomized: the same cases on every run, so CI cannot fail on a case no earlier run saw.
# To explore new cases locally: MADBENCH_HYPOTHESIS_EXPLORE=1 pytest tests/metrics
PROPERTY = settings(max_examples=200, deadline=None, derandomize=not os.environ.get("MADBENCH_HYPOTHESIS_EXPLORE"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same(a: float, b: float, tol: float = 1e-6) -> bool:
    """Equal within ``tol``, or both NaN (a metric that does not apply)."""
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@st.composite
def binary_vectors(draw, n: int | None = None, max_len: int = 600, max_events: int = 8,
                   at_least_one: bool = False, burst: int = 30):
    """0/1 vectors built from events: random ones plus, often, events touching both ends."""
    T = n if n is not None else draw(st.integers(1, max_len))
    y = np.zeros(T, dtype=np.int8)
    for _ in range(draw(st.integers(0, max_events))):
        start = draw(st.integers(0, T - 1))
        y[start:start + draw(st.integers(1, max(1, T // 4)))] = 1
    if draw(st.booleans()):
        y[:draw(st.integers(1, max(1, T // 8)))] = 1
    if draw(st.booleans()):
        y[T - draw(st.integers(1, max(1, T // 8))):] = 1
    if draw(st.booleans()):  # a burst of one-step events close together
        start = draw(st.integers(0, T - 1))
        y[start:start + draw(st.integers(1, burst)):draw(st.integers(2, 4))] = 1
    if at_least_one and not y.any():
        y[draw(st.integers(0, T - 1))] = 1
    return y


@st.composite
def score_vectors(draw, labels):
    """Scores of several kinds: continuous, heavy ties, constant, informative, 0/1."""
    T = labels.size
    kind = draw(st.sampled_from(["uniform", "ties", "constant", "informative", "binary"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        return rng.random(T)
    if kind == "ties":
        return rng.integers(0, draw(st.integers(1, 5)), T).astype(np.float64)
    if kind == "constant":
        return np.full(T, draw(st.floats(-3, 3, allow_nan=False)))
    if kind == "informative":
        return rng.normal(size=T) + draw(st.floats(0, 3)) * labels
    return (rng.random(T) < draw(st.floats(0, 1))).astype(np.float64)


@st.composite
def labelled_scores(draw, max_len: int = 600, max_window: int = 20, at_least_one: bool = True,
                    max_events: int = 8, burst: int = 30):
    y = draw(binary_vectors(max_len=max_len, at_least_one=at_least_one, max_events=max_events, burst=burst))
    return y, draw(score_vectors(y)), draw(st.integers(0, max_window))


@st.composite
def label_pred_pairs(draw, max_len: int = 600):
    y = draw(binary_vectors(max_len=max_len))
    return y, draw(binary_vectors(n=y.size))
