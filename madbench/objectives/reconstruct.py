"""Reconstruction objective: MSE between the window's sensors and their reconstruction."""
from __future__ import annotations

import torch

from madbench.objectives.base import Objective


class ReconstructObjective(Objective):
    requires = ("reconstruction",)
    horizon = 0

    def loss(self, batch, out, ctx=None):
        return torch.mean((out.reconstruction.float() - batch["y"]) ** 2)

    def score(self, batch, out):
        res = batch["y"] - out.reconstruction.float()
        return (res ** 2).mean(-1), res
