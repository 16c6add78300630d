"""``objective=none``: no loss and a constant score, for a base embedder trained by its
head's losses alone (the appendix Table 3 ``Clustering`` arm: the cluster loss only).

The score is 1 on every step, so ``head.score=product`` equals the head's score (as the
MADCluster reference's DCdetector, whose window score is the constant 1/L). Without a head
nothing would train: refused when the config is composed (``madbench.detector.check_composition``).
"""
from __future__ import annotations

from madbench.objectives.base import Objective


class NoObjective(Objective):
    requires = ()
    horizon = 0
    has_residuals = False
    has_loss = False

    def loss(self, batch, out, ctx=None):
        return batch["x"].new_zeros(())

    def score(self, batch, out):
        return batch["x"].new_ones(batch["x"].shape[:2]), None
