"""The fit and score stages: train a backbone with its objective, then score series.

The trainer owns epochs, early stopping on validation loss, the device, autocast and the
progress bar. Inference is always batched; scores are placed at the timestamps they
describe (a forecast at its target step, a reconstruction averaged over the windows that
cover a step) and steps no window describes stay NaN.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from madbench.data.windows import Windows
from madbench.errors import ConfigError, TrainingError
from madbench.scoring.base import SeriesScores

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16", "16")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU. Unknown or unavailable names are a
    ConfigError naming ``trainer.device``."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name!r}; only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.device={name!r} but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device={name!r}; expected auto, cpu, cuda, cuda:N or mps")
    return dev


class Trainer:
    def __init__(self, epochs: int = 35, batch_size: int = 32, patience: int = 10, val_ratio: float = 0.2,
                 device: str = "auto", precision: str = "32", optimizer=None, eval_batch_size: int = 1024,
                 grad_clip: float | None = None, progress: bool = True, inject_nan_loss: bool = False,
                 seed: int = 0):
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.patience = patience
        self.val_ratio = float(val_ratio)
        self.device = resolve_device(device)
        self.precision = str(precision)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision={precision!r}; expected one of {list(PRECISIONS)}")
        self.optimizer = optimizer or partial(torch.optim.Adam, lr=1e-3)
        self.eval_batch_size = int(eval_batch_size)
        self.grad_clip = grad_clip
        self.progress = progress
        self.inject_nan_loss = inject_nan_loss
        self.seed = seed

    # -- helpers -----------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda" and self.precision in ("bf16", "16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return nullcontext()

    def _batch(self, windows: Windows, idx, input_cols, sensor_cols) -> dict:
        return {"x": windows.inputs(idx, input_cols), "y": windows.targets(idx, sensor_cols)}

    # -- fit -------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, objective, windows: Windows, input_cols, sensor_cols,
            desc: str = "fit", on_epoch=None) -> list[dict]:
        """Train ``model``; returns the per-epoch history. Restores the best-validation
        weights. Raises TrainingError on a non-finite loss."""
        if self.precision != "32" and self.device.type != "cuda":
            log.warning("trainer.precision=%s applies on CUDA only; running fp32 on %s", self.precision, self.device)
        rng = np.random.default_rng(self.seed)
        model.to(self.device)
        input_cols = torch.as_tensor(input_cols, device=self.device)
        sensor_cols = torch.as_tensor(sensor_cols, device=self.device)
        tr_idx, va_idx = windows.split(self.val_ratio)
        if len(tr_idx) == 0:
            raise TrainingError(f"{desc}: no training windows (series shorter than window + target)")
        opt = self.optimizer(params=model.parameters())
        history: list[dict] = []
        best, best_state, stale = math.inf, None, 0
        use_scaler = self.device.type == "cuda" and self.precision == "16"
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            model.train()
            order = rng.permutation(tr_idx)
            total, n = 0.0, 0
            batches = range(0, len(order), self.batch_size)
            bar = tqdm(batches, desc=f"{desc} epoch {epoch + 1}/{self.epochs}", leave=False,
                       disable=not self.progress, unit="batch")
            for b in bar:
                idx = order[b:b + self.batch_size]
                batch = self._batch(windows, idx, input_cols, sensor_cols)
                with self._autocast():
                    out = model(batch["x"])
                    loss = objective.loss(batch, out)
                if self.inject_nan_loss:
                    loss = loss * float("nan")
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{desc}: non-finite training loss ({loss.item()}) at epoch {epoch + 1}, batch {b // self.batch_size + 1}; "
                        "lower the learning rate, check the inputs for extreme values, or use trainer.precision=32")
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                else:
                    loss.backward()
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                total += loss.item() * len(idx)
                n += len(idx)
                bar.set_postfix(loss=f"{total / n:.4g}", refresh=False)
            bar.close()
            train_loss = total / max(n, 1)
            val_loss = self._val_loss(model, objective, windows, va_idx, input_cols, sensor_cols) if len(va_idx) else float("nan")
            rec = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   "seconds": time.perf_counter() - t0}
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            monitor = val_loss if math.isfinite(val_loss) else train_loss
            if monitor < best:
                best, stale = monitor, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if self.patience is not None and stale >= self.patience:
                    log.info("%s: early stop at epoch %d (best %.4g)", desc, epoch + 1, best)
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        return history

    @torch.no_grad()
    def _val_loss(self, model, objective, windows, idx, input_cols, sensor_cols) -> float:
        model.eval()
        total = 0.0
        for b in range(0, len(idx), self.eval_batch_size):
            j = idx[b:b + self.eval_batch_size]
            batch = self._batch(windows, j, input_cols, sensor_cols)
            with self._autocast():
                out = model(batch["x"])
                total += objective.loss(batch, out).item() * len(j)
        return total / len(idx)

    # -- score -----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, model, objective, windows: Windows, input_cols, sensor_cols,
              desc: str = "score") -> list[SeriesScores]:
        """Score every window of ``windows`` and place the scores on the timestamps; one
        ``SeriesScores`` per series."""
        model.to(self.device).eval()
        dev = self.device
        input_cols = torch.as_tensor(input_cols, device=dev)
        sensor_cols = torch.as_tensor(sensor_cols, device=dev)
        total = int(windows.lengths.sum())
        n_s = len(sensor_cols)
        acc = torch.zeros(total, dtype=torch.float64, device=dev)
        cnt = torch.zeros(total, dtype=torch.float64, device=dev)
        acc_res = None
        win_scores = torch.empty(len(windows), dtype=torch.float64, device=dev)
        offsets = torch.as_tensor(windows.spec.score_offsets(), device=dev)
        idx_all = np.arange(len(windows))
        for b in tqdm(range(0, len(idx_all), self.eval_batch_size), desc=desc, leave=False,
                      disable=not self.progress, unit="batch"):
            j = idx_all[b:b + self.eval_batch_size]
            batch = self._batch(windows, j, input_cols, sensor_cols)
            with self._autocast():
                out = model(batch["x"])
            step, res = objective.score(batch, out)
            pos = (torch.as_tensor(windows.starts[j], device=dev)[:, None] + offsets[None, :]).reshape(-1)
            acc.index_add_(0, pos, step.double().reshape(-1))
            cnt.index_add_(0, pos, torch.ones_like(pos, dtype=torch.float64))
            if res is not None:
                if acc_res is None:
                    acc_res = torch.zeros(total, n_s, dtype=torch.float64, device=dev)
                acc_res.index_add_(0, pos, res.double().reshape(-1, n_s))
            win_scores[b:b + len(j)] = step.double().mean(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt_np = cnt.cpu().numpy()
            step_np = acc.cpu().numpy() / cnt_np
            res_np = acc_res.cpu().numpy() / cnt_np[:, None] if acc_res is not None else None
        win_np = win_scores.cpu().numpy()
        outs = []
        for i, (off, n) in enumerate(zip(windows.offsets, windows.lengths)):
            sl = slice(off, off + n)
            w = windows.series_id == i
            outs.append(SeriesScores(
                step=step_np[sl].copy(),
                residuals=None if res_np is None else res_np[sl].copy(),
                window=win_np[w],
                window_start=windows.local_start[w],
            ))
        return outs
