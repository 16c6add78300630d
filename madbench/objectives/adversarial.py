"""BeatGAN's adversarial training (Zhou et al. 2019; BACKBONES.md, BeatGAN points 2, 3
and 5; hi-bingo/BeatGAN ``experiments/ecg/model.py``, ``BeatGAN.optimize``).

Per batch, in the reference's order:

1. the discriminator step: err_d = BCE(D(x), 1) + BCE(D(G(x)), 0); optimiser
   ``discriminator`` steps;
2. the generator step, on a fresh forward (G(x) again, D as just updated):
   err_g = MSE(G(x), x) + w_adv · MSE(f_D(G(x)), f_D(x)) (reconstruction + feature
   matching on D's penultimate map); optimiser ``generator`` steps;
3. when err_d < ``d_reinit_below`` (5e-6) D is re-initialised (the reference's
   ``reinitialize_netd``); the number of re-initialisations per epoch is logged
   (``d_reinit``).

All gradients are zeroed before each backward. The network a step does not update is
frozen during its forward (``frozen``): the reference back-propagates err_d into G and
err_g into D and zeroes those gradients before they are used, so the updates are the
same, with less work. The losses are over every input column (G reconstructs its whole
input, as in the reference); the score and residuals are over the sensors.

The heads' loss joins the generator step (the embedding is G's); the heads' shared
parameters go to the ``generator`` optimiser and their own optimisers (MADCluster's ν)
step with it.

Score: per step, the squared error over the S sensors, mean_S (y − G(x))² [B, L] (the
reference's window MSE averaged over the window's steps; it min-max scales the scores,
which no ranking or threshold here needs). Residuals y − G(x) per sensor.

Monitored validation loss: G's reconstruction MSE (plus the heads' loss), in eval mode.
The reference keeps the epoch with the best AUC on a *labelled* validation set
(``validate``): never done here; the adversarial terms change meaning whenever D is
re-initialised, so they are logged, not monitored.

A single leftover window (a batch of one) is not trained on: the reference drops the
incomplete last batch (``drop_last=True``), and BatchNorm cannot normalise one window
whose map has one step.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from madbench.errors import ConfigError
from madbench.objectives.base import Objective, at_least_float32, frozen, mse

OWN = ("discriminator", "generator")


class AdversarialObjective(Objective):
    requires = ("reconstruction", "fake", "d_real", "d_fake", "feat_real", "feat_fake")
    horizon = 0
    has_residuals = True

    def __init__(self, w_adv: float = 1.0, d_reinit_below: float = 5.0e-6):
        super().__init__()
        if not isinstance(w_adv, (int, float)) or w_adv < 0:
            raise ConfigError(f"objective.w_adv={w_adv}; expected a weight >= 0")
        if not isinstance(d_reinit_below, (int, float)) or d_reinit_below < 0:
            raise ConfigError(f"objective.d_reinit_below={d_reinit_below}; expected a loss threshold >= 0")
        self.w_adv, self.d_reinit_below = float(w_adv), float(d_reinit_below)
        self.reinits = 0  # D re-initialisations in the current epoch (logged, not state)

    def configure_optimizers(self, detector, make) -> dict:
        bb = detector.backbone
        return {"discriminator": make(bb.discriminator.parameters()),
                "generator": make(list(bb.generator.parameters()) + detector.head_parameters())}

    def training_step(self, detector, batch, ctx) -> dict:
        x = batch["x"]
        if len(x) < 2:
            return {}
        bb = detector.backbone
        heads_own = [k for k in ctx.optimizers if k not in OWN]  # the heads' own optimisers (ν)
        # 1. discriminator step
        with frozen(bb.generator):
            out = detector(x)
        d_real, d_fake = at_least_float32(out.extras["d_real"]), at_least_float32(out.extras["d_fake"])
        err_d_real = F.binary_cross_entropy(d_real, torch.ones_like(d_real))
        err_d_fake = F.binary_cross_entropy(d_fake, torch.zeros_like(d_fake))
        err_d = err_d_real + err_d_fake
        ctx.zero_grad()
        ctx.backward(err_d)
        ctx.step("discriminator")
        # 2. generator step, on a fresh forward
        with frozen(bb.discriminator):
            out = detector(x)
        rec = mse(out.extras["fake"], x)
        adv = mse(out.extras["feat_fake"], out.extras["feat_real"])
        err_g = rec + self.w_adv * adv
        logged = {"err_d": err_d.detach(), "err_d_real": err_d_real.detach(), "err_d_fake": err_d_fake.detach(),
                  "err_g": err_g.detach(), "err_g_rec": rec.detach(), "err_g_adv": adv.detach()}
        loss, monitored = err_g, rec.detach()
        if len(detector.heads):
            h = detector.head_loss(out, ctx)
            head = h.pop("loss")
            loss = loss + head
            monitored = monitored + head.detach()
            logged.update({k: v.detach() for k, v in h.items()})
        ctx.zero_grad()
        ctx.backward(loss)
        ctx.step("generator", *heads_own)
        # 3. D re-initialised when its loss collapsed
        if err_d.item() < self.d_reinit_below:
            bb.reinitialize_discriminator()
            self.reinits += 1
        logged["loss"] = monitored
        return logged

    def on_epoch_end(self, detector, ctx) -> None:
        ctx.log("d_reinit", self.reinits)
        self.reinits = 0

    def loss(self, batch, out, ctx=None):
        return mse(out.extras["fake"], batch["x"])

    def score(self, batch, out):
        res = batch["y"] - at_least_float32(out.reconstruction)
        return (res ** 2).mean(-1), res
