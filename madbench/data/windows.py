"""Zero-copy sliding windows over one or several series.

The series are concatenated once into a single tensor; every window is a view of it
(``Tensor.unfold``), so memory stays O(T·D) whatever the window length. A batch gathers
only the windows it needs. Windows never cross the boundary between two series, which is
what lets one model be trained across entities (``dataset.pooled=true``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class WindowSpec:
    """How windows relate to what is predicted.

    ``horizon=0``: the target is the window itself (reconstruction).
    ``horizon=1``: the target is the step ``gap`` steps after the window's last step + 1
    (a forecast; ``gap=1`` is M2AD's reference quirk of skipping one step).
    """

    window: int
    stride: int = 1
    horizon: int = 0
    gap: int = 0

    def __post_init__(self):
        if self.window < 2:
            raise ValueError(f"dataset.window={self.window}; expected an integer >= 2")
        if not 1 <= self.stride <= self.window:
            raise ValueError(f"dataset.stride={self.stride}; expected 1 <= stride <= window ({self.window})")

    @property
    def span(self) -> int:
        """Steps a window needs, target included."""
        return self.window + (self.horizon + self.gap if self.horizon else 0)

    def score_offsets(self) -> np.ndarray:
        """Offsets from the window start of the steps a window's scores describe."""
        if self.horizon:
            return np.arange(self.window + self.gap, self.window + self.gap + self.horizon)
        return np.arange(self.window)


class Windows:
    """Sliding windows over ``series`` (a list of ``[T_i, D]`` arrays).

    ``starts`` holds global start positions into the concatenated series.
    ``series_id``/``local_start`` say which series and where each window comes from.
    """

    def __init__(self, series, spec: WindowSpec, device: torch.device | str = "cpu"):
        if isinstance(series, np.ndarray):
            series = [series]
        self.spec = spec
        self.lengths = np.array([len(s) for s in series], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        arrays = [np.ascontiguousarray(s, dtype=np.float32) for s in series]
        base = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        # from_numpy shares memory with the (already float32) array: no copy on CPU
        self.base = torch.from_numpy(base).to(device)
        self._index()

    def restrided(self, spec: WindowSpec) -> "Windows":
        """The same series windowed by another spec (e.g. stride 1 for scoring after
        training at a larger stride), sharing this one's base tensor: no second copy on
        the device."""
        w = object.__new__(Windows)
        w.spec, w.lengths, w.offsets, w.base = spec, self.lengths, self.offsets, self.base
        w._index()
        return w

    def covering(self, first: np.ndarray) -> "Windows":
        """The windows that score a step at or after ``first[i]`` (local) of series ``i``:
        every window that covers such a step, so the steps from ``first`` on are scored
        exactly as by all windows. Each series keeps at least its last window (a series
        scored in none still shows the score's parts). Shares the base tensor."""
        first = np.asarray(first, dtype=np.int64)
        last_step = self.local_start + int(self.spec.score_offsets()[-1])
        keep = last_step >= first[self.series_id]
        for i in range(len(self.lengths)):
            w = np.flatnonzero(self.series_id == i)
            if len(w):
                keep[w[-1]] = True
        w = object.__new__(Windows)
        w.spec, w.lengths, w.offsets, w.base = self.spec, self.lengths, self.offsets, self.base
        w.starts, w.series_id, w.local_start = self.starts[keep], self.series_id[keep], self.local_start[keep]
        w._view = self._view
        return w

    def _index(self) -> None:
        spec = self.spec
        starts, sid, local = [], [], []
        for i, (off, n) in enumerate(zip(self.offsets, self.lengths)):
            count = n - spec.span + 1
            loc = np.arange(0, max(count, 0), spec.stride, dtype=np.int64)
            starts.append(off + loc)
            sid.append(np.full(len(loc), i, dtype=np.int64))
            local.append(loc)
        self.starts = np.concatenate(starts)
        self.series_id = np.concatenate(sid)
        self.local_start = np.concatenate(local)
        # [T_total - L + 1, D, L] view over the base tensor (empty when every series is
        # shorter than a window: unfold itself would raise)
        if len(self.base) >= spec.window:
            self._view = self.base.unfold(0, spec.window, 1)
        else:
            self._view = self.base.new_empty((0, self.base.shape[1], spec.window))

    def __len__(self) -> int:
        return len(self.starts)

    def inputs(self, idx: np.ndarray, columns: torch.Tensor | None = None) -> torch.Tensor:
        """Windows ``idx`` as ``[B, L, D]`` (only this batch is materialised).

        One gather of whole rows of the base tensor (its rows are contiguous), ten times
        faster than gathering the unfolded ``[D, L]`` views and transposing; the columns
        are gathered again only when they are not all of them in order."""
        s = torch.as_tensor(self.starts[idx], device=self.base.device)
        x = self.base[s[:, None] + torch.arange(self.spec.window, device=s.device)[None, :]]
        if columns is None or self._all_columns(columns):
            return x
        return x[..., columns]

    def _all_columns(self, columns) -> bool:
        """Whether ``columns`` is every column in order (checked once per columns object:
        the trainer passes the same one for every batch, and on a GPU the check syncs)."""
        checked = getattr(self, "_columns_checked", None)
        if checked is not None and checked[0] is columns:
            return checked[1]
        d = self.base.shape[1]
        ok = len(columns) == d and bool(torch.equal(torch.as_tensor(columns).cpu(), torch.arange(d)))
        self._columns_checked = (columns, ok)
        return ok

    def targets(self, idx: np.ndarray, columns: torch.Tensor | None = None) -> torch.Tensor:
        """Forecast targets ``[B, H, S]`` (horizon > 0) or the windows themselves."""
        spec = self.spec
        if not spec.horizon:
            return self.inputs(idx, columns)
        s = torch.as_tensor(self.starts[idx], device=self.base.device)
        pos = s[:, None] + torch.as_tensor(spec.score_offsets(), device=s.device)[None, :]
        y = self.base[pos]
        return y if columns is None else y[..., columns]

    def split(self, val_ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices of train and validation windows: the last ``val_ratio`` of each
        series' windows (in time) are validation."""
        tr, va = [], []
        for i in range(len(self.lengths)):
            w = np.flatnonzero(self.series_id == i)
            n_val = int(round(len(w) * val_ratio))
            cut = len(w) - n_val
            tr.append(w[:cut])
            va.append(w[cut:])
        return np.concatenate(tr), np.concatenate(va)

    def val_start(self, val_ratio: float) -> np.ndarray:
        """Per series, the first local step scored by a validation window."""
        out = []
        off = int(self.spec.score_offsets()[0])
        for i in range(len(self.lengths)):
            w = np.flatnonzero(self.series_id == i)
            n_val = int(round(len(w) * val_ratio))
            out.append(self.local_start[w[len(w) - n_val]] + off if n_val else self.lengths[i])
        return np.array(out, dtype=np.int64)
