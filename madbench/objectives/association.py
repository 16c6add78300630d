"""The Anomaly Transformer's association objective (Xu et al., ICLR 2022): reconstruction
plus the minimax association discrepancy (thuml/Anomaly-Transformer ``solver.py``).

With S the series and P̂ the row-normalised prior association of each layer ([B, H, L, L]),
KL(p‖q) per step = Σ_j p·(log(p + 1e-4) − log(q + 1e-4)), averaged over heads
(the reference's ``my_kl_loss``; every use here is the symmetric sum KL(S‖P̂) + KL(P̂‖S),
computed as Σ_j (S − P̂)(log(S + 1e-4) − log(P̂ + 1e-4)): same value and gradients, two logs
instead of four):

- ``series_loss`` = mean over layers of mean(KL(S‖P̂.detach)) + mean(KL(P̂.detach‖S));
- ``prior_loss``  = mean over layers of mean(KL(P̂‖S.detach)) + mean(KL(S.detach‖P̂));
  both have the value of the association discrepancy AssDis; they differ in where the
  gradient goes.
- ``loss1`` = MSE − λ·series_loss: the series branch (Q, K) is pushed *away* from the
  prior; the prior gets no gradient from it.
- ``loss2`` = MSE + λ·prior_loss: the prior branch (the σ projection) is pulled *towards*
  the series; the series gets no gradient from it.
- per batch (``training_step``): loss1.backward(retain_graph), loss2.backward(), one Adam
  step. The reconstruction gradient is counted twice, as in the reference: that is its
  method, kept. The heads' loss (MADCluster) joins ``loss1`` only, so it is counted once.
- the learning rate: epochs 1 and 2 at ``lr``, then × ``lr_decay`` (0.5) per epoch — the
  reference's ``adjust_learning_rate(optimizer, epoch + 1, lr)``, called after each epoch,
  sets lr·0.5^(epoch − 1) for the next one. The objective's own schedule, so neither
  ``trainer.lr_decay`` nor a head's schedule replaces it.

Validation (``validation_step``) monitors ``monitor``: ``loss1`` (default: the reference's
printed validation loss, the first of its two early-stopping criteria) + the heads' loss;
``loss2`` and ``rec`` (MSE) are the alternatives, and all three are logged
(``val_loss1``, ``val_loss2``, ``val_rec``, ``val_assdis``). The reference stops on its
*test* loader and asks both losses to improve (issues #27, #32); madbench validates on the
tail of the training series and monitors one loss.

Score, per step (``solver.py`` ``test``): softmax over the window's L steps of
−T·Σ_layers(KL(S‖P̂) + KL(P̂‖S)), T = ``temperature`` (50), times the step's reconstruction
MSE over the sensors; the signed residuals y − ŷ are returned too (``scoring=m2ad`` works).
The reference scores non-overlapping test windows; madbench scores every window and
averages a step's scores over the windows covering it (the score convention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from madbench.errors import ConfigError
from madbench.objectives.base import Objective

KL_EPS = 1e-4    # the reference's my_kl_loss adds 1e-4 inside both logs
MONITORS = ("loss1", "loss2", "rec")


def symmetric_kl_rows(s: torch.Tensor, p: torch.Tensor, log_s=None, log_p=None) -> torch.Tensor:
    """[B, L]: KL(s‖p) + KL(p‖s) per row, mean over the heads, as Σ_j (s − p)(log(s + ε) −
    log(p + ε)): the two ``my_kl_loss`` terms share their logs (ε inside every log, as in
    the reference), so two logs instead of four, and one pass for the sum. The logs may be
    given (computed once for both losses of a training step)."""
    log_s = torch.log(s + KL_EPS) if log_s is None else log_s
    log_p = torch.log(p + KL_EPS) if log_p is None else log_p
    return ((s - p) * (log_s - log_p)).sum(-1).mean(1)


def association_losses(series: list, prior: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(series_loss, prior_loss), each the mean over layers of the symmetric KL, with the
    prior (series_loss) or the series (prior_loss) detached. Both have the same value; each
    layer's two logs are computed once and detached where the reference detaches the map."""
    s_loss = p_loss = 0.0
    for s, p in zip(series, prior):
        log_s, log_p = torch.log(s + KL_EPS), torch.log(p + KL_EPS)
        s_loss = s_loss + symmetric_kl_rows(s, p.detach(), log_s, log_p.detach()).mean()
        p_loss = p_loss + symmetric_kl_rows(s.detach(), p, log_s.detach(), log_p).mean()
    return s_loss / len(series), p_loss / len(series)


def association_discrepancy(series: list, prior: list) -> torch.Tensor:
    """[B, L]: Σ over layers of KL(S‖P̂) + KL(P̂‖S) per step (the score's AssDis)."""
    return sum(symmetric_kl_rows(s, p) for s, p in zip(series, prior))


class AssociationObjective(Objective):
    requires = ("reconstruction", "series", "prior")
    horizon = 0
    has_residuals = True

    def __init__(self, lam: float = 3.0, temperature: float = 50.0, lr_decay: float | None = 0.5,
                 monitor: str = "loss1"):
        super().__init__()
        if monitor not in MONITORS:
            raise ConfigError(f"objective.monitor={monitor!r}; expected one of {list(MONITORS)}")
        if not float(temperature) > 0:
            raise ConfigError(f"objective.temperature={temperature}; expected a value > 0")
        if lr_decay is not None and not 0.0 < float(lr_decay) <= 1.0:
            raise ConfigError(f"objective.lr_decay={lr_decay}; expected a factor in (0, 1] or null")
        self.lam, self.temperature, self.lr_decay, self.monitor = float(lam), float(temperature), lr_decay, monitor

    # -- the terms ----------------------------------------------------------------------------
    @staticmethod
    def _maps(out) -> tuple[list, list]:
        return [s.float() for s in out.extras["series"]], [p.float() for p in out.extras["prior"]]

    def terms(self, batch: dict, out) -> dict:
        """rec (MSE), series_loss, prior_loss, loss1 = rec − λ·series_loss, loss2 = rec + λ·prior_loss."""
        rec = F.mse_loss(out.reconstruction.float(), batch["y"])
        s_loss, p_loss = association_losses(*self._maps(out))
        return {"rec": rec, "series_loss": s_loss, "prior_loss": p_loss,
                "loss1": rec - self.lam * s_loss, "loss2": rec + self.lam * p_loss}

    def _report(self, t: dict, head: dict) -> dict:
        parts = {k: t[k].detach() for k in ("rec", "loss1", "loss2")}
        parts["assdis"] = t["series_loss"].detach()
        loss = parts[self.monitor]
        if head:
            parts["objective_loss"] = loss
            loss = loss + head["loss"].detach()
            parts.update({k: v for k, v in head.items() if k != "loss"})
        return {"loss": loss, **parts}

    def loss(self, batch, out, ctx=None):
        """The monitored loss (``detector.total_loss`` adds the heads'); training itself
        runs the two passes in ``training_step``."""
        return self._report(self.terms(batch, out), {})

    # -- training -----------------------------------------------------------------------------
    def configure_optimizers(self, detector, make) -> dict:
        opt = make(detector.free_parameters())
        if self.lr_decay is None:
            return {"model": opt}
        factor = float(self.lr_decay)
        # after n epochs the next runs at lr·factor^max(0, n − 1): epochs 1 and 2 at lr (the reference)
        return {"model": (opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda n: factor ** max(0, n - 1)))}

    def training_step(self, detector, batch, ctx) -> dict:
        out = detector(batch["x"])
        t = self.terms(batch, out)
        head = detector.head_loss(out, ctx)
        loss1 = t["loss1"] + head["loss"] if head else t["loss1"]   # the heads join this pass only
        ctx.zero_grad()
        ctx.backward(loss1, retain_graph=True)   # series pushed away from the (detached) prior
        ctx.backward(t["loss2"])                 # prior pulled towards the (detached) series
        ctx.step()                               # one step on the summed gradients
        return self._report(t, head)

    def validation_step(self, detector, batch, ctx) -> dict:
        out = detector(batch["x"])
        return self._report(self.terms(batch, out), detector.head_loss(out, ctx))

    # -- score --------------------------------------------------------------------------------
    def score(self, batch, out):
        res = batch["y"] - out.reconstruction.float()
        rec = (res ** 2).mean(-1)                                       # [B, L]
        dis = association_discrepancy(*self._maps(out))                 # [B, L]
        return torch.softmax(-self.temperature * dis, dim=-1) * rec, res
