"""USAD's two-phase adversarial training and score (Audibert et al. 2020; BACKBONES.md,
USAD points 2, 3 and 5).

In epoch n (1-based, ``ctx.epoch``), with w1 = D1(E(x)), w2 = D2(E(x)), w3 = D2(E(w1)) and
‖·‖² the mean squared error over the window's values (manigalati/usad ``usad.py``,
``UsadModel.training_step``):

    L1 = ‖x − w1‖²/n + (1 − 1/n)·‖x − w3‖²
    L2 = ‖x − w2‖²/n − (1 − 1/n)·‖x − w3‖²

Per batch, in the reference's order (``training``): a forward, L1's backward, optimiser
``ae1`` (E + D1) steps; then a **fresh** forward with the updated E and D1, L2's backward,
optimiser ``ae2`` (E + D2) steps. E is in both optimisers, each with its own Adam state.

Gradients. By default every gradient is zeroed before each backward, so each optimiser
steps on its own phase's loss only. The reference zeroes only the stepped optimiser's
gradients after its step, so D2 steps on L1's plus L2's gradients and D1 carries L2's
gradients of the previous batch into its next step; ``reference_quirks=true`` reproduces
that. In the corrected mode the decoder a phase does not step is frozen during that
phase's forward (``frozen``): its weight gradients, which would be zeroed unused, are
never computed (the same updates, less work).

TSB-AD (``TSB_AD/models/USAD.py``) sums L1 + L2 under one optimiser: the ‖x − w3‖² terms
cancel exactly and no adversarial phase is left. madbench never sums them
(tests/models/test_usad.py shows both).

The heads' loss joins one pass, ``head_pass`` (``ae1`` by default: the phase whose loss E
minimises without an adversarial sign); the heads' shared parameters go to that pass's
optimiser and the heads' own optimisers (MADCluster's ν) step with it.

Score (``testing`` in the reference, α = β = 0.5): per step, over the S sensors,
α·mean_S (y − w1)² + β·mean_S (y − w3)² [B, L] (the reference averages it over the whole
window; the trainer places per-step scores and averages over the windows covering a
step). Residuals (for ``scoring=m2ad``): α·(y − w1) + β·(y − w3), signed, per sensor.

Monitored validation loss: α·‖x − w1‖² + β·‖x − w3‖² over the window (plus the heads'
loss). L1 and L2 re-weight their terms every epoch and L2 is unbounded below, so neither
compares across epochs; this one is the score's own quantity. The reference selects no
epoch (it keeps the last); the trainer keeps the best validation epoch.
"""
from __future__ import annotations

import torch

from madbench.errors import ConfigError
from madbench.objectives.base import Objective, at_least_float32, frozen, mse

PASSES = ("ae1", "ae2")


class USADObjective(Objective):
    requires = ("reconstruction", "ae1", "ae2", "ae2ae1")
    horizon = 0
    has_residuals = True

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, head_pass: str = "ae1", reference_quirks: bool = False):
        super().__init__()
        for key, v in (("alpha", alpha), ("beta", beta)):
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"objective.{key}={v}; expected a weight >= 0")
        if alpha == 0 and beta == 0:
            raise ConfigError("objective.alpha=0 and objective.beta=0 leave USAD's score empty; expected alpha + beta > 0")
        if head_pass not in PASSES:
            raise ConfigError(f"objective.head_pass={head_pass!r}; expected one of {list(PASSES)}")
        self.alpha, self.beta, self.head_pass = float(alpha), float(beta), head_pass
        self.reference_quirks = bool(reference_quirks)

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self, detector, make) -> dict:
        bb = detector.backbone
        enc = list(bb.encoder.parameters())
        groups = {"ae1": enc + list(bb.decoder1.parameters()), "ae2": enc + list(bb.decoder2.parameters())}
        groups[self.head_pass] += detector.head_parameters()
        return {name: make(params) for name, params in groups.items()}

    def _pass(self, detector, x, idle):
        """One phase's forward; in the corrected mode the decoder it does not step is frozen."""
        if self.reference_quirks:
            return detector(x)
        with frozen(idle):
            return detector(x)

    def training_step(self, detector, batch, ctx) -> dict:
        """Phase 1 (``ae1``: L1, E + D1), then phase 2 (``ae2``: L2, E + D2) on a fresh
        forward. Returns the monitored quantity (``loss``, as in validation, from phase 1's
        forward, plus the heads' loss) and the parts ``loss1``, ``loss2``, ``ae1``, ``ae2``,
        ``ae2ae1`` (unweighted MSEs) and the heads' parts."""
        x = batch["x"]
        n = max(int(ctx.epoch), 1)
        bb = detector.backbone
        heads_own = [k for k in ctx.optimizers if k not in PASSES]  # the heads' own optimisers (ν)
        logged, head_total = {}, 0.0
        for phase, idle in (("ae1", bb.decoder2), ("ae2", bb.decoder1)):
            out = self._pass(detector, x, idle)
            e3 = mse(x, out.extras["ae2ae1"])
            if phase == "ae1":
                e1 = mse(x, out.extras["ae1"])
                loss = e1 / n + (1 - 1 / n) * e3
                logged.update(loss1=loss.detach(), ae1=e1.detach(), ae2ae1=e3.detach())
                monitored = (self.alpha * e1 + self.beta * e3).detach()
            else:
                e2 = mse(x, out.extras["ae2"])
                loss = e2 / n - (1 - 1 / n) * e3
                logged.update(loss2=loss.detach(), ae2=e2.detach())
            if phase == self.head_pass and len(detector.heads):
                h = detector.head_loss(out, ctx)
                head = h.pop("loss")
                loss = loss + head
                head_total = head.detach()
                logged.update({k: v.detach() for k, v in h.items()})
            if not self.reference_quirks:
                ctx.zero_grad()
            ctx.backward(loss)
            ctx.step(phase, *(heads_own if phase == self.head_pass else ()))
        logged["loss"] = monitored + head_total
        return logged

    # -- monitored loss and score -------------------------------------------------------------
    def loss(self, batch, out, ctx=None) -> dict:
        x = batch["x"]
        e1, e3 = mse(x, out.extras["ae1"]), mse(x, out.extras["ae2ae1"])
        return {"loss": self.alpha * e1 + self.beta * e3, "ae1": e1.detach(), "ae2ae1": e3.detach()}

    def score(self, batch, out):
        y = batch["y"]
        S = y.shape[-1]
        r1 = y - at_least_float32(out.extras["ae1"][..., :S])
        r3 = y - at_least_float32(out.extras["ae2ae1"][..., :S])
        step = self.alpha * (r1 ** 2).mean(-1) + self.beta * (r3 ** 2).mean(-1)
        return step, self.alpha * r1 + self.beta * r3
