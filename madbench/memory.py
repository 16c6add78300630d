"""Memory for the evaluation passes: how many windows fit a byte budget, and an allocator
that keeps big freed blocks for reuse.

Scoring, validation and the hooks' passes over the data run without gradients in batches
(``trainer.eval_batch_bytes``). A batch's size in windows is the budget divided by the
activation bytes one window needs, measured once per architecture: the peak of the bytes
held by live tensors during one forward and score of a few windows (every tensor an
operator creates is counted, through a dispatch mode, on any device), and the difference
between two batch sizes, so that what does not grow with the batch (weights, products of
weights) is not counted per window.

glibc's malloc returns every block above its mmap threshold (at most 32 MiB) to the
system when it is freed, so each [B, H, L, L] map of a large batch is a fresh mapping whose
pages fault in again on first touch (with 1024-window batches, 60% of the Anomaly
Transformer's scoring CPU time was kernel time: results/bench_cpu/README.md).
``trainer.allocator=reuse`` makes malloc serve every block from its heap and keep up to
1 GiB of freed memory at the top of it, so the next batch reuses the same pages.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import weakref
from contextlib import nullcontext

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from madbench.errors import ConfigError

ALLOCATORS = ("reuse", "system")
#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: freed memory at the top of the heap kept for reuse before malloc trims it
TRIM_THRESHOLD = 1 << 30
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
         "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
#: the smallest budget accepted: below it a batch is one window of most models anyway
MIN_BYTES = 1024 ** 2

_allocator_set: str | None = None
#: the variable oneDNN (torch's CPU convolutions) reads for its primitive cache's capacity
ONEDNN_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
_onednn_set: str | None = None


def parse_bytes(value, key: str) -> int:
    """``256MiB``, ``1GiB``, ``500MB`` or a plain number of bytes → bytes (at least 1 MiB);
    anything else is a ConfigError naming ``key``."""
    n = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in UNITS:
            n = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if n is None or n < MIN_BYTES:
        raise ConfigError(f"{key}={value!r}; expected a size of at least 1MiB, e.g. 256MiB, 1GiB or a number of bytes")
    return n


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def set_allocator(choice: str) -> str:
    """Apply ``trainer.allocator`` to this process (once: malloc's settings are global) and
    say what it did. ``reuse``: glibc malloc never maps a block on its own (M_MMAP_MAX 0)
    and keeps up to 1 GiB freed at the top of its heap (M_TRIM_THRESHOLD); ``system``:
    malloc's defaults. Where malloc is not glibc's, nothing changes."""
    global _allocator_set
    if choice not in ALLOCATORS:
        raise ConfigError(f"trainer.allocator={choice!r}; expected one of {list(ALLOCATORS)}")
    if choice == "system":
        return "system malloc defaults" if _allocator_set != "reuse" else \
            "reuse (set earlier in this process; malloc's settings cannot be undone)"
    if _allocator_set == "reuse":
        return f"reuse (glibc: no mmap per block, trim above {format_bytes(TRIM_THRESHOLD)})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return "system (no glibc mallopt here)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system (mallopt refused)"
    _allocator_set = "reuse"
    return f"reuse (glibc: no mmap per block, trim above {format_bytes(TRIM_THRESHOLD)})"


def check_onednn_cache(value) -> int | None:
    """``trainer.onednn_cache``: null or an integer >= 1; anything else is a ConfigError."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(f"trainer.onednn_cache={value!r}; expected an integer >= 1 (compiled convolution primitives "
                      "oneDNN keeps) or null (oneDNN's default, 1024)")


def bound_onednn_cache(capacity: int | None) -> str:
    """Apply ``trainer.onednn_cache`` to this process and say what holds. oneDNN compiles a
    primitive per convolution shape and keeps up to 1024 of them; a backbone whose
    convolution shapes change from batch to batch (TimesNet: each period group has its own
    size in every batch) grows that cache for a job's whole length, so its YAML asks for
    fewer (``backbone.recipe.onednn_cache``). A fixed-shape model gains nothing from a small
    cache and loses speed when its working set no longer fits (BeatGAN: 4-8% at 64 and
    256), so the default is oneDNN's. A value already in the environment wins. oneDNN reads
    the variable when it builds its first primitive: this holds only where no convolution
    has run yet in the process (a job's first fit)."""
    global _onednn_set
    have = os.environ.get(ONEDNN_ENV)
    if have is not None and have != _onednn_set:
        return f"oneDNN primitive cache {have} ({ONEDNN_ENV} from the environment)"
    if capacity is None:
        return "oneDNN primitive cache default" if have is None else f"oneDNN primitive cache {have} (set earlier)"
    os.environ[ONEDNN_ENV] = _onednn_set = str(capacity)
    return f"oneDNN primitive cache {capacity} (trainer.onednn_cache)"


#: the batch sizes the per-window probe grows through (``bytes_per_window``)
PROBE_WINDOWS = (4, 16, 64, 256)


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the storages that tensors created inside it hold, and their
    peak. A storage is counted once however many views share it, and released when the
    last tensor counted on it is freed."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0
        self._storages: dict = {}   # (device, data_ptr) -> [bytes, tensors alive]
        self._tensors: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t) not in self._tensors:
                self._count(t)
        return out

    def _count(self, t: torch.Tensor) -> None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):   # tensors without a storage (sparse, ...)
            return
        key = (st.device, st.data_ptr())
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [st.nbytes(), 0]
            self.now += entry[0]
            self.peak = max(self.peak, self.now)
        entry[1] += 1
        self._tensors.add(id(t))
        weakref.finalize(t, self._release, key, id(t))

    def _release(self, key, tensor_id: int) -> None:
        self._tensors.discard(tensor_id)
        entry = self._storages.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now -= entry[0]
                del self._storages[key]


def peak_bytes(fn) -> int:
    """The peak of the bytes held by the tensors ``fn()`` creates while it runs."""
    mode = LiveTensorBytes()
    with mode:
        fn()
    return mode.peak


def bytes_per_window(detector, make_batch, n_windows: int, score: bool = True) -> int:
    """Activation bytes of one window in an evaluation pass of ``detector`` (forward, and
    score unless ``score`` is false; eval mode, no gradients, the Detector's autocast): the
    largest growth of the peak per added window between batches of 1, 4, 16, 64 and 256
    windows (at most ``n_windows``; the peak of 1 where fewer than 2 windows exist). It stops
    at the first batch whose peak is at least 4 times the peak of one window, where the
    windows' own bytes dominate: a fixed transient (TimesNet merging its 11×11 kernels,
    30 MiB at d_model 128) hides them in small batches, and 1 against 4 windows measured
    70 KiB of TimesNet's 0.55 MiB per window at TSLib's SMAP size (eval batches of 1,876
    windows; the job peaked at 5.5 GB). The random state is left as it was (a stochastic
    backbone samples in the probe) and so is the Detector's mode. ``make_batch(k)`` gives a
    batch of the first k windows."""
    def probe(k):
        def run():
            batch = make_batch(k)
            # the eager forward: a compiled backbone does not run inside a dispatch mode
            with autocast:
                out = detector.backbone.forward(batch["x"])
            if score:
                detector.score(batch, out)
        return peak_bytes(run)

    spec = detector.autocast
    autocast = torch.autocast(spec[0], dtype=spec[1]) if spec else nullcontext()
    devices = [d.index or 0 for d in {p.device for p in detector.parameters()} if d.type == "cuda"]
    was = detector.training
    detector.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            one = probe(1)
            if n_windows < 2:
                return max(one, 1)
            per, last, peak = 1, 1, one
            for k in PROBE_WINDOWS:
                k = min(k, n_windows)
                if k <= last:
                    break
                now = probe(k)
                per = max(per, (now - peak) // (k - last))
                last, peak = k, now
                if now >= 4 * one:   # the windows' bytes dominate: the last growth is theirs
                    break
            return per
    finally:
        detector.train(was)
