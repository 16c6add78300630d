"""OmniAnomaly's objective: the negative ELBO (SGVB, one z sample) and the reconstruction
log-probability score (BACKBONES.md, OmniAnomaly; NetManAIOps/OmniAnomaly
omni_anomaly/{model,training}.py).

**Loss**, per step and averaged over the batch and the window's steps (the reference's
``tf.reduce_mean`` over [B, L] of per-step terms)::

    −ELBO_t = −Σ_s log N(x_ts; μ_x, σ_x) − log p(y_t | y_<t) + log q(y_t)

with log q(y) = log q(z) − log|det ∂y/∂z| (the flows). The parts ``nll_x`` and
``kl`` (log q − log p) are logged. Under ``reference_quirks`` the prior term is left out,
as ``get_training_loss`` does (its log-joint is log p(x|z) alone).

**Optimisation**: one optimiser (``trainer.optimizer``; the recipe: Adam 1e-3), its LR
× ``lr_anneal_factor`` every ``lr_anneal_epochs`` epochs (the reference's 0.5 per 40
epochs, which never fires in its 10 epochs), and every gradient tensor clipped to norm
``clip_norm`` on its own (``tf.clip_by_norm`` per variable, not the global norm that
``trainer.grad_clip`` would clip). Validation monitors the same −ELBO (no gradients).

**Score** per step: the reconstruction negative log-likelihood of every step of the
window (the reference keeps only the window's last point; madbench's score convention
places each step's score and averages the windows covering it), averaged over the
``backbone.n_samples`` z samples::

    s_t = −log p(x_t | z) − S·log(√(2π)·ε_σ) = Σ_s [½((x − μ)/σ)² + log(σ/ε_σ)] ≥ 0

The constant shift (ε_σ = ``std_epsilon``, σ's floor, so each term is ≥ 0) changes no
ranking and no percentile threshold; it keeps the score non-negative, which a head's
multiplicative factor (MADCluster) and a max × factor threshold need. Residuals are
x − E[μ_x] over the samples (``scoring=m2ad`` works).
"""
from __future__ import annotations

import math

import torch
from torch.nn.utils import clip_grad_norm_

from madbench.errors import ConfigError
from madbench.objectives.base import Objective

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((y - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI


class OmniAnomalyObjective(Objective):
    requires = ("px_mean", "px_std", "log_q", "log_prior")
    horizon = 0
    has_residuals = True

    def __init__(self, clip_norm: float | None = 10.0, lr_anneal_epochs: int | None = 40,
                 lr_anneal_factor: float = 0.5, std_epsilon: float = 1e-4, reference_quirks: bool = False):
        super().__init__()
        if clip_norm is not None and not float(clip_norm) > 0:
            raise ConfigError(f"objective.clip_norm={clip_norm}; expected a positive norm or null")
        if lr_anneal_epochs is not None and (not isinstance(lr_anneal_epochs, int) or lr_anneal_epochs < 1):
            raise ConfigError(f"objective.lr_anneal_epochs={lr_anneal_epochs}; expected an integer >= 1 or null")
        if not 0.0 < float(lr_anneal_factor) <= 1.0:
            raise ConfigError(f"objective.lr_anneal_factor={lr_anneal_factor}; expected a factor in (0, 1]")
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.lr_anneal_epochs, self.lr_anneal_factor = lr_anneal_epochs, float(lr_anneal_factor)
        self.std_epsilon = float(std_epsilon)
        self.reference_quirks = bool(reference_quirks)

    def log_px(self, batch, out) -> torch.Tensor:
        """log p(x_t | z) summed over the sensors: [n, B, L]."""
        e = out.extras
        return gaussian_log_prob(batch["y"], e["px_mean"].float(), e["px_std"].float()).sum(-1)

    def loss(self, batch, out, ctx=None):
        e = out.extras
        log_px = self.log_px(batch, out)
        log_q = e["log_q"].float()
        log_prior = e["log_prior"].float()
        neg_elbo = -log_px + log_q if self.reference_quirks else -log_px - log_prior + log_q
        return {"loss": neg_elbo.mean(), "nll_x": -log_px.detach().mean(), "kl": (log_q - log_prior).detach().mean()}

    def score(self, batch, out):
        e = out.extras
        shift = -batch["y"].shape[-1] * math.log(math.sqrt(2 * math.pi) * self.std_epsilon)
        step = (-self.log_px(batch, out)).mean(0) + shift
        res = batch["y"] - e["px_mean"].float().mean(0)
        return step, res

    def configure_optimizers(self, detector, make) -> dict:
        opt = make(detector.free_parameters())
        if self.lr_anneal_epochs is None:
            return {"model": opt}
        return {"model": (opt, torch.optim.lr_scheduler.StepLR(opt, self.lr_anneal_epochs, self.lr_anneal_factor))}

    def training_step(self, detector, batch, ctx) -> dict:
        out = detector(batch["x"])
        losses = detector.total_loss(batch, out, ctx)
        ctx.backward(losses["loss"])
        if self.clip_norm is not None:
            # gradients are still scaled under fp16: clip at the scaled norm
            scale = ctx.scaler.get_scale() if ctx.scaler is not None else 1.0
            for p in detector.free_parameters():
                if p.grad is not None:
                    clip_grad_norm_([p], self.clip_norm * scale)
        ctx.step()
        return losses
