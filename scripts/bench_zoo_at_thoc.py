"""Training throughput and peak memory of the Anomaly Transformer and THOC at their papers'
sizes on one NASA channel, with and without head=madcluster.

    python scripts/bench_zoo_at_thoc.py [--root DATA] [--channel C-1] [--steps 3]
        [--backbones anomaly_transformer thoc] [--heads none madcluster] [-- extra overrides ...]

Entries for ``scripts/bench.py zoo``: ``ENTRIES[name](head) -> list[str]``, the Hydra
overrides of one configuration (the backbone at its published sizes and recipe batch size,
its natural objective, the head). ``measure(overrides, ...)`` runs one of them in a child
process: it composes the config on the channel, builds the model as a job does
(``madbench.Detector.new_model``: seed 0, determinism off), runs the objective's
``on_fit_start`` (timed apart: THOC's K-means), one warm-up step and ``steps`` timed
``training_step`` calls, and reports windows/s, seconds per step, the child's peak RSS
and its growth over the RSS before training (CUDA: peak allocated memory), plus the CPU
seconds per step (process time: less sensitive than wall time to a shared machine's load,
which is reported beside it). No reference comparison: the authors' AT needs CUDA and THOC
has no official code.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def anomaly_transformer(head: str = "none") -> list[str]:
    """d_model 512, 8 heads, 3 layers, d_ff 512, batch 256 (the reference's scripts); MSL's window of 100."""
    return ["backbone=anomaly_transformer", f"head={head}"]


def thoc(head: str = "none") -> list[str]:
    """Dilated LSTM 3 × 128 (dilations 1, 2, 4), 6 centres per layer, batch 128, K-means on 20
    batches; MSL's window of 100 (TimeSeAD's SMD grid; its default is 64)."""
    return ["backbone=thoc", f"head={head}"]


ENTRIES = {"anomaly_transformer": anomaly_transformer, "thoc": thoc}


def _child(overrides: list[str], steps: int) -> dict:
    import numpy as np
    import torch

    from madbench.api import Detector, compose
    from madbench.data.preprocess import Preprocessor
    from madbench.data.windows import Windows
    from madbench.detector import FitContext
    from madbench.run import load_entities

    api = Detector.from_config(compose(overrides)).prepare()
    cfg, trainer = api.config_, api.trainer_
    (entity,) = load_entities(cfg)
    det = api.new_model(entity)
    entity = Preprocessor(scaler=cfg.dataset.get("scaler", "minmax")).apply(entity)
    dev = trainer.device
    det.to(dev)
    w = Windows([entity.train], api.spec_, device=dev)
    cols = torch.as_tensor(entity.input_idx, device=dev), torch.as_tensor(entity.sensor_idx, device=dev)
    ctx = FitContext(trainer, det, w, *w.split(trainer.val_ratio), *cols)
    det.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    det.on_fit_start(ctx)
    fit_start_s = time.perf_counter() - t0
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(trainer.make_optimizer, trainer.lr_decay)
    ctx.epoch, ctx.stage = 1, "train"
    bs = trainer.batch_size
    order = np.random.default_rng(0).permutation(ctx.train_idx)
    if len(order) < bs * (steps + 1):
        order = np.resize(order, bs * (steps + 1))

    def step(i):
        ctx.batch_index = i + 1
        det.training_step(trainer.batch(w, order[i * bs:(i + 1) * bs], *cols), ctx)

    step(0)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, steps + 1):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    sec, cpu = (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"load_avg": round(os.getloadavg()[0], 1), "backbone": cfg.backbone.name, "head": cfg.head.get("name", "none"), "device": str(dev),
            "threads": torch.get_num_threads(), "batch": bs, "window": cfg.dataset.window,
            "params": sum(p.numel() for p in det.parameters()), "fit_start_s": round(fit_start_s, 2),
            "s_per_step": round(sec, 3), "windows_per_s": round(bs / sec, 1), "cpu_s_per_step": round(cpu, 3),
            "windows_per_cpu_s": round(bs / cpu, 1),
            "peak_rss_gib": round(rss / 1024 ** 2, 2), "train_rss_growth_gib": round((rss - rss0) / 1024 ** 2, 2),
            "cuda_peak_gib": round(torch.cuda.max_memory_allocated(dev) / 1024 ** 3, 2) if dev.type == "cuda" else None}


def measure(overrides: list[str], root: str, channel: str = "C-1", steps: int = 3) -> dict:
    """One configuration in a fresh process (so its peak RSS is its own)."""
    full = ["dataset=msl", f"dataset.entities=[{channel}]", "dataset.sensors=all", f"paths.data_dir={root}",
            "trainer.progress=false", "seed=0", "trainer.deterministic=false", *overrides]
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps(full), "--steps", str(steps)],
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return {"overrides": " ".join(overrides), "status": f"failed: {last}"}
    return {"overrides": " ".join(overrides), "status": "ok", **json.loads(p.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_zoo_at_thoc.py")
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "datasets"), help="paths.data_dir holding NASA/")
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--backbones", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    ap.add_argument("--heads", nargs="+", default=["none", "madcluster"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help="more Hydra overrides, after -- (e.g. -- trainer.batch_size=64)")
    a = ap.parse_args(argv)
    if a.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(_child(json.loads(a.child), a.steps)))
        return 0
    rows = [{"backbone": b, "head": h, **measure(ENTRIES[b](h) + a.extra, a.root, a.channel, a.steps)}
            for b in a.backbones for h in a.heads]
    cols = ["backbone", "head", "device", "threads", "batch", "window", "params", "fit_start_s", "s_per_step",
            "windows_per_s", "cpu_s_per_step", "windows_per_cpu_s", "load_avg", "peak_rss_gib", "train_rss_growth_gib",
            "cuda_peak_gib"]
    print("| " + " | ".join(cols) + " | status |\n|" + "---|" * (len(cols) + 1))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + f" | {r['status']} |")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
