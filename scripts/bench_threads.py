#!/usr/bin/env python
"""Epoch time against CPU threads, alone and with concurrent jobs: the evidence for
``trainer.num_threads=auto`` (madbench/fit.py).

    python scripts/bench.py threads [--backbones lstm,lstm_ae] [--threads 1,2,all]
                                    [--jobs 1,4] [--rounds 3] [--epochs 3]

Each arm (backbone × threads × concurrent jobs) starts that many worker processes at once;
each worker trains one entity of the default synthetic data (3000 train steps, window 100,
training windows at stride 1) for ``--epochs`` epochs with ``trainer.num_threads`` set
(``madbench.Detector.fit_group``, the job's path: it scores the train split after the last
epoch, which no epoch time holds), and reports the mean time of its epochs after the first
(the first pays for allocation and warm-up). The arms are
interleaved: every round runs each arm once, in a rotated order, so a change of load on a
shared machine falls on all arms alike. The load average before each arm is printed with
it; read a table from a loaded machine as relative numbers only.

Columns: ``epoch_s`` is the median over rounds of the mean epoch time of the arm's jobs;
``throughput`` is epochs per second over all the arm's jobs together (jobs / epoch_s);
``vs_1_thread`` is the epoch time against the 1-thread arm with the same backbone and jobs.
An arm whose jobs do not finish within ``--timeout`` seconds is killed and shows inf.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(backbone: str, threads: int, epochs: int, extra: list[str]) -> dict:
    """One job's training, timed per epoch (runs in its own process)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from madbench.api import Detector, compose
    from madbench.run import load_entities

    overrides = [f"backbone={backbone}", "dataset.n_systems=1", "dataset.stride=1", f"trainer.epochs={epochs}",
                 "trainer.patience=null", "trainer.progress=false", f"trainer.num_threads={threads}", *extra]
    det = Detector.from_config(compose(overrides)).prepare()
    history = det.fit_group(load_entities(det.config_)[:1], backbone).history
    secs = [h["seconds"] for h in history]
    return {"epoch_s": statistics.mean(secs[1:] or secs), "threads": torch.get_num_threads(),
            "val_loss": history[-1]["val_loss"]}


def run_arm(backbone: str, threads: int, jobs: int, epochs: int, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", backbone, str(threads), str(epochs), *extra]
    # OMP/MKL variables would override what the worker asks for: the worker sets its own
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    env.pop("MADBENCH_CONCURRENT_JOBS", None)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(jobs)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:  # an arm that stalls is a result: it counts as > timeout
            for q in procs:
                q.kill()
                q.wait()
            return {"epoch_s": float("inf"), "wall_s": time.perf_counter() - t0, "load": load, "val_loss": None}
        if p.returncode != 0:
            raise SystemExit(f"bench threads: worker failed ({' '.join(cmd)}):\n{err[-2000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return {"epoch_s": statistics.mean(o["epoch_s"] for o in outs), "wall_s": time.perf_counter() - t0,
            "load": load, "val_loss": outs[0]["val_loss"]}


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        backbone, threads, epochs, *extra = argv[1:]
        print(json.dumps(worker(backbone, int(threads), int(epochs), extra)))
        return []
    ap = argparse.ArgumentParser(prog="bench.py threads", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="lstm,lstm_ae")
    ap.add_argument("--threads", default="1,2,all", help="comma-separated counts; all = the cores of this process")
    ap.add_argument("--jobs", default="1,4", help="concurrent jobs per arm")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds an arm may take (then it counts as inf)")
    ap.add_argument("extra", nargs="*", help="more Hydra overrides for every worker")
    a = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = sorted({cores if t == "all" else int(t) for t in a.threads.split(",")})
    arms = [(b, t, j) for b in a.backbones.split(",") for j in (int(x) for x in a.jobs.split(",")) for t in threads]
    print(f"bench threads: {cores} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; "
          f"{len(arms)} arms x {a.rounds} rounds, {a.epochs} epochs each", flush=True)
    results: dict[tuple, list[dict]] = {arm: [] for arm in arms}
    for r in range(a.rounds):
        k = r % len(arms)
        for arm in arms[k:] + arms[:k]:
            res = run_arm(*arm, a.epochs, a.extra, a.timeout)
            results[arm].append(res)
            print(f"  round {r + 1} {arm[0]:>8} threads={arm[1]} jobs={arm[2]}: {res['epoch_s']:.2f} s/epoch "
                  f"(load {res['load']:.1f})", flush=True)
    rows = []
    for (b, t, j), rs in results.items():
        rows.append({"backbone": b, "threads": t, "jobs": j, "epoch_s": statistics.median(x["epoch_s"] for x in rs),
                     "spread": (min(x["epoch_s"] for x in rs), max(x["epoch_s"] for x in rs)),
                     "load": statistics.mean(x["load"] for x in rs)})
    base = {(r["backbone"], r["jobs"]): r["epoch_s"] for r in rows if r["threads"] == 1}
    print(f"\n| backbone | jobs | threads/job | epoch s (median; min-max over {a.rounds} rounds) | epochs/s, all jobs "
          "| vs 1 thread | load avg before |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        ref = base.get((r["backbone"], r["jobs"]))
        ratio = f"{ref / r['epoch_s']:.2f}x" if ref else "—"
        print(f"| {r['backbone']} | {r['jobs']} | {r['threads']} | {r['epoch_s']:.2f} ({r['spread'][0]:.2f}-"
              f"{r['spread'][1]:.2f}) | {r['jobs'] / r['epoch_s']:.2f} | {ratio} | {r['load']:.1f} |")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return rows


if __name__ == "__main__":
    main()
