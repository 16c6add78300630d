"""``objective=direct``: the backbone's own per-step score, used as it is.

For backbones that score without a loss (the trivial baselines' ``extras["score"]``
[B, L]): no loss, no residuals (``scoring=m2ad`` is refused), every step of the window
scored.
"""
from __future__ import annotations

from madbench.objectives.base import Objective


class DirectObjective(Objective):
    requires = ("score",)
    horizon = 0
    has_residuals = False
    has_loss = False

    def loss(self, batch, out, ctx=None):
        return out.extras["score"].new_zeros(())

    def score(self, batch, out):
        return out.extras["score"].float(), None
