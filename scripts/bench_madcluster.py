#!/usr/bin/env python
"""The MADCluster head's training overhead: seconds per epoch of a backbone with and without
``head=madcluster``, on one NASA channel at the paper's batch 128 and window 100.

    python scripts/bench.py madcluster [--root ../shared/datasets] [--channel C-1]
        [--backbones lstm,deepsvdd] [--epochs 3] [--rounds 3] [--set deepsvdd:backbone.model.d_model=64 ...]

Each round trains every (backbone, head) pair for ``--epochs`` epochs through the real job
path (composed config → ``madbench.Detector.fit_group``), pairs interleaved so that load drifts hit both
arms alike. An epoch's seconds are the trainer's own (training batches, validation, the
hooks at epoch end — for MADCluster the radius from the epoch's distances); the first epoch
of each fit is dropped as warm-up. Prints the median seconds per epoch per arm and the
overhead of the head: median(with) / median(without) − 1 (goal: ≤ 15%).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def epoch_seconds(overrides: list[str]) -> list[float]:
    """Fit one detector as a job would (``madbench.Detector.fit_group``); the seconds of
    each epoch after the first (the trainer's own: the train-split scoring after the last
    epoch is not in them)."""
    from madbench.api import Detector, compose
    from madbench.run import load_entities

    det = Detector.from_config(compose(overrides)).prepare()
    (entity,) = load_entities(det.config_)
    return [h["seconds"] for h in det.fit_group([entity], "fit").history[1:]]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="bench.py madcluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str((ROOT / ".." / "shared" / "datasets").resolve()))
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--backbones", default="lstm,deepsvdd")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], metavar="BACKBONE:OVERRIDE",
                    help="extra overrides for one backbone, e.g. deepsvdd:backbone.model.d_model=64")
    a = ap.parse_args(argv)
    extra: dict[str, list[str]] = {}
    for item in a.set:
        b, o = item.split(":", 1)
        extra.setdefault(b, []).append(o)
    base = [f"dataset=msl", f"dataset.entities=[{a.channel}]", "dataset.sensors=all", f"paths.data_dir={a.root}",
            "dataset.window=100", "trainer.batch_size=128", f"trainer.epochs={a.epochs}", "trainer.patience=null",
            "trainer.progress=false", "trainer.device=cpu", "trainer.deterministic=false"]
    backbones = a.backbones.split(",")
    times = {(b, h): [] for b in backbones for h in ("none", "madcluster")}
    for r in range(a.rounds):
        for b in backbones:
            for h in (("none", "madcluster") if r % 2 == 0 else ("madcluster", "none")):
                t0 = time.perf_counter()
                times[(b, h)] += epoch_seconds(base + [f"backbone={b}", f"head={h}"] + extra.get(b, []))
                print(f"round {r + 1}/{a.rounds} {b} head={h}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    print(f"\nMADCluster head overhead per training epoch, MSL {a.channel} (55 columns), window 100, batch 128, "
          f"{a.rounds} rounds x {a.epochs - 1} timed epochs")
    print(f"{'backbone':<12}{'s/epoch (none)':>16}{'s/epoch (madcluster)':>22}{'overhead':>10}")
    for b in backbones:
        none, mc = statistics.median(times[(b, "none")]), statistics.median(times[(b, "madcluster")])
        rows.append({"backbone": b, "none_s": none, "madcluster_s": mc, "overhead": mc / none - 1,
                     "settings": " ".join(extra.get(b, [])) or "YAML defaults"})
        print(f"{b:<12}{none:>16.3f}{mc:>22.3f}{mc / none - 1:>+10.1%}   ({rows[-1]['settings']})")
    return rows


if __name__ == "__main__":
    main()
