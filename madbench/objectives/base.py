"""The objective contract.

``loss(batch, out) -> scalar`` and ``score(batch, out) -> (step [B, K], residuals [B, K, S])``
where the K steps are the ones ``WindowSpec.score_offsets()`` names (a forecast: its target
step; a reconstruction: every step of the window). ``residuals`` are signed (y - y_hat) per
sensor, or ``None`` for objectives that have none (then M2AD scoring is refused).
"""
from __future__ import annotations

import torch


class Objective:
    #: which BackboneOutput field the objective reads
    requires: str = ""
    #: 0: the target is the window (reconstruction); 1: one step ahead (forecast)
    horizon: int = 0
    #: whether ``score`` returns per-sensor residuals
    has_residuals: bool = True

    def loss(self, batch: dict, out) -> torch.Tensor:
        raise NotImplementedError

    def score(self, batch: dict, out) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def check(self, out) -> None:
        if getattr(out, self.requires, None) is None:
            raise ValueError(f"objective needs the backbone output '{self.requires}', which this backbone does not give")
