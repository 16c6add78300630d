"""What the score stage hands to the scoring and protocol stages."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from madbench.errors import ConfigError


@dataclass
class SeriesScores:
    """Scores of one series (an entity's train or test split).

    ``step`` [T]: per-timestamp score, NaN where no window scores the step (never 0).
    ``residuals`` [T, S]: signed per-sensor residuals (y - y_hat), NaN likewise; None when
    the objective has none. ``window`` [N] + ``window_start`` [N]: window-level scores
    (mean of the window's step scores), used only by the ``madcluster`` protocol.
    ``offsets``: the steps each window's score describes, as offsets from its start
    (``WindowSpec.score_offsets()``: ``[window + gap, ...)`` for a forecast, ``[0, window)``
    for a reconstruction); the ``madcluster`` protocol labels a window by these steps.
    None where unknown (runs written before it was kept).

    The parts of the score (``Detector.score``), each placed like ``step``:
    ``components`` {part: [T]} and ``window_components`` {part: [N]}, with the parts
    ``backbone`` (the objective's score) and, with a head, ``head`` (its factor),
    ``product`` (backbone × head) and the head's named factors (MADCluster: ``d``, ``f``,
    ``df``). ``step`` and ``window`` are the ``score_mode`` part (``head.score``);
    :meth:`select` picks another one without scoring again. ``factor`` [T] is
    ``components["head"]`` (None without a head). The parts are None, and ``score_mode``
    None (unknown), where not kept (scores built by hand, runs written before the parts
    were kept).
    """

    step: np.ndarray
    residuals: np.ndarray | None
    window: np.ndarray
    window_start: np.ndarray
    factor: np.ndarray | None = None
    offsets: np.ndarray | None = None
    components: dict[str, np.ndarray] | None = None
    window_components: dict[str, np.ndarray] | None = None
    score_mode: str | None = None

    def unscored_before(self, first: int) -> "SeriesScores":
        """The same scores with the steps before ``first`` unscored (NaN): what the score
        stage keeps of a train split scored only from ``first`` on (madbench.train_scores).
        The window-level scores are those of the windows that were scored."""
        def cut(a):
            if a is None:
                return None
            a = np.array(a, dtype=np.float64, copy=True)
            a[:first] = np.nan
            return a

        comps = None if self.components is None else {k: cut(v) for k, v in self.components.items()}
        return dataclasses.replace(self, step=cut(self.step), residuals=cut(self.residuals),
                                   factor=comps["head"] if comps and "head" in comps else cut(self.factor),
                                   components=comps)

    def select(self, mode: str) -> "SeriesScores":
        """The same scores with ``mode``'s part as the final score (``head.score=mode``),
        from the placed parts: no model needed. A part these scores do not keep is a
        one-line ConfigError naming ``head.score``."""
        if mode is not None and mode == self.score_mode:
            return self
        have = sorted(self.components or {})
        if mode not in have or mode not in (self.window_components or {}):
            kept = f"the parts kept are {', '.join(have)}" if have else "these scores keep no score parts"
            raise ConfigError(f"head.score={mode!r}: {kept}")
        return dataclasses.replace(self, step=self.components[mode], window=self.window_components[mode],
                                   score_mode=mode)
