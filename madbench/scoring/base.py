"""What the score stage hands to the scoring and protocol stages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SeriesScores:
    """Scores of one series (an entity's train or test split).

    ``step`` [T]: per-timestamp score, NaN where no window scores the step (never 0).
    ``residuals`` [T, S]: signed per-sensor residuals (y - y_hat), NaN likewise; None when
    the objective has none. ``window`` [N] + ``window_start`` [N]: window-level scores
    (mean of the window's step scores), used only by the ``madcluster`` protocol.
    ``factor`` [T]: a head's per-window score factor (MADCluster), placed like ``step``
    (already multiplied into it); None without a head.
    ``offsets``: the steps each window's score describes, as offsets from its start
    (``WindowSpec.score_offsets()``: ``[window + gap, ...)`` for a forecast, ``[0, window)``
    for a reconstruction); the ``madcluster`` protocol labels a window by these steps.
    None where unknown (runs written before it was kept).
    """

    step: np.ndarray
    residuals: np.ndarray | None
    window: np.ndarray
    window_start: np.ndarray
    factor: np.ndarray | None = None
    offsets: np.ndarray | None = None
