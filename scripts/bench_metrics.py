"""Speed and memory of madbench's range/VUS/affiliation metrics against the ``vus`` package.

    python scripts/bench_metrics.py --sizes 10000 100000 200000 --big 708000 --window 100

Every measurement runs in a fresh Python process (so one run's memory cannot hide in
another's): the process builds the synthetic series, notes its resident memory, times one
call of the metric, and reports the call's wall time, its peak RSS above that baseline
(``ru_maxrss`` minus the RSS before the call) and the metric's values. The reference calls
are the ones ``vus.metrics.get_metrics(metric='all', version='opt', thre=250)`` makes:
``generate_curve`` (VUS), ``metricor().RangeAUC`` (R-AUC) and ``pr_from_events`` on
``convert_vector_to_events`` (affiliation). One table is printed at the end.

Synthetic data: events of 50-500 steps separated by 2k-16k normal steps (about 3 %
anomalous); the score is moving-averaged Gaussian noise plus a step on the events, min-max
scaled; the prediction for affiliation is ``score > 0.5`` (what ``get_metrics`` does),
which fragments into thousands of predicted events, as noisy detectors do.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METRICS = ("vus", "r_auc", "affiliation")
KEYS = {"vus": ("vus_roc", "vus_pr"), "r_auc": ("r_auc_roc", "r_auc_pr"),
        "affiliation": ("aff_precision", "aff_recall"),
        "r_auc+vus": ("r_auc_roc", "r_auc_pr", "vus_roc", "vus_pr"), "all_metrics": ()}
LABELS = {"vus": "VUS-ROC+PR", "r_auc": "R-AUC-ROC+PR", "affiliation": "affiliation P+R",
          "r_auc+vus": "R-AUC + VUS (one sort)", "all_metrics": "all_metrics (21 columns)"}
REPEATS = 3  # madbench calls are timed best-of-3; each vus call runs once (minutes)


def synthetic(T: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    y = np.zeros(T, dtype=np.int8)
    pos = int(rng.integers(0, 2000))
    while pos < T:
        n = int(rng.integers(50, 501))
        y[pos:pos + n] = 1
        pos += n + int(rng.integers(2000, 16000))
    noise = np.convolve(rng.normal(size=T + 4), np.ones(5) / np.sqrt(5), mode="valid")
    s = noise + 2.5 * y
    s = (s - s.min()) / (s.max() - s.min())
    return y, s, (s > 0.5).astype(np.int8)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _worker(tool: str, metric: str, T: int, window: int, seed: int) -> dict:
    import warnings

    import numpy as np
    warnings.filterwarnings("ignore")
    y, s, p = synthetic(T, seed)
    if tool == "madbench":
        import madbench.metrics as M
        from madbench.metrics.range import range_and_vus, range_auc, vus
        call = {"vus": lambda: vus(y, s, window),
                "r_auc": lambda: range_auc(y, s, window),
                "affiliation": lambda: M.affiliation(y, p),
                "r_auc+vus": lambda: range_and_vus(y, s, window),
                "all_metrics": lambda: M.all_metrics(y, s, p, window)}[metric]
        repeats = REPEATS
    else:
        from vus.affiliation.generics import convert_vector_to_events
        from vus.affiliation.metrics import pr_from_events
        from vus.analysis.robustness_eval import generate_curve
        from vus.utils.metrics import metricor

        def _vus():
            out = generate_curve(y, s, window, "opt", 250)
            return {"vus_roc": out[6], "vus_pr": out[7]}

        def _rauc():
            out = metricor().RangeAUC(labels=y, score=s, window=window, plot_ROC=True)
            return {"r_auc_roc": out[0], "r_auc_pr": out[1]}

        def _aff():
            out = pr_from_events(convert_vector_to_events(p), convert_vector_to_events(y), (0, T))
            return {"aff_precision": out["Affiliation_Precision"], "aff_recall": out["Affiliation_Recall"]}

        call = {"vus": _vus, "r_auc": _rauc, "affiliation": _aff}[metric]
        repeats = 1
    base = _rss_kib()
    seconds = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        values = call()
        seconds = min(seconds, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mib": max(peak - base, 0) / 1024,
            "values": {k: float(values[k]) for k in KEYS[metric]},
            "n_events": int(np.count_nonzero(np.diff(y, prepend=0) == 1)),
            "n_pred_events": int(np.count_nonzero(np.diff(p, prepend=0) == 1))}


def measure(tool: str, metric: str, T: int, window: int, seed: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, metric, str(T), str(window), str(seed)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{tool} {metric} T={T} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fmt(x, spec):
    return "—" if x is None else format(x, spec)


def render(rows: list[dict], window: int) -> None:
    headers = ["metric", "T", "madbench s", "vus s", "speed-up", "madbench peak MiB", "vus peak MiB",
               "max |Δ| vs vus"]
    body = [[LABELS[r["metric"]], f"{r['T']:,}", _fmt(r["ours_s"], ".4f"), _fmt(r.get("ref_s"), ".2f"),
             _fmt(r.get("speedup"), ",.0f") + ("×" if r.get("speedup") else ""),
             _fmt(r["ours_mib"], ".1f"), _fmt(r.get("ref_mib"), ".1f"), _fmt(r.get("diff"), ".1e")]
            for r in rows]
    title = (f"madbench.metrics vs vus 0.0.6 — window {window}, 250 thresholds. madbench s: best of "
             f"{REPEATS} calls; vus s: one call; peak MiB: peak RSS above the process's baseline during "
             "the calls (a fresh process per cell). R-AUC + VUS: vus s = the sum of its two rows.")
    try:
        from rich.console import Console
        from rich.table import Table
        t = Table(title=title)
        for h in headers:
            t.add_column(h, justify="left" if h == "metric" else "right")
        for b in body:
            t.add_row(*b)
        Console(width=150).print(t)
    except ImportError:  # plain fallback
        print(title)
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
        for b in body:
            print("  ".join(c.rjust(w) for c, w in zip(b, widths)))


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        tool, metric, T, window, seed = argv[1:6]
        print(json.dumps(_worker(tool, metric, int(T), int(window), int(seed))))
        return []
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 200_000],
                    help="series lengths compared with vus")
    ap.add_argument("--big", type=int, nargs="*", default=[708_000],
                    help="lengths measured for madbench only (none: skip)")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS),
                    help="which to compare (R-AUC + VUS is added when both are chosen)")
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) vus runs")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)

    rows = []
    plan = [(T, True) for T in args.sizes] + [(T, False) for T in (args.big or [])]
    for T, with_ref in plan:
        extra = ["r_auc+vus"] if {"vus", "r_auc"} <= set(args.metrics) else []
        done = {}
        for metric in list(args.metrics) + extra + ["all_metrics"]:
            ours = measure("madbench", metric, T, args.window, args.seed)
            row = {"metric": metric, "T": T,
                   "ours_s": ours["seconds"], "ours_mib": ours["peak_mib"], "values": ours["values"],
                   "n_events": ours["n_events"], "n_pred_events": ours["n_pred_events"]}
            ref = None
            if with_ref and not args.no_reference and metric in METRICS:
                print(f"vus {metric} at T={T:,} ...", file=sys.stderr, flush=True)
                ref = done[metric] = measure("vus", metric, T, args.window, args.seed)
            elif metric == "r_auc+vus" and "vus" in done:
                ref = {"seconds": done["vus"]["seconds"] + done["r_auc"]["seconds"], "peak_mib": None,
                       "values": {**done["vus"]["values"], **done["r_auc"]["values"]}}
            if ref is not None:
                row.update(ref_s=ref["seconds"], ref_mib=ref["peak_mib"], ref_values=ref["values"],
                           speedup=ref["seconds"] / ours["seconds"],
                           diff=max(abs(ours["values"][k] - ref["values"][k]) for k in KEYS[metric]))
            rows.append(row)
    render(rows, args.window)
    events = {r["T"]: (r["n_events"], r["n_pred_events"]) for r in rows}
    print("truth events / predicted events (score > 0.5): "
          + ", ".join(f"T={T:,}: {a}/{b}" for T, (a, b) in events.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
