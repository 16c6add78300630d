"""THOC's objective (Shen et al. 2020), as TimeSeAD trains it (``timesead/models/other/thoc.py``
``THOCLoss``/``THOCTrainer``, ``timesead_experiments/other/train_thoc.py``):

- loss = L_THOC + λ_orth·L_orth + λ_tss·L_TSS, with
  L_THOC = mean over (B, L, K) of R·½(1 − cos(f̄, c_L)) (last layer's features, centres and
  assignments R); L_orth = mean over layers of mean((ĉĉᵀ − I)²), ĉ the row-normalised
  centres of the layer (TimeSeAD normalises; the squared entries are averaged);
  L_TSS = mean over layers of the MSE of layer l's forecast of the sensors d_l steps ahead
  (the forecast at t against y at t + d_l). λ_orth 1, λ_tss 10.
- two Adam optimisers (lr 1e-3, weight decay 1e-6: ``backbone.recipe``): ``join`` holds
  the join layers (eq. 8), ``model`` everything else (and a head's shared parameters);
  one backward, then both step. Each has StepLR(``lr_step`` 20, ``lr_gamma`` 0.65) per
  epoch.
- the centres: before epoch 1 (``on_fit_start``), K-means (scikit-learn, k-means++,
  seeded by ``trainer.seed``) per layer on the features that layer assigns, from the first
  ``kmeans_batches`` (20) shuffled training batches, all layers from one forward pass.
- τ annealing: τ × ``tau_gamma`` (2/3) after every ``tau_every``-th (5th) epoch, while τ >
  ``tau_min`` (1/300). TimeSeAD applies it inside ``train_batch``, i.e. after *every batch*
  of epochs 6, 11, ... (its epoch counter starts at 0): with a few hundred batches τ hits
  the floor within epoch 6. ``reference_quirks=true`` reproduces that; the default anneals
  once per epoch, as the ``tau_decrease_steps`` (epochs) setting means.

Validation monitors ``monitor``: ``thoc`` (default: TimeSeAD's early stopping metric
``loss_0``, the L_THOC term alone) or ``total``; plus the heads' loss. Every term is logged.

Score, per step: Σ_k R·½(1 − cos(f̄_k, c_k))/K over the last layer's K centres
(TimeSeAD's online score, which keeps the last step only; here every step of the window,
averaged over the windows covering it). No per-sensor residuals (``scoring=m2ad`` is
refused).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from madbench.errors import ConfigError
from madbench.objectives.base import Objective

MONITORS = ("thoc", "total")


def cluster_distance(f_bar: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """½(1 − cos(f̄_k, c_k)) per centre: [B, L, K, h] × [K, h] → [B, L, K]."""
    return 0.5 * (1 - torch.einsum("blkh,kh->blk", F.normalize(f_bar, dim=-1), F.normalize(centres, dim=-1)))


def orthogonality(centres: list) -> torch.Tensor:
    """Mean over layers of mean((ĉĉᵀ − I)²), layers with one centre counting 0 (TimeSeAD)."""
    total = 0.0
    for c in centres:
        if c.shape[0] > 1:
            c = F.normalize(c, dim=-1)
            total = total + ((c @ c.T - torch.eye(c.shape[0], device=c.device, dtype=c.dtype)) ** 2).mean()
    return total / len(centres)


def forecast_error(forecasts: list, y: torch.Tensor, dilations: list) -> torch.Tensor:
    """Mean over layers of MSE(forecast_l[:, :−d_l], y[:, d_l:]) (eq. 12)."""
    return sum(F.mse_loss(f[:, :-d], y[:, d:]) for f, d in zip(forecasts, dilations)) / len(forecasts)


class THOCObjective(Objective):
    requires = ("cluster_features", "assignments", "centres", "forecasts")
    horizon = 0
    has_residuals = False

    def __init__(self, lambda_orth: float = 1.0, lambda_tss: float = 10.0, kmeans_batches: int = 20,
                 tau_every: int = 5, tau_gamma: float = 2 / 3, tau_min: float = 1 / 300, lr_step: int = 20,
                 lr_gamma: float = 0.65, monitor: str = "thoc", reference_quirks: bool = False):
        super().__init__()
        if monitor not in MONITORS:
            raise ConfigError(f"objective.monitor={monitor!r}; expected one of {list(MONITORS)}")
        for key, value in (("kmeans_batches", kmeans_batches), ("tau_every", tau_every), ("lr_step", lr_step)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"objective.{key}={value}; expected an integer >= 1")
        if not 0.0 < float(tau_gamma) <= 1.0:
            raise ConfigError(f"objective.tau_gamma={tau_gamma}; expected a factor in (0, 1]")
        self.lambda_orth, self.lambda_tss = float(lambda_orth), float(lambda_tss)
        self.kmeans_batches, self.tau_every, self.tau_gamma = kmeans_batches, tau_every, float(tau_gamma)
        self.tau_min, self.lr_step, self.lr_gamma = float(tau_min), lr_step, float(lr_gamma)
        self.monitor, self.reference_quirks = monitor, bool(reference_quirks)

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, batch, out, ctx=None) -> dict:
        ex = out.extras
        thoc = (ex["assignments"].float() * cluster_distance(ex["cluster_features"].float(), ex["centres"][-1])).mean()
        orth = orthogonality(ex["centres"])
        tss = forecast_error([f.float() for f in ex["forecasts"]], batch["y"], ex["dilations"])
        total = thoc + self.lambda_orth * orth + self.lambda_tss * tss
        parts = {"thoc": thoc.detach(), "orth": orth.detach(), "tss": tss.detach(), "total": total.detach()}
        monitored = thoc if (self.monitor == "thoc" and ctx is not None and ctx.stage == "val") else total
        return {"loss": monitored, **parts}

    def score(self, batch, out):
        ex = out.extras
        d = cluster_distance(ex["cluster_features"].float(), ex["centres"][-1])
        return (ex["assignments"].float() * d).mean(-1), None

    # -- optimisers ---------------------------------------------------------------------------
    def configure_optimizers(self, detector, make) -> dict:
        join = {id(p) for p in detector.backbone.join.parameters()}
        groups = {"model": [p for p in detector.free_parameters() if id(p) not in join],
                  "join": [p for p in detector.free_parameters() if id(p) in join]}
        out = {}
        for name, params in groups.items():
            if params:  # one layer: no join layer, no second optimiser
                opt = make(params)
                out[name] = (opt, torch.optim.lr_scheduler.StepLR(opt, self.lr_step, self.lr_gamma))
        return out

    # -- state outside autograd -----------------------------------------------------------------
    @torch.no_grad()
    def on_fit_start(self, detector, ctx) -> None:
        """Each layer's centres ← K-means on the features it assigns, from the first
        ``kmeans_batches`` shuffled training batches (one forward pass, as TimeSeAD)."""
        chunks = [[] for _ in detector.backbone.centres]
        was = detector.training
        detector.eval()
        try:
            for i, batch in enumerate(ctx.batches("train", ctx.trainer.batch_size, shuffle=True)):
                if i == self.kmeans_batches:
                    break
                for l, h in enumerate(detector(batch["x"]).extras["features"]):
                    chunks[l].append(h.float().reshape(-1, h.shape[-1]).cpu())
        finally:
            detector.train(was)
        feats = [torch.cat(c) for c in chunks]
        for l, (c, f) in enumerate(zip(detector.backbone.centres, feats)):
            if len(f) < c.shape[0]:
                raise ConfigError(f"backbone.model.clusters: layer {l} has {c.shape[0]} centres but K-means gets only "
                                  f"{len(f)} feature vectors; use fewer clusters or more training windows")
            km = KMeans(c.shape[0], n_init="auto", random_state=int(ctx.trainer.seed)).fit(f.numpy())
            c.copy_(torch.as_tensor(km.cluster_centers_, dtype=c.dtype, device=c.device))

    def _anneal(self, tau: torch.Tensor) -> None:
        if float(tau) > self.tau_min:
            tau.mul_(self.tau_gamma)

    def training_step(self, detector, batch, ctx) -> dict:
        losses = super().training_step(detector, batch, ctx)   # one backward, every optimiser steps
        # TimeSeAD: after every batch of epochs 6, 11, ... (its epochs count from 0)
        if self.reference_quirks and (ctx.epoch - 1) > 0 and (ctx.epoch - 1) % self.tau_every == 0:
            self._anneal(detector.backbone.tau)
        return losses

    def on_epoch_end(self, detector, ctx) -> None:
        if not self.reference_quirks and ctx.epoch % self.tau_every == 0:
            self._anneal(detector.backbone.tau)   # once: epochs 6, 11, ... run at the lower τ
        ctx.log("thoc_tau", detector.backbone.tau)
