"""The scoring stage: placed scores and residuals → the final per-step score (and, for
calibrated scorers, p-values and alarms). ``build_scorer`` makes the configured scorer."""
from __future__ import annotations

from madbench.config import build, node_without


def build_scorer(cfg):
    """The scoring stage's scorer from ``cfg.scoring`` (unfitted). Its constructor checks
    its parameters, so building it is also the compose-time check of ``scoring.*``."""
    return build(node_without(cfg.scoring, "name", "needs_residuals"), f"scoring={cfg.scoring.name}", prefix="scoring")
