"""Peak memory of a real run: all available SMD machines, dataset.pooled=true, one epoch.

Runs ``python -m madbench`` in a child process and reads its peak RSS (getrusage of the
children), so the figure covers the whole job: loading, windows, training, scoring,
metrics. Windows are views (madbench.data.windows), so memory stays O(T·D).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bench.py memory")
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "datasets"), help="paths.data_dir holding SMD/")
    ap.add_argument("--dataset", default="smd")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-train-windows", type=int, default=None)
    ap.add_argument("extra", nargs="*", help="more Hydra overrides")
    a = ap.parse_args(argv)
    if not (Path(a.root) / "SMD").exists() and a.dataset == "smd":
        print(f"bench memory: {a.root}/SMD not found; pass --root", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "madbench", f"dataset={a.dataset}", "dataset.pooled=true",
               f"paths.data_dir={a.root}", f"paths.output_dir={out}", f"trainer.epochs={a.epochs}",
               "trainer.progress=false", "logger.csv.plots=false", *a.extra]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    status = "ok" if p.returncode == 0 else f"failed ({p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode})"
    print(f"| run | status | wall s | peak RSS |\n|---|---|---|---|\n"
          f"| {a.dataset} pooled, {a.epochs} epoch(s) | {status} | {wall:.0f} | {peak_kb / 1024**2:.2f} GiB |")
    print("command:", " ".join(cmd))


if __name__ == "__main__":
    main()
