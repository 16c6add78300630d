"""The fit and score stages: train a Detector (backbone + objective + heads), then score
series.

The trainer owns epochs, early stopping on validation loss, the device, autocast and the
progress bar; the method's own steps are hooks of the Detector (madbench/detector.py).
Inference is always batched; scores are placed at the timestamps they describe (a
forecast at its target step, a window score averaged over the windows that cover a step)
and steps no window describes stay NaN.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from functools import partial

import numpy as np
import torch

from madbench.data.windows import Windows
from madbench.errors import ConfigError, TrainingError
from madbench.memory import (ALLOCATORS, bound_onednn_cache, bytes_per_window, check_onednn_cache, format_bytes,
                             parse_bytes, set_allocator)
from madbench.progress import Progress, check_every, heartbeat
from madbench.scoring.base import SeriesScores

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16", "16")
#: the most intra-op threads ``trainer.num_threads=auto`` gives one job. The harness's
#: models are small (LSTMs at batch 32-64): scripts/bench_threads.py measures where more
#: threads stop paying (the table is in README.md, "CPU threads").
AUTO_THREADS_CAP = 4
#: environment variables that say how many jobs share this machine's cores: the sweep
#: callback sets the first for joblib and submitit_local sweeps; pytest-xdist sets the second
CONCURRENCY_VARS = ("MADBENCH_CONCURRENT_JOBS", "PYTEST_XDIST_WORKER_COUNT")


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a cgroup/taskset limit), and
    SLURM's ``cpus_per_task`` when the job runs under SLURM."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        n = min(n, int(slurm))
    return max(n, 1)


def concurrent_jobs() -> int:
    """How many jobs (this one included) train on this machine at once: the product of the
    counts in ``CONCURRENCY_VARS`` (e.g. 2 xdist workers, each running a 2-job sweep)."""
    n = 1
    for var in CONCURRENCY_VARS:
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            n *= int(v)
    return n


def machine_load() -> float:
    """The 1-minute load average per CPU of the whole machine (0 where unknown)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return 0.0


def resolve_num_threads(value="auto") -> tuple[int, str]:
    """``trainer.num_threads`` → (threads, why). ``auto``: the cores this process may use
    divided by the jobs that run at once here, at least 1 and at most
    ``AUTO_THREADS_CAP``; and 1 when the machine has no idle CPU already (load average >=
    its CPUs): threads that wait for each other on CPUs other processes hold stall (on 2
    busy cores, 2 threads made an LSTM epoch 13x slower than 1). An integer >= 1 is used
    as given."""
    if isinstance(value, str) and value == "auto":
        cores, jobs = available_cores(), concurrent_jobs()
        n = max(1, min(AUTO_THREADS_CAP, cores // jobs))
        why = f"auto: {cores} core(s) / {jobs} concurrent job(s), at most {AUTO_THREADS_CAP}"
        load = machine_load()
        if n > 1 and load >= 1.0:
            n, why = 1, f"auto: the machine is busy (load average {load:.1f} per CPU)"
        return n, why
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"trainer.num_threads={value!r}; expected auto or an integer >= 1")
    return int(value), "set by trainer.num_threads"


def resolve_deterministic(value, device: torch.device) -> bool:
    """``trainer.deterministic`` → whether the job runs torch's deterministic algorithms.
    ``auto``: on the CPU, where they cost little and make one seed give identical scores;
    off on CUDA and MPS, where they slow cuDNN down. ``true``/``false`` force it."""
    if isinstance(value, str) and value == "auto":
        return device.type == "cpu"
    if not isinstance(value, bool):
        raise ConfigError(f"trainer.deterministic={value!r}; expected auto, true or false")
    return value


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a progress bar: True when ``progress`` is off, else None, which
    tqdm reads as "only on a terminal": per-batch lines never flood a log file (SLURM
    output, ``make run > log``)."""
    return None if progress else True


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
    """Owns epochs, the device, mixed precision, gradient clipping, the non-finite-loss
    check, early stopping, the best-state restore and the progress bar. It names no
    method: everything method-specific is a hook of the Detector's objective and heads."""

    def __init__(self, epochs: int = 35, batch_size: int = 32, patience: int = 10, val_ratio: float = 0.2,
                 device: str = "auto", precision: str = "32", optimizer=None, eval_batch_size: int | None = None,
                 grad_clip: float | None = None, progress: bool = True, inject_nan_loss: bool = False,
                 seed: int = 0, min_delta: float = 0.0, lr_decay: float | None = None,
                 compile: bool | str = False, num_threads: int | str = "auto",
                 eval_batch_bytes: int | str = "128MiB", allocator: str = "reuse", log_every_s: float | None = 30.0,
                 deterministic: bool | str = "auto", onednn_cache: int | None = None):
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.patience = patience
        self.val_ratio = float(val_ratio)
        self.device = resolve_device(device)
        #: whether the fit runs torch's deterministic algorithms (``trainer.deterministic``
        #: resolved on this trainer's device; set when the fit seeds the generators)
        self.deterministic = resolve_deterministic(deterministic, self.device)
        self.precision = str(precision)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision={precision!r}; expected one of {list(PRECISIONS)}")
        self.optimizer = optimizer or partial(torch.optim.Adam, lr=1e-3)
        if eval_batch_size is not None and (isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int)
                                            or eval_batch_size < 1):
            raise ConfigError(f"trainer.eval_batch_size={eval_batch_size!r}; expected an integer >= 1 or null "
                              "(null: batches of trainer.eval_batch_bytes)")
        self.eval_batch_size = eval_batch_size
        self.eval_batch_bytes = parse_bytes(eval_batch_bytes, "trainer.eval_batch_bytes")
        if allocator not in ALLOCATORS:
            raise ConfigError(f"trainer.allocator={allocator!r}; expected one of {list(ALLOCATORS)}")
        self.allocator = allocator
        self.onednn_cache = check_onednn_cache(onednn_cache)
        self._allocator_note: str | None = None
        self._eval_windows: dict[tuple, int] = {}
        self.grad_clip = grad_clip
        self.progress = progress
        #: in a log (no terminal), a progress line at most this often per long stage
        self.log_every_s = check_every(log_every_s)
        self.inject_nan_loss = inject_nan_loss
        self.seed = seed
        self.min_delta = float(min_delta)
        if lr_decay is not None and not 0.0 < float(lr_decay) <= 1.0:
            raise ConfigError(f"trainer.lr_decay={lr_decay}; expected a factor in (0, 1] or null")
        self.lr_decay = lr_decay
        self.compile = _compile_backend(compile)
        resolve_num_threads(num_threads)  # a bad value is refused here, not at fit time
        self.num_threads = num_threads
        self._threads: int | None = None

    def set_threads(self) -> int:
        """Set torch's intra-op threads from ``trainer.num_threads`` once (the first fit or
        score of this trainer, i.e. once per job) and log the choice."""
        if self._threads is None:
            n, why = resolve_num_threads(self.num_threads)
            torch.set_num_threads(n)
            self._threads = n
            log.info("trainer: %d CPU thread(s) (%s)", n, why)
        if self._allocator_note is None:   # once per job, before the first big allocations
            self._allocator_note = f"{set_allocator(self.allocator)}; {bound_onednn_cache(self.onednn_cache)}"
        return self._threads

    def eval_windows(self, detector, windows: Windows, input_cols, sensor_cols, score: bool = True) -> int:
        """Windows per batch of the passes without gradients (validation, scoring, the hooks'
        passes): ``trainer.eval_batch_size`` when set; else ``trainer.eval_batch_bytes`` over
        the activation bytes of one window of this detector's forward and score, measured
        once per architecture (madbench/memory.py); of its forward alone where the objective
        cannot score yet (``score=False``: the passes of ``on_fit_start``, which set what
        scoring needs, e.g. the Deep SVDD centre). The choice and the allocator are logged
        once per architecture."""
        if self.eval_batch_size is not None:
            key, n, why = ("set",), self.eval_batch_size, "trainer.eval_batch_size"
        else:
            key = (tuple((k, tuple(p.shape), p.dtype) for k, p in detector.named_parameters()), score,
                   windows.spec.window, len(input_cols), len(sensor_cols), detector.autocast, self.device.type)
            if key in self._eval_windows:
                return self._eval_windows[key]
            per = bytes_per_window(detector, lambda k: self.batch(windows, np.arange(k), input_cols, sensor_cols),
                                   len(windows), score)
            n = max(1, self.eval_batch_bytes // per)
            why = (f"trainer.eval_batch_bytes {format_bytes(self.eval_batch_bytes)} / {format_bytes(per)} per "
                   f"window of {'forward and score' if score else 'forward'}, measured")
        if key not in self._eval_windows:
            self._eval_windows[key] = n
            log.info("trainer: eval batches of %d window(s) (%s); allocator: %s", n, why,
                     self._allocator_note or "not set yet")
        return n

    # -- helpers -----------------------------------------------------------------------
    def _autocast_spec(self):
        if self.device.type == "cuda" and self.precision in ("bf16", "16"):
            return ("cuda", torch.bfloat16 if self.precision == "bf16" else torch.float16)
        return None

    def _compiled(self, detector) -> None:
        """``trainer.compile``: torch.compile the backbone in place (its state_dict keys stay
        as they are), once."""
        if self.compile and getattr(detector.backbone, "_madbench_compiled", None) != self.compile:
            detector.backbone.compile(backend=self.compile)
            detector.backbone._madbench_compiled = self.compile

    def batch(self, windows: Windows, idx, input_cols, sensor_cols) -> dict:
        x = windows.inputs(idx, input_cols)
        if not windows.spec.horizon and self._sensors_lead(input_cols, sensor_cols):
            # a reconstruction's target is the sensors' part of its input window (the inputs are
            # sensors then covariates): a view of x, not a second gather of the same windows
            return {"x": x, "y": x[..., :len(sensor_cols)]}
        return {"x": x, "y": windows.targets(idx, sensor_cols)}

    def _sensors_lead(self, input_cols, sensor_cols) -> bool:
        """Whether ``sensor_cols`` are the first input columns (checked once per pair of
        column objects: every batch of a fit passes the same ones)."""
        checked = getattr(self, "_lead_checked", None)
        if checked is not None and checked[0] is input_cols and checked[1] is sensor_cols:
            return checked[2]
        ins, sens = torch.as_tensor(input_cols).cpu(), torch.as_tensor(sensor_cols).cpu()
        ok = len(sens) <= len(ins) and bool(torch.equal(ins[:len(sens)], sens))
        self._lead_checked = (input_cols, sensor_cols, ok)
        return ok

    def make_optimizer(self, params):
        return self.optimizer(params=list(params))

    def _optimizers(self, detector, ctx) -> None:
        ctx.optimizers, ctx.schedulers = detector.configure_optimizers(self.make_optimizer, self.lr_decay)

    # -- fit -------------------------------------------------------------------------------
    def fit(self, detector, windows: Windows, input_cols, sensor_cols, desc: str = "fit", on_epoch=None) -> list[dict]:
        """Train ``detector`` (a :class:`madbench.detector.Detector`); returns the per-epoch
        history. Restores the whole Detector's best-validation state. Raises TrainingError
        on a non-finite loss."""
        from madbench.detector import FitContext

        if self.precision != "32" and self.device.type != "cuda":
            log.warning("trainer.precision=%s applies on CUDA only; running fp32 on %s", self.precision, self.device)
        self.set_threads()
        rng = np.random.default_rng(self.seed)
        detector.to(self.device)
        detector.autocast = self._autocast_spec()
        self._compiled(detector)
        input_cols = torch.as_tensor(input_cols, device=self.device)
        sensor_cols = torch.as_tensor(sensor_cols, device=self.device)
        tr_idx, va_idx = windows.split(self.val_ratio)
        if len(tr_idx) == 0:
            raise TrainingError(f"{desc}: no training windows (series shorter than window + target)")
        ctx = FitContext(self, detector, windows, tr_idx, va_idx, input_cols, sensor_cols, desc)
        if self.device.type == "cuda" and self.precision == "16":
            ctx.scaler = torch.amp.GradScaler("cuda")
        detector.train()
        with heartbeat(f"{desc}: on_fit_start", self.log_every_s):  # e.g. a centre or a baseline from a pass over train
            detector.on_fit_start(ctx)
        if not detector.trains_by_gradient:
            # everything was fitted in on_fit_start (a baseline's statistics): no epochs
            log.info("%s: no parameter to train by gradient descent; fitted in one pass, no epochs", desc)
            return []
        if self.epochs == 0:  # a deliberate floor: the initial weights; the result rows say trained=false
            log.warning("%s: trainer.epochs=0: no epoch; the detector is scored with its initial weights "
                        "(result rows: trained=false)", desc)
        self._optimizers(detector, ctx)
        history: list[dict] = []
        best, best_state, stale = math.inf, None, 0
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            ctx.epoch, ctx.stage, ctx.logged = epoch, "train", {}
            detector.train()
            order = rng.permutation(tr_idx)
            sums, n = {}, 0
            batches = range(0, len(order), self.batch_size)
            bar = Progress(batches, f"{desc} epoch {epoch}/{self.epochs}", bar=self.progress, every_s=self.log_every_s)
            for i, b in enumerate(bar, start=1):
                idx = order[b:b + self.batch_size]
                ctx.batch_index, ctx._stepped = i, False
                losses = detector.training_step(self.batch(windows, idx, input_cols, sensor_cols), ctx)
                if ctx.scaler is not None and ctx._stepped:
                    ctx.scaler.update()
                _accumulate(sums, losses, len(idx))
                n += len(idx)
                bar.set_postfix(loss=f"{sums['loss'] / n:.4g}")
            bar.close()
            train = {k: v / max(n, 1) for k, v in sums.items()}
            ctx.stage = "val"
            val = self._validate(detector, windows, va_idx, input_cols, sensor_cols, ctx) if len(va_idx) else {}
            ctx.stage = "epoch_end"
            detector.on_epoch_end(ctx)
            for name, opt in ctx.optimizers.items():
                ctx.logged.setdefault(f"lr_{name}", opt.param_groups[0]["lr"])
            for sched in ctx.schedulers.values():
                sched.step()
            val_loss = val.get("loss", float("nan"))
            rec = {"epoch": epoch, "train_loss": train["loss"], "val_loss": val_loss,
                   "seconds": time.perf_counter() - t0}
            rec.update({f"train_{k}": v for k, v in train.items() if k != "loss"})
            rec.update({f"val_{k}": v for k, v in val.items() if k != "loss"})
            rec.update(ctx.logged)
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            monitor = val_loss if math.isfinite(val_loss) else train["loss"]
            if monitor < best - self.min_delta:
                best, stale = monitor, 0
                best_state = copy.deepcopy(detector.state_dict())
            else:
                stale += 1
                if self.patience is not None and stale >= self.patience:
                    log.info("%s: early stop at epoch %d (best %.4g)", desc, epoch, best)
                    break
        if best_state is not None:
            detector.load_state_dict(best_state)
        return history

    @torch.no_grad()
    def _validate(self, detector, windows, idx, input_cols, sensor_cols, ctx) -> dict:
        detector.eval()
        sums = {}
        size = self.eval_windows(detector, windows, input_cols, sensor_cols)
        for b in Progress(range(0, len(idx), size), f"{ctx.desc} epoch {ctx.epoch} validation", bar=False,
                          every_s=self.log_every_s):
            j = idx[b:b + size]
            ctx.batch_index = b // size + 1
            _accumulate(sums, detector.validation_step(self.batch(windows, j, input_cols, sensor_cols), ctx), len(j))
        return {k: v / len(idx) for k, v in sums.items()}

    # -- score -----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, detector, windows: Windows, input_cols, sensor_cols, desc: str = "score") -> list[SeriesScores]:
        """Score every window of ``windows`` and place the scores on the timestamps; one
        ``SeriesScores`` per series. Every part of the score (``Detector.score``: the
        objective's score, a head's factors, their product) is placed on its own, so the
        final score (``head.score``) can be chosen again from them: a product of placed
        parts is not the placed product."""
        self.set_threads()
        detector.to(self.device).eval()
        detector.autocast = self._autocast_spec()
        self._compiled(detector)
        dev = self.device
        input_cols = torch.as_tensor(input_cols, device=dev)
        sensor_cols = torch.as_tensor(sensor_cols, device=dev)
        total = int(windows.lengths.sum())
        n_s = len(sensor_cols)
        cnt = torch.zeros(total, dtype=torch.float64, device=dev)
        acc: dict[str, torch.Tensor] = {}   # part → [total] sums over the windows covering a step
        win: dict[str, torch.Tensor] = {}   # part → [N] window scores (mean over the window's steps)
        acc_res = None
        offsets = torch.as_tensor(windows.spec.score_offsets(), device=dev)
        idx_all = np.arange(len(windows))
        size = self.eval_windows(detector, windows, input_cols, sensor_cols)
        for b in Progress(range(0, len(idx_all), size), desc, bar=self.progress, every_s=self.log_every_s):
            j = idx_all[b:b + size]
            batch = self.batch(windows, j, input_cols, sensor_cols)
            out = detector(batch["x"])
            _, res, parts = detector.score(batch, out)
            pos = (torch.as_tensor(windows.starts[j], device=dev)[:, None] + offsets[None, :]).reshape(-1)
            cnt.index_add_(0, pos, torch.ones_like(pos, dtype=torch.float64))
            for name, part in parts.items():
                if name not in acc:
                    acc[name] = torch.zeros(total, dtype=torch.float64, device=dev)
                    win[name] = torch.empty(len(windows), dtype=torch.float64, device=dev)
                part = part.double()
                acc[name].index_add_(0, pos, part.reshape(-1))
                win[name][b:b + len(j)] = part.mean(1)
            if res is not None:
                if acc_res is None:
                    acc_res = torch.zeros(total, n_s, dtype=torch.float64, device=dev)
                acc_res.index_add_(0, pos, res.double().reshape(-1, n_s))
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt_np = cnt.cpu().numpy()
            placed = {name: a.cpu().numpy() / cnt_np for name, a in acc.items()}
            res_np = acc_res.cpu().numpy() / cnt_np[:, None] if acc_res is not None else None
        win_np = {name: w.cpu().numpy() for name, w in win.items()}
        mode = detector.score_mode
        outs = []
        for i, (off, n) in enumerate(zip(windows.offsets, windows.lengths)):
            sl = slice(off, off + n)
            w = windows.series_id == i
            comps = {name: p[sl].copy() for name, p in placed.items()}
            win_comps = {name: v[w] for name, v in win_np.items()}
            outs.append(SeriesScores(
                step=comps[mode],
                residuals=None if res_np is None else res_np[sl].copy(),
                window=win_comps[mode],
                window_start=windows.local_start[w],
                factor=comps.get("head"),
                offsets=windows.spec.score_offsets(),
                components=comps,
                window_components=win_comps,
                score_mode=mode,
            ))
        return outs


def _compile_backend(value) -> str | None:
    """``trainer.compile``: false → None, true → ``inductor``, or a torch.compile backend name."""
    if value is None or value is False:
        return None
    if value is True:
        return "inductor"
    if not isinstance(value, str) or value not in torch.compiler.list_backends(exclude_tags=()):
        raise ConfigError(f"trainer.compile={value!r}; expected true, false or a torch.compile backend "
                          f"({', '.join(torch.compiler.list_backends())}, ...)")
    return value


def _accumulate(sums: dict, losses: dict, n: int) -> None:
    """Batch-size-weighted sums of every loss part (tensors or floats)."""
    for k, v in losses.items():
        v = v.detach().float().item() if isinstance(v, torch.Tensor) else float(v)
        sums[k] = sums.get(k, 0.0) + v * n
