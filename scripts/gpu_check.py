#!/usr/bin/env python
"""One prepared GPU check (issue 27): what the MADCluster Table 2 backbones cost at their
papers' sizes on a GPU, and how long the whole M2AD MSL run takes there. Run through
``scripts/gpu_check.sh`` (which bounds it to 8 minutes); ``--dry`` runs the same code on
the CPU at the CPU-test sizes on synthetic data, in seconds (a test does).

Prints one Markdown table, row by row (a cut-short run keeps what it printed):

- each Table 2 backbone (configs/experiment/madcluster_t2.yaml: MSL, every column a
  sensor, window 100, head none) at its YAML's published sizes (USAD: the published
  hidden 100 with ``wide_latent``) on one MSL channel (``--channel``, C-1), its training
  windows at stride 1, in three modes: ``fp32``, ``bf16`` (``trainer.precision=bf16``) and
  ``compile`` (``trainer.compile=true``, fp32). Two epochs: the first (``warm-up s``,
  cuDNN autotuning and compilation) is reported apart, the second is ``fit s/epoch``
  (training and validation); ``score s`` is the second of two scoring passes over the
  channel's test windows at stride 1 (``Fitted.score_stage``: scaling the test split, the
  windows and the score stage; the scoring stage, raw here, is not in it); ``peak GiB`` is
  torch's peak allocated device memory over the row, the job's scoring of the train split
  after the fit included (on the CPU: the process's peak RSS so far). Fit and score go
  through ``madbench.Detector`` (``fit_group``, ``Fitted.score_stage``), the job's path;
  determinism is off (``trainer.deterministic=false``);
- the whole M2AD MSL run (``experiment=m2ad_table2 dataset=msl seed=0``: 27 channels, one
  seed, a child ``madbench`` process) in wall time, or, when it does not finish in the
  time left, the channels it finished and their rate.

Rows run while the time budget (``--budget``, seconds) lasts: the fp32 rows, the bf16
rows, the M2AD run (at most half of what is left then), the compile rows; a row that
would start with less than ``--min-row`` seconds left is printed as skipped.
"""
from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from madbench.api import compose  # noqa: E402 (the job's composition; the tests compose the real rows with it)

#: MADCluster appendix Table 2's backbones (results/madcluster_t2_cpu); the two whose scoring
#: issue 27 rewrote first, TimesNet last (its data-dependent periods recompile under compile)
BACKBONES = ("anomaly_transformer", "dcdetector", "deepsvdd", "usad", "beatgan", "thoc", "omnianomaly", "timesnet")
#: overrides that put a backbone at its published size where its YAML default is not it
PAPER = {"usad": ["backbone.model.hidden=100", "backbone.model.wide_latent=true"]}
MODES = {"fp32": [], "bf16": ["trainer.precision=bf16"], "compile": ["trainer.compile=true"]}
HEADER = ("| backbone | mode | device | params M | warm-up s | fit s/epoch | score s | peak GiB | status |\n"
          "|---|---|---|---|---|---|---|---|---|")


def base_overrides(a) -> list[str]:
    common = ["experiment=madcluster_t2", "head=none", "trainer.epochs=2", "trainer.patience=null",
              "trainer.progress=false", "logger.csv.plots=false", "seed=0", "trainer.deterministic=false"]
    if a.dry:   # the CPU-test sizes on one tiny synthetic system (configs/debug/tiny.yaml)
        return [*common, "debug=tiny", "dataset=synthetic", "dataset.n_systems=1", "trainer.device=cpu"]
    return [*common, f"dataset.entities=[{a.channel}]", f"paths.data_dir={a.root}", "trainer.device=cuda"]


def row(a, backbone: str, mode: str) -> dict:
    """Fit two epochs and score twice, in this process, as a job would."""
    import torch

    from madbench.api import Detector
    from madbench.run import load_entities

    mode_overrides = list(MODES[mode])
    if a.dry and mode == "compile":
        mode_overrides = ["trainer.compile=eager"]  # dynamo's capture without code generation: no compiler needed
    det = Detector.from_config(compose([*base_overrides(a), f"backbone={backbone}",
                                        *([] if a.dry else PAPER.get(backbone, [])), *mode_overrides])).prepare()
    (entity,) = load_entities(det.config_)
    dev = det.trainer_.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    fitted = det.fit_group([entity], backbone)
    hist = fitted.history
    score_s = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        fitted.score_stage([entity.test], [entity.name], desc=f"{backbone} score")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        score_s = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 1024 ** 3
    return {"device": dev.type, "params": sum(p.numel() for p in fitted.model.parameters()) / 1e6,
            "warmup": hist[0]["seconds"], "epoch": hist[-1]["seconds"], "score": score_s, "peak": peak,
            "status": "ok" if len(hist) == 2 else f"{len(hist)} epoch(s)"}


def print_row(backbone, mode, r=None, status=None) -> None:
    if r is None:
        print(f"| {backbone} | {mode} | | | | | | | {status} |", flush=True)
    else:
        print(f"| {backbone} | {mode} | {r['device']} | {r['params']:.2f} | {r['warmup']:.2f} | {r['epoch']:.2f} "
              f"| {r['score']:.2f} | {r['peak']:.2f} | {r['status']} |", flush=True)


def m2ad_run(a, cap: float) -> str:
    """The whole M2AD MSL run in a child process, stopped after ``cap`` seconds: its status
    cell (wall time, or the channels done and their rate)."""
    overrides = ["experiment=m2ad_table2", "seed=0", "trainer.progress=false", "logger.csv.plots=false"]
    if a.dry:
        overrides += ["dataset=synthetic", "debug=tiny", "dataset.n_systems=2", "trainer.epochs=1",
                      "trainer.device=cpu"]
        n_expected = 2
    else:
        overrides += ["dataset=msl", f"paths.data_dir={a.root}", "trainer.device=cuda"]
        n_expected = 27
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "log.txt"
        cmd = [sys.executable, "-m", "madbench", *overrides, f"paths.output_dir={d}", f"hydra.run.dir={d}/run"]
        t0 = time.perf_counter()
        with open(log, "w") as f:
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            try:
                rc = p.wait(timeout=cap)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = None
        wall = time.perf_counter() - t0
        text = log.read_text(errors="replace")
    done = re.findall(r"(\S+): \d+ epochs in \d+ s \(best val_loss [^)]*\), scored in \d+ s", text)
    if rc == 0:
        return f"ok: {len(done)} of {n_expected} channels in {wall:.0f} s"
    if rc is None:
        rate = f", {wall / len(done):.0f} s per channel: about {wall / len(done) * n_expected:.0f} s for " \
               f"{n_expected}" if done else ""
        return f"stopped after {wall:.0f} s: {len(done)} of {n_expected} channels done{rate}"
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    return f"failed (exit {rc}): {last[0][:200]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="on the CPU, at the CPU-test sizes, on synthetic data")
    ap.add_argument("--root", default=str((ROOT / ".." / "shared" / "datasets").resolve()),
                    help="paths.data_dir holding NASA/ (the MSL channels and labeled_anomalies.csv)")
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all rows (gpu_check.sh: 8 min in all)")
    ap.add_argument("--min-row", type=float, default=25.0, help="seconds a row needs left to start")
    ap.add_argument("--out", help="also write the table to this file")
    a = ap.parse_args(argv)
    import torch

    if not a.dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; --dry runs the check on the CPU at the CPU-test sizes", file=sys.stderr)
        return 2
    if not a.dry and not (Path(a.root) / "NASA" / "labeled_anomalies.csv").exists():
        print(f"gpu_check: {a.root}/NASA/labeled_anomalies.csv not found; pass --root", file=sys.stderr)
        return 2
    start = time.perf_counter()
    left = lambda: a.budget - (time.perf_counter() - start)  # noqa: E731
    lines: list[str] = []
    out = sys.stdout

    class Tee:
        def write(self, s):
            lines.append(s)
            return out.write(s)

        def flush(self):
            out.flush()

    sys.stdout = Tee()
    try:
        dev = "cpu (dry run)" if a.dry else torch.cuda.get_device_name(0)
        print(f"gpu_check on {dev}, torch {torch.__version__}, channel {'synthetic' if a.dry else a.channel}, "
              f"budget {a.budget:.0f} s\n")
        print(HEADER, flush=True)
        failures = 0
        backbones = [b for b in a.backbones.split(",") if b]

        def rows(mode):
            nonlocal failures
            for b in backbones:
                if left() < a.min_row:
                    print_row(b, mode, status=f"skipped: {max(left(), 0):.0f} s left")
                    continue
                try:
                    print_row(b, mode, row(a, b, mode))
                except Exception as e:  # one row's failure is a row, the check goes on
                    failures += 1
                    print_row(b, mode, status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
                finally:
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()

        rows("fp32")
        rows("bf16")
        if left() < a.min_row:
            print(f"| M2AD MSL run, 1 seed | fp32 | | | | | | | skipped: {max(left(), 0):.0f} s left |")
        else:
            status = m2ad_run(a, left() / 2)   # the other half for the compile rows
            failures += status.startswith("failed")
            print(f"| M2AD MSL run, 1 seed | fp32 | {'cpu' if a.dry else 'cuda'} | | | | | | {status} |", flush=True)
        rows("compile")
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
    finally:
        sys.stdout = out
    if a.out:
        Path(a.out).write_text("".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
