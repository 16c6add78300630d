"""Forecast objective: MSE on the next step(s) of the sensors."""
from __future__ import annotations

import torch

from madbench.objectives.base import Objective


class ForecastObjective(Objective):
    requires = ("forecast",)
    horizon = 1

    def loss(self, batch, out, ctx=None):
        return torch.mean((out.forecast.float() - batch["y"]) ** 2)

    def score(self, batch, out):
        res = batch["y"] - out.forecast.float()
        return (res ** 2).mean(-1), res
