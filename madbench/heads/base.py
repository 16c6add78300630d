"""The head contract: a plug-in on a backbone's ``embedding`` [B, L, d].

A head is an ``nn.Module`` inside the Detector, so its parameters and buffers (a centre,
a threshold ν, a radius R) are in the Detector's ``state_dict`` and are restored with the
best weights. Every hook has a no-op default:

- ``loss(out, ctx) -> dict``: ``loss`` plus named parts, added to the objective's loss in
  the one pass the objective's ``training_step`` names (``detector.total_loss``).
- ``configure_optimizers(detector) -> {name: optimizer}``: parameters the head optimises
  on their own (MADCluster's ν); every other head parameter joins the objective's
  optimiser(s).
- ``configure_schedulers(optimizers, schedulers)``: a head may add a schedule to the
  objective's optimisers that have none (MADCluster's 0.9^epoch).
- ``on_fit_start(detector, ctx)``, ``on_epoch_end(detector, ctx)``.
- ``score_factor(out) -> [B] | None``: multiplies the window's step scores before they
  are placed on the timestamps.
"""
from __future__ import annotations

from torch import nn


class Head(nn.Module):
    name: str = "head"

    def loss(self, out, ctx=None) -> dict:
        raise NotImplementedError

    def configure_optimizers(self, detector) -> dict:
        return {}

    def configure_schedulers(self, optimizers: dict, schedulers: dict) -> None:
        pass

    def on_fit_start(self, detector, ctx) -> None:
        pass

    def on_epoch_end(self, detector, ctx) -> None:
        pass

    def score_factor(self, out):
        return None
