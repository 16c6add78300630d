"""The Detector (backbone + objective + heads) and the FitContext the Trainer hands to it.

One Detector per entity (or pooled group). One ``.to(device)`` and one ``state_dict()``
cover the backbone, the objective's state (a Deep SVDD centre, a radius) and every head
(MADCluster's centre, ν, R), so early stopping restores all of it at once. The Trainer
drives epochs and calls only the hooks below; everything method-specific lives in the
objective and the heads (ARCHITECTURE.md, "The training contract").
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from madbench.config import build, node_without
from madbench.errors import ConfigError, TrainingError
from madbench.heads.base import SCORE_MODES, check_score_mode
from madbench.objectives.base import as_loss_dict


class Detector(nn.Module):
    def __init__(self, backbone: nn.Module, objective: nn.Module, heads=(), score: str | None = None):
        super().__init__()
        self.backbone = backbone
        self.objective = objective
        self.heads = nn.ModuleList(heads)
        #: which score part is the final score (``head.score``; see :meth:`score`)
        self.score_mode = final_score_part(self.heads, score)
        if hasattr(backbone, "needs_embedding"):  # a backbone may skip its embedding when nothing reads it
            backbone.needs_embedding = bool(len(self.heads)) or "embedding" in getattr(objective, "requires", ())
        #: (device_type, dtype) for autocast in the forward pass; set by the Trainer
        self.autocast: tuple[str, torch.dtype] | None = None

    def forward(self, x: torch.Tensor):
        ctx = torch.autocast(self.autocast[0], dtype=self.autocast[1]) if self.autocast else nullcontext()
        with ctx:
            return self.backbone(x)

    # -- losses -------------------------------------------------------------------------------
    def head_loss(self, out, ctx=None) -> dict:
        """The heads' summed loss (``loss``) and their named parts (``<head>_<part>``)."""
        total, parts = None, {}
        for head in self.heads:
            d = as_loss_dict(head.loss(out, ctx))
            total = d["loss"] if total is None else total + d["loss"]
            parts.update({f"{head.name}_{k}": v for k, v in d.items() if k != "loss"})
        return {"loss": total, **parts} if total is not None else {}

    def total_loss(self, batch: dict, out, ctx=None) -> dict:
        """Objective loss + heads' loss, with every named part kept for the logs."""
        d = dict(as_loss_dict(self.objective.loss(batch, out, ctx)))
        h = self.head_loss(out, ctx)
        if h:
            d["objective_loss"] = d["loss"]
            d["loss"] = d["loss"] + h.pop("loss")
            d.update(h)
        return d

    # -- the hooks the Trainer calls ------------------------------------------------------------
    def training_step(self, batch: dict, ctx) -> dict:
        return self.objective.training_step(self, batch, ctx)

    @torch.no_grad()
    def validation_step(self, batch: dict, ctx) -> dict:
        return self.objective.validation_step(self, batch, ctx)

    def configure_optimizers(self, make, lr_decay: float | None = None) -> tuple[dict, dict]:
        """Named optimisers and their per-epoch schedulers: the heads' own first (they
        claim their parameters), then the objective's over the rest; ``lr_decay``
        (``trainer.lr_decay``) then the heads' schedules go on the objective's optimisers
        that have none."""
        optimizers, schedulers = {}, {}
        for head in self.heads:
            for name, opt in head.configure_optimizers(self).items():
                optimizers[f"{head.name}_{name}"] = opt
        self._claimed = {id(p) for o in optimizers.values() for g in o.param_groups for p in g["params"]}
        own = {}
        for name, value in self.objective.configure_optimizers(self, make).items():
            opt, sched = value if isinstance(value, tuple) else (value, None)
            own[name] = opt
            if sched is not None:
                schedulers[name] = sched
        if lr_decay is not None:
            for name, opt in own.items():
                schedulers.setdefault(name, torch.optim.lr_scheduler.ExponentialLR(opt, float(lr_decay)))
        for head in self.heads:
            head.configure_schedulers(own, schedulers)
        return own | optimizers, schedulers

    def free_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter that no head optimises on its own."""
        claimed = getattr(self, "_claimed", set())
        return [p for p in self.parameters() if p.requires_grad and id(p) not in claimed]

    def head_parameters(self) -> list[nn.Parameter]:
        """The heads' parameters that join an objective's optimiser (for objectives with
        several optimisers: they go to the one whose pass carries the head loss)."""
        claimed = getattr(self, "_claimed", set())
        return [p for p in self.heads.parameters() if p.requires_grad and id(p) not in claimed]

    @property
    def trains_by_gradient(self) -> bool:
        """Whether any parameter is left to train once ``on_fit_start`` has run: a
        detector whose statistics are all fitted there (a baseline's train mean, a PCA)
        has none, and the Trainer skips its epoch loop."""
        return any(p.requires_grad for p in self.parameters())

    def on_fit_start(self, ctx) -> None:
        # a backbone may fit statistics of its own before training (the baselines do, and
        # then have nothing to train)
        hook = getattr(self.backbone, "on_fit_start", None)
        if hook is not None:
            hook(ctx)
        self.objective.on_fit_start(self, ctx)
        for head in self.heads:
            head.on_fit_start(self, ctx)

    def on_epoch_end(self, ctx) -> None:
        self.objective.on_epoch_end(self, ctx)
        for head in self.heads:
            head.on_epoch_end(self, ctx)

    # -- scoring --------------------------------------------------------------------------------
    def score(self, batch: dict, out):
        """(step [B, K], residuals [B, K, S] | None, parts {name: [B, K]}).

        ``parts`` holds every score the detector can give, each on the window's K scored
        steps: ``backbone`` (the objective's step score), and with a head ``head`` (the
        heads' score factors multiplied: one value per window, on each of its K steps),
        ``product`` (backbone × head: the MADCluster reference's score) and the heads' named
        factors (MADCluster: ``d``, ``f``, ``df``). ``step`` is ``parts[self.score_mode]``
        (``head.score``). The score stage places every part on the timestamps, so the final
        score can be chosen again afterwards from the placed parts
        (``SeriesScores.select``)."""
        step, res = self.objective.score(batch, out)
        parts = {"backbone": step}
        factor = None
        for head in self.heads:
            for name, f in head.score_factors(out).items():
                f = f.reshape(len(f), *([1] * (step.dim() - 1)))
                if name == "head":
                    factor = f if factor is None else factor * f
                elif name in parts or name in SCORE_MODES:
                    raise ValueError(f"head={head.name} gives a score factor {name!r} that another part already has")
                else:
                    parts[name] = f.expand_as(step)
        if factor is not None:
            parts["head"] = factor.expand_as(step)
            parts["product"] = step * factor
        return parts[self.score_mode], res, parts


def build_objective(cfg):
    """The objective from its whole config node (``_target_`` + its parameters)."""
    return build(node_without(cfg.objective, "name"), f"objective={cfg.objective.name}")


def build_heads(cfg) -> list:
    """The configured heads (``head=none``: no head)."""
    head = cfg.get("head") or {}
    if "_target_" not in head:
        return []
    return [build(node_without(head), f"head={head.name}")]


def build_detector(cfg, n_inputs: int, n_sensors: int, window: int) -> Detector:
    """A fresh (untrained) Detector of a composed config, for ``n_inputs`` input columns
    (sensors then covariates), ``n_sensors`` modelled columns and ``window`` steps."""
    model = build(cfg.backbone.model, f"backbone={cfg.backbone.name}")(
        n_inputs=n_inputs, n_outputs=n_sensors, window=window)
    return Detector(model, build_objective(cfg), build_heads(cfg))


def final_score_part(heads, score: str | None = None) -> str:
    """The final score's part name: ``score`` when given, else the heads' own ``score``
    choice (``head.score``), else ``backbone``. A part the heads cannot give is a one-line
    ConfigError naming ``head.score``."""
    chosen = {str(h.score) for h in heads if getattr(h, "score", None)}
    if score is None:
        if len(chosen) > 1:
            raise ConfigError(f"head.score: the heads choose different final scores {sorted(chosen)}")
        score = chosen.pop() if chosen else "backbone"
    check_score_mode(score, [n for h in heads for n in h.score_names()], "none" if not heads else
                     ",".join(h.name for h in heads))
    return score


class FitContext:
    """What the Trainer hands to the hooks: the epoch, the optimisers, an AMP-aware
    ``backward``/``step``, passes over the data, and a per-epoch log."""

    def __init__(self, trainer, detector: Detector, windows, train_idx, val_idx, input_cols, sensor_cols,
                 desc: str = "fit"):
        self.trainer, self.detector, self.windows = trainer, detector, windows
        self.train_idx, self.val_idx = train_idx, val_idx
        self.input_cols, self.sensor_cols = input_cols, sensor_cols
        self.desc = desc
        self.device = trainer.device
        self.epoch = 0           # 1-based while training; 0 in on_fit_start
        self.n_epochs = trainer.epochs
        self.batch_index = 0     # 1-based within the epoch
        self.stage = "fit_start"  # fit_start | train | val | epoch_end
        self.optimizers: dict = {}
        self.schedulers: dict = {}
        self.scaler = None
        self.logged: dict[str, float] = {}
        self._stepped = False

    # -- optimisation -------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """Backward of ``loss`` (scaled under fp16); a non-finite loss is a TrainingError."""
        if self.trainer.inject_nan_loss:
            loss = loss * float("nan")
        if not torch.isfinite(loss.detach()):
            raise TrainingError(
                f"{self.desc}: non-finite training loss ({loss.item()}) at epoch {self.epoch}, batch {self.batch_index}; "
                "lower the learning rate, check the inputs for extreme values, or use trainer.precision=32")
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(retain_graph=retain_graph)

    def _names(self, names) -> list[str]:
        unknown = [n for n in names if n not in self.optimizers]
        if unknown:
            raise KeyError(f"no optimiser named {unknown}; configured: {list(self.optimizers)}")
        return list(names) or list(self.optimizers)

    def step(self, *names: str) -> None:
        """Unscale, clip, step and zero the gradients of the named optimisers (all when
        none is named). Gradients of parameters outside them are left as they are."""
        for name in self._names(names):
            opt = self.optimizers[name]
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if not params:
                continue
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            if self.trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.trainer.grad_clip)
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            self._stepped = True

    def zero_grad(self, *names: str) -> None:
        """Zero the gradients of the named optimisers (all when none is named)."""
        for name in self._names(names):
            self.optimizers[name].zero_grad(set_to_none=True)

    # -- passes over the data ---------------------------------------------------------------------
    def split_indices(self, split: str) -> np.ndarray:
        if split == "train":
            return self.train_idx
        if split == "val":
            return self.val_idx
        if split == "all":
            return np.concatenate([self.train_idx, self.val_idx])
        raise ValueError(f"split={split!r}; expected train, val or all")

    def batches(self, split: str = "train", batch_size: int | None = None, shuffle: bool = False, rng=None):
        """Batches (dicts with ``x`` and ``y``) over the training or validation windows."""
        idx = self.split_indices(split)
        if shuffle:
            idx = (rng or np.random.default_rng(self.trainer.seed)).permutation(idx)
        bs = batch_size or self.trainer.eval_windows(self.detector, self.windows, self.input_cols, self.sensor_cols,
                                                     score=self.stage != "fit_start")
        for b in range(0, len(idx), bs):
            yield self.trainer.batch(self.windows, idx[b:b + bs], self.input_cols, self.sensor_cols)

    def rows(self, split: str = "train") -> torch.Tensor:
        """[n, D_in] the input columns of every series step the split's windows read, each
        step once (however many windows cover it): statistics fitted in one pass (the
        baselines') weigh every training step alike."""
        w = self.windows
        steps = np.unique((w.starts[self.split_indices(split)][:, None] + np.arange(w.spec.window)[None, :]).ravel())
        return w.base[torch.as_tensor(steps, device=w.base.device)][:, self.input_cols]

    @torch.no_grad()
    def outputs(self, split: str = "train", batch_size: int | None = None):
        """(batch, BackboneOutput) over a split, in eval mode (dropout off, BatchNorm frozen);
        the Detector's mode is restored afterwards."""
        was = self.detector.training
        self.detector.eval()
        try:
            for batch in self.batches(split, batch_size):
                yield batch, self.detector(batch["x"])
        finally:
            self.detector.train(was)

    @torch.no_grad()
    def sample(self, n: int = 2):
        """The BackboneOutput of the first ``n`` training windows (eval mode): enough to
        learn a shape, e.g. the embedding's width."""
        was = self.detector.training
        self.detector.eval()
        try:
            batch = self.trainer.batch(self.windows, self.train_idx[:n], self.input_cols, self.sensor_cols)
            return self.detector(batch["x"])
        finally:
            self.detector.train(was)

    def embeddings(self, split: str = "train", batch_size: int | None = None):
        """The backbone's ``embedding`` [B, L, d] over a split, batch by batch (eval mode)."""
        for _, out in self.outputs(split, batch_size):
            yield out.embedding.float()

    # -- logging ----------------------------------------------------------------------------------
    def log(self, name: str, value) -> None:
        """A per-epoch value (ν, R, a temperature, ...) for train_log.csv and W&B."""
        if isinstance(value, torch.Tensor):
            value = value.detach().float().mean().item()
        self.logged[name] = float(value)


def check_composition(cfg, objective) -> None:
    """What a composed config trains and scores, refused with one line naming the key:
    ``head.score`` without the part it names (``head.score=head`` with ``head=none``; a
    head's own parts are checked by the head), and an ``objective`` without a loss
    (``objective`` class ``has_loss=False``) with no head on a backbone that is not a
    baseline: nothing would train it. ``objective`` is the objective's class."""
    head = cfg.get("head") or {}
    has_head = head.get("name", "none") != "none"
    if not objective.has_loss and not has_head and not cfg.backbone.get("baseline", False):
        natural = " or ".join(cfg.backbone.get("objectives") or [])
        raise ConfigError(f"objective={cfg.objective.name} has no loss and head=none adds none: nothing would train "
                          f"backbone={cfg.backbone.name}; add a head (e.g. head=clustering_only)"
                          + (f" or use objective={natural}" if natural else ""))
    if not has_head:
        check_score_mode(str(head.get("score", "backbone")), (), "none")
