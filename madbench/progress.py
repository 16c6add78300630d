"""Progress of the long stages (fit epochs, scoring batches, fitting a scorer) for whoever
reads it: a tqdm bar on a terminal; in a log (SLURM output, ``make run > log``) one line
at most every ``every_s`` seconds (``trainer.log_every_s``), so a cluster log is neither
flooded by per-batch lines nor silent for minutes."""
from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager

from tqdm.auto import tqdm

from madbench.errors import ConfigError

log = logging.getLogger("madbench")


def on_terminal() -> bool:
    """Whether a bar would be seen: stderr (where tqdm draws) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def check_every(value, key: str = "trainer.log_every_s") -> float:
    """Seconds between progress lines: a number >= 0; 0 or null: no lines."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key}={value!r}; expected seconds >= 0 (0 or null: no progress lines)")
    return float(value)


class Progress:
    """Iterate ``iterable``, showing progress: a tqdm bar when ``bar`` and stderr is a
    terminal; else, after an item, a log line when ``every_s`` seconds have passed since the
    last one (or since the start): ``<desc>: 120/400 batches, 31 s, loss=0.0231``."""

    def __init__(self, iterable, desc: str, total: int | None = None, unit: str = "batch", bar: bool = True,
                 every_s: float = 30.0):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every_s = float(every_s or 0.0)
        self.postfix = ""
        self.bar = tqdm(iterable, desc=desc, total=self.total, unit=unit, leave=False) if bar and on_terminal() \
            else None

    def set_postfix(self, **values) -> None:
        """Values shown after the count (the bar's postfix; the line's tail)."""
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **values)
        else:
            self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            return
        start = last = time.monotonic()
        for i, item in enumerate(self.iterable, start=1):
            yield item  # the caller's work on the item runs here
            if self.every_s > 0:
                now = time.monotonic()
                if now - last >= self.every_s:
                    last = now
                    of = f"/{self.total}" if self.total is not None else ""
                    units = {"batch": "batches"}.get(self.unit, f"{self.unit}s")
                    log.info("%s: %d%s %s, %.0f s%s", self.desc, i, of, units, now - start,
                             f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def heartbeat(desc: str, every_s: float):
    """Around a stage that is one call (fitting a scorer, a hook's pass over the data): a
    line ``<desc>: still running after 60 s`` every ``every_s`` seconds while it runs, on a
    terminal or not (0: none)."""
    if not every_s or every_s <= 0:
        yield
        return
    stop, t0 = threading.Event(), time.monotonic()

    def beat():
        while not stop.wait(every_s):
            log.info("%s: still running after %.0f s", desc, time.monotonic() - t0)

    thread = threading.Thread(target=beat, name="madbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
