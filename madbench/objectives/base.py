"""The objective contract: what a backbone is trained with and how it scores.

An objective is an ``nn.Module`` built by Hydra from its whole config node (``_target_``
plus its parameters), so anything it keeps across batches — a Deep SVDD centre, a radius,
an annealed temperature — is a buffer in the Detector's ``state_dict`` and is restored
with the best weights. Every hook has a no-op (or the plain) default; a method overrides
only its own parts (ARCHITECTURE.md, "The training contract"):

- ``loss(batch, out, ctx) -> Tensor | dict``: a dict holds ``loss`` plus named parts,
  which are logged per epoch.
- ``score(batch, out) -> (step [B, K], residuals [B, K, S] | None)``: the K steps are the
  ones ``WindowSpec.score_offsets()`` names (a forecast: its target step; a window
  objective: every step of the window). ``residuals`` are signed (y − ŷ) per sensor, or
  ``None`` (then M2AD scoring is refused at compose time).
- ``configure_optimizers(detector, make) -> {name: optimizer | (optimizer, scheduler)}``;
  ``make(params)`` builds ``trainer.optimizer``. By default one optimiser over every
  parameter that no head claims for an optimiser of its own.
- ``training_step(detector, batch, ctx) -> dict``: the default is one forward, one
  backward, one step of every optimiser. Manual optimisation (alternating optimisers,
  two backward passes) overrides it and calls ``ctx.backward`` / ``ctx.step``; it adds
  the heads' loss (``detector.head_loss``) to exactly one pass.
- ``validation_step(detector, batch, ctx) -> dict``: the monitored validation loss; by
  default the same total as training, without gradients.
- ``on_fit_start(detector, ctx)`` and ``on_epoch_end(detector, ctx)``: state set outside
  autograd (a centre from one pass over train, a radius, a temperature).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def as_loss_dict(loss) -> dict:
    """``Tensor`` → ``{"loss": Tensor}``; a dict must hold ``loss``."""
    if isinstance(loss, dict):
        if "loss" not in loss:
            raise ValueError(f"an objective's loss dict must hold 'loss'; got {sorted(loss)}")
        return loss
    return {"loss": loss}


class Objective(nn.Module):
    #: BackboneOutput fields (or ``extras`` keys) the objective reads; checked at compose time
    requires: tuple[str, ...] = ()
    #: 0: the scores describe every step of the window; 1: one step ahead (a forecast)
    horizon: int = 0
    #: whether ``score`` returns per-sensor residuals (needed by ``scoring=m2ad``)
    has_residuals: bool = True
    #: whether ``loss`` can train anything (False: ``direct``, ``none``; then only a head's
    #: loss, or nothing for a backbone fitted in ``on_fit_start``, trains the detector)
    has_loss: bool = True

    def __init__(self):
        # no **params: an objective's parameters are its own __init__'s, so a key it does not
        # take is refused at compose time with the key named (madbench.checks)
        super().__init__()

    # -- what every objective defines ------------------------------------------------------
    def loss(self, batch: dict, out, ctx=None) -> torch.Tensor | dict:
        raise NotImplementedError

    def score(self, batch: dict, out) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    # -- hooks with defaults ----------------------------------------------------------------
    def configure_optimizers(self, detector, make) -> dict:
        return {"model": make(detector.free_parameters())}

    def training_step(self, detector, batch: dict, ctx) -> dict:
        out = detector(batch["x"])
        losses = detector.total_loss(batch, out, ctx)
        ctx.backward(losses["loss"])
        ctx.step()
        return losses

    def validation_step(self, detector, batch: dict, ctx) -> dict:
        return detector.total_loss(batch, detector(batch["x"]), ctx)

    def on_fit_start(self, detector, ctx) -> None:
        pass

    def on_epoch_end(self, detector, ctx) -> None:
        pass

    # -- checks -------------------------------------------------------------------------------
    def check(self, out) -> None:
        for name in self.requires:
            if getattr(out, name, None) is None and name not in out.extras:
                raise ValueError(f"objective needs the backbone output '{name}', which this backbone does not give")


@contextmanager
def frozen(*modules: nn.Module):
    """``requires_grad`` off for the modules' parameters during a forward, restored after:
    gradients still flow through them to their inputs, but their own weight gradients are
    never computed. For a manual step whose optimiser does not step them and zeroes them
    anyway (USAD's other decoder, BeatGAN's generator during the discriminator step)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or in its own dtype when wider (autocast outputs may be half
    precision; losses and scores are computed in at least float32)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element, in at least float32."""
    return torch.mean((at_least_float32(a) - at_least_float32(b)) ** 2)
