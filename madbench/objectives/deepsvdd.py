"""Deep SVDD objectives (Ruff et al. 2018) on a window representation ``z`` (``rep``).

- ``one_class``: loss = mean ‖z − c‖². The centre c is set once, before epoch 1, from one
  no-grad pass over the training windows: the mean of z, with every coordinate within
  ±eps of 0 pushed out to ±eps, keeping its sign (DeepOD's and Ruff's rule). c is never
  trained (a buffer, saved and restored with the Detector).
- ``soft_boundary``: loss = R² + (1/ν)·mean(max(0, ‖z − c‖² − R²)); after ``warmup``
  epochs R is re-set after every mini-batch to the (1 − ν) quantile of √d over that
  batch (Ruff's trainer).

The score of a window is d = ‖z − c‖², given to every step of the window (the score
convention averages it over the windows covering a step; DeepOD gives it to the last
step only and pads the first L − 1 steps with zeros). Ruff's soft-boundary score is
d − R²: with one R per model that is a shift, which no protocol's ranking or
quantile/percentile threshold sees, and d stays positive, which a head's multiplicative
score factor needs. There are no per-sensor residuals (``scoring=m2ad`` is refused).
"""
from __future__ import annotations

import torch

from madbench.errors import ConfigError
from madbench.objectives.base import Objective


def pushed_from_zero(c: torch.Tensor, eps: float) -> torch.Tensor:
    """Coordinates with |c| < eps set to ±eps, keeping their sign (exact zeros stay, as in
    DeepOD's and Ruff's code)."""
    c = c.clone()
    small = c.abs() < eps
    c[small & (c < 0)] = -eps
    c[small & (c > 0)] = eps
    return c


class OneClassObjective(Objective):
    requires = ("rep",)
    horizon = 0
    has_residuals = False

    def __init__(self, eps: float = 0.1):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("c", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # c is set in on_fit_start: a fresh objective takes it from the state
        if self.c is None and prefix + "c" in state_dict:
            self.c = torch.empty_like(state_dict[prefix + "c"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def distance(self, out) -> torch.Tensor:
        if self.c is None:
            raise RuntimeError("the Deep SVDD centre is set in on_fit_start; fit the detector first")
        return ((out.extras["rep"].float() - self.c) ** 2).sum(-1)

    @torch.no_grad()
    def on_fit_start(self, detector, ctx) -> None:
        total, n = None, 0
        for _, out in ctx.outputs("train"):
            z = out.extras["rep"].float()
            total = z.sum(0) if total is None else total + z.sum(0)
            n += len(z)
        self.c = pushed_from_zero(total / n, self.eps)

    def loss(self, batch, out, ctx=None):
        return self.distance(out).mean()

    def score(self, batch, out):
        d = self.distance(out)
        return d[:, None].expand(-1, batch["x"].shape[1]), None


class SoftBoundaryObjective(OneClassObjective):
    def __init__(self, nu: float = 0.1, warmup: int = 10, eps: float = 0.1):
        super().__init__(eps=eps)
        if not 0.0 < float(nu) <= 1.0:
            raise ConfigError(f"objective.nu={nu}; expected a fraction in (0, 1]")
        self.nu, self.warmup = float(nu), int(warmup)
        self.register_buffer("R", torch.zeros(()))

    def loss(self, batch, out, ctx=None):
        d = self.distance(out)
        r2 = self.R ** 2
        return {"loss": r2 + torch.clamp(d - r2, min=0).mean() / self.nu, "R": self.R.detach().clone()}

    def training_step(self, detector, batch, ctx) -> dict:
        out = detector(batch["x"])
        losses = detector.total_loss(batch, out, ctx)
        ctx.backward(losses["loss"])
        ctx.step()
        if ctx.epoch > self.warmup:  # Ruff: R from this batch's distances, after the warm-up epochs
            with torch.no_grad():
                d = self.distance(out).detach().sqrt()
                self.R.copy_(torch.quantile(d, 1 - self.nu))
        return losses
