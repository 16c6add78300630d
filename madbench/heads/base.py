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
- ``score_factors(out) -> {name: [B]}``: the head's per-window score factors. ``head`` is
  the head's own score (by default ``score_factor(out)``); other names are factors a head
  keeps beside it for analysis (MADCluster: ``d``, ``f``, ``df``), declared by
  ``score_names()``. The Detector keeps each of them, the objective's score and their
  product as separate parts of the score (``Detector.score``); ``head.score`` (the head's
  ``score`` attribute) names the part that is the final score.
"""
from __future__ import annotations

from torch import nn

from madbench.errors import ConfigError

#: the final-score choices every detector knows (``head.score``); heads may add named factors
SCORE_MODES = ("product", "head", "backbone")


def check_score_mode(score: str, head_parts, head: str) -> None:
    """One line naming ``head.score`` when ``score`` is not a part the detector gives:
    ``backbone`` always; ``head`` and ``product`` with a head; a head's named factors."""
    head_parts = list(head_parts)
    valid = ["backbone"] + (["product", "head"] if head_parts else []) + [n for n in head_parts if n != "head"]
    if score not in valid:
        why = "there is no head" if not head_parts else f"head={head} does not give it"
        raise ConfigError(f"head.score={score!r}: {why}; expected one of {', '.join(valid)}")


class Head(nn.Module):
    name: str = "head"
    #: the final score's part (``head.score``): product | head | backbone | a named factor
    score: str = "product"

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

    def score_names(self) -> tuple[str, ...]:
        """The names ``score_factors`` gives (``head`` = the head's own score)."""
        return ("head",)

    def score_factors(self, out) -> dict:
        f = self.score_factor(out)
        return {} if f is None else {"head": f}
