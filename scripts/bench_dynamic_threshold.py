"""The thresholding step of LSTM-DT (``scoring=dynamic_threshold``) against the references'
own code, on the errors of NASA channels, in one run: time ratios, and for Orion whether
the detected intervals agree.

    mkdir -p /tmp/orion/orion/primitives          # outside the project; never committed
    git -C <Orion clone> show HEAD:orion/primitives/timeseries_anomalies.py \\
        > /tmp/orion/orion/primitives/timeseries_anomalies.py
    git clone https://github.com/khundman/telemanom /tmp/telemanom
    pip install --target /tmp/pylib more_itertools  # telemanom's errors.py needs it
    python scripts/bench.py dynamic_threshold --orion /tmp/orion --telemanom /tmp/telemanom \\
        --pythonpath /tmp/pylib --channels C-1,A-1

The errors: the channel's test telemetry (column 0, min-max scaled on train) against a
persistence forecast (ŷ_t = y_{t-1}), ``|y - ŷ|`` — a trained LSTM's errors would take
minutes of training per channel and change nothing in what is timed. Each mode smooths
once, outside the timing, and times the thresholding alone; each side is repeated
``--repeats`` times alternately and the median is kept.

- ``orion-fixed`` (the ``lstm_dynamic_threshold`` pipeline: mean + 4 std in windows of 33%
  of the errors moved by 10% of that, padding 50, min_percent 0.13) and ``orion-dynamic``
  (the primitive's default ε search, scipy ``fmin`` from z = 0..11): Orion's
  ``find_anomalies`` from ``orion/primitives/timeseries_anomalies.py`` (numpy, pandas and
  scipy only, so it runs without Orion's TensorFlow), unmodified, on the same smoothed
  errors (EWMA, span 1% of the steps). Their intervals must be identical: the suite exits 1
  when they are not.
- ``telemanom``: telemanom's ``Errors`` (``telemanom/errors.py``: smoothing with span 105,
  windows of 2100 trailing errors moved by 70, z on a 0.5 grid from 2.5, both directions,
  buffer 100, p 0.13), unmodified, against ``find_anomalies(search="grid")`` with the same
  settings. Telemanom's search has guards of its own (at most 5 sequences, under half the
  window) and counts only the newest batch of each window, so the intervals are not
  expected to be equal: the ratio compares the same work. telemanom's model needs Keras
  2.3.1 and TensorFlow 2.0.1 (``requirements.txt``), which have no wheel for this Python
  (3.11), and its ``modeling.py`` imports ``keras.layers.recurrent``, absent from every
  Keras that has; so its training is not benched here.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def channel_errors(data_dir: Path, chan: str) -> tuple[np.ndarray, np.ndarray]:
    """(test telemetry scaled on train, persistence errors |y_t - y_{t-1}|) of a channel."""
    train = np.load(data_dir / "NASA" / "train" / f"{chan}.npy")[:, 0].astype(np.float64)
    test = np.load(data_dir / "NASA" / "test" / f"{chan}.npy")[:, 0].astype(np.float64)
    lo, hi = train.min(), train.max()
    y = (test - lo) / (hi - lo if hi > lo else 1.0)
    return y, np.abs(np.diff(y))


def load_orion(checkout: Path):
    path = checkout / "orion" / "primitives" / "timeseries_anomalies.py"
    if not path.is_file():
        raise SystemExit(f"--orion {checkout}: no orion/primitives/timeseries_anomalies.py there")
    spec = importlib.util.spec_from_file_location("orion_timeseries_anomalies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_telemanom(checkout: Path):
    if not (checkout / "telemanom" / "errors.py").is_file():
        raise SystemExit(f"--telemanom {checkout}: no telemanom/errors.py there")
    spec = importlib.util.spec_from_file_location("telemanom_errors", checkout / "telemanom" / "errors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _alternate(ours, theirs, repeats: int):
    t_o, t_t, o, t = [], [], None, None
    for _ in range(repeats):
        s, o = _median_time(ours, 1)
        t_o.append(s)
        s, t = _median_time(theirs, 1)
        t_t.append(s)
    return statistics.median(t_o), statistics.median(t_t), o, t


def bench_orion(orion, errors: np.ndarray, fixed: bool, repeats: int) -> dict:
    from madbench.scoring import dynamic_threshold as dt

    n = errors.size
    e = dt.ewma(errors, max(1, int(n * 0.01)))
    window = int(np.ceil(n * 0.33))
    step = int(np.ceil(window * 0.1))
    ours = lambda: dt.find_anomalies(e, window_size=window, window_step=step, fixed=fixed, padding=50,  # noqa: E731
                                     min_percent=0.13, z_range=(0, 12))
    theirs = lambda: orion.find_anomalies(e, np.arange(n), z_range=(0, 12), window_size_portion=0.33,  # noqa: E731
                                          window_step_size_portion=0.1, min_percent=0.13, anomaly_padding=50,
                                          fixed_threshold=fixed)
    t_o, t_t, o, t = _alternate(ours, theirs, repeats)
    ours_iv = [(a, b) for a, b, _ in o]
    theirs_iv = [(int(a), int(b)) for a, b, _ in np.asarray(t).reshape(-1, 3)]
    return {"ours_s": t_o, "ref_s": t_t, "agree": ours_iv == theirs_iv, "ours": ours_iv, "ref": theirs_iv}


def bench_telemanom(tm, y: np.ndarray, errors: np.ndarray, repeats: int) -> dict:
    from madbench.scoring import dynamic_threshold as dt

    cfg = types.SimpleNamespace(window_size=30, batch_size=70, smoothing_perc=0.05, error_buffer=100, p=0.13,
                                l_s=250)
    n = errors.size
    y_test = np.repeat(y[1:, None], 10, axis=1)  # [n, n_predictions]; the error uses column 0
    chan = types.SimpleNamespace(id="bench", y_hat=y[:-1].copy(), y_test=y_test)
    work = Path(tempfile.mkdtemp(prefix="telemanom_bench_"))
    (work / "data" / "run" / "smoothed_errors").mkdir(parents=True)
    here = os.getcwd()

    def theirs():
        os.chdir(work)  # Errors() saves its smoothed errors under data/<run_id>/
        try:
            errs = tm.Errors(chan, cfg, "run")
            errs.process_batches(chan)
            return errs.E_seq
        finally:
            os.chdir(here)

    span = int(cfg.batch_size * cfg.window_size * cfg.smoothing_perc)
    h = cfg.batch_size * cfg.window_size

    def ours():
        e = dt.ewma(errors, span)
        return dt.find_anomalies(e, window_size=h, window_step=cfg.batch_size, search="grid", z_range=(2.5, 12),
                                 padding=cfg.error_buffer, min_percent=cfg.p, lower_threshold=True)

    import logging

    logging.getLogger("telemanom").setLevel(logging.WARNING)
    t_o, t_t, o, t = _alternate(ours, theirs, repeats)
    return {"ours_s": t_o, "ref_s": t_t, "agree": None, "ours": [(a, b) for a, b, _ in o], "ref": list(t)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py dynamic_threshold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--orion", type=Path, help="a directory holding orion/primitives/timeseries_anomalies.py")
    ap.add_argument("--telemanom", type=Path, help="a telemanom checkout")
    ap.add_argument("--pythonpath", default=None, help="prepended to sys.path (where more_itertools is)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--channels", default="C-1", help="comma-separated NASA channels")
    ap.add_argument("--modes", default="orion-fixed,orion-dynamic,telemanom")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    if a.pythonpath:
        sys.path.insert(0, a.pythonpath)
    modes = [m for m in a.modes.split(",") if m]
    orion = load_orion(a.orion) if a.orion and any(m.startswith("orion") for m in modes) else None
    tm = load_telemanom(a.telemanom) if a.telemanom and "telemanom" in modes else None
    rows, status = [], 0
    for chan in [c for c in a.channels.split(",") if c]:
        y, errors = channel_errors(a.data_dir, chan)
        for mode in modes:
            if mode.startswith("orion") and orion is None or mode == "telemanom" and tm is None:
                print(f"{chan} {mode}: skipped (no --{mode.split('-')[0]} checkout)", file=sys.stderr)
                continue
            r = (bench_telemanom(tm, y, errors, a.repeats) if mode == "telemanom"
                 else bench_orion(orion, errors, mode == "orion-fixed", a.repeats))
            r.update(mode=mode, channel=chan, n=int(errors.size))
            if r["agree"] is False:
                status = 1
                print(f"{chan} {mode}: intervals DISAGREE: madbench {r['ours']}, reference {r['ref']}",
                      file=sys.stderr)
            rows.append(r)
    print("| mode | channel | errors | madbench ms | reference ms | ratio ref/ours (>1: madbench faster) | "
          "intervals (madbench / reference) | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = "—" if r["agree"] is None else ("yes" if r["agree"] else "NO")
        print(f"| {r['mode']} | {r['channel']} | {r['n']} | {1e3 * r['ours_s']:.1f} | {1e3 * r['ref_s']:.1f} | "
              f"{r['ref_s'] / r['ours_s']:.2f} | {len(r['ours'])} / {len(r['ref'])} | {same} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
