"""Training throughput and peak memory of the zoo's backbones at their papers' sizes on one
NASA channel, with and without ``head=madcluster``, and the authors' implementation beside
(same windows, sizes, batch size and learning rate, in the same run) where one is
registered. Ratios, never absolute timings, are what to quote.

    git clone https://github.com/manigalati/usad /tmp/usad          # outside the project
    python scripts/bench.py zoo                                      # every backbone, both heads
    python scripts/bench.py zoo --backbones usad --head none --reference usad=/tmp/usad
    python scripts/bench.py zoo --backbones beatgan --extra backbone.model.filters=16
    python scripts/bench.py zoo --tiny                               # debug=tiny on synthetic data (smoke)

The data: ``dataset=msl dataset.entities=[--channel] dataset.sensors=all`` from
``--data-dir`` (MSL C-1: 2158 train steps × 55 columns), windows of the dataset's 100
steps, the last 20 % of the training windows for validation; each backbone at the sizes of
its YAML plus its ``ZOO`` overrides, trained with its ``recipe`` (batch size, learning
rate); the validation pass runs at the training batch size.

Each measurement runs in a fresh Python process (its peak memory is its own): it loads
the channel, notes its resident memory, builds the model, trains ``--epochs`` epochs
(madbench: ``madbench.Detector.fit_group``, the job's training path; a reference: its own
training function, one epoch per call) and reports the last epoch's wall time and CPU time
of the process (training + the validation pass, as both loops do per epoch; with
``--epochs 1`` madbench's CPU time also holds building the model), the training windows per
second of each, the peak RSS of the process at the end of the last epoch (madbench's
``fit_group`` scores the train split after it: not measured), its increase over the RSS
before the model was built, and on CUDA the peak allocated memory likewise. Determinism is
off (``trainer.deterministic=false``) on both sides. Measurements alternate between implementations, ``--repeats``
times; the table gives medians, and the ratios ours/reference of the medians (> 1:
madbench is faster). On a shared CPU, wall time moves with the other jobs' load; with
``--threads 1`` the CPU-time ratio is the steadier figure (on a GPU, quote wall time).

Registering a backbone is one line in ``ZOO``: its overrides at the paper's size and,
where an authors' implementation exists, ``"module:function"`` of a script module that
runs it (``bench_zoo_usad.py`` shows the interface: ``run(checkout, data, epochs) ->
{"seconds": [wall s per epoch], "cpu_seconds": [process CPU s per epoch]}``; the checkout is given with ``--reference NAME=DIR``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
MARK = "ZOO_RESULT "


@dataclass(frozen=True)
class Entry:
    """A backbone in the benchmark: Hydra overrides at its paper's size, and the
    ``module:function`` running its authors' implementation (None: none to compare)."""

    overrides: tuple[str, ...] = ()
    reference: str | None = None


ZOO: dict[str, Entry] = {
    # USAD at DeepOD's L100/h100 (98M parameters): its latent is wider than MSL's 55 columns
    "usad": Entry(("backbone=usad", "backbone.model.hidden=100", "backbone.model.wide_latent=true"),
                  reference="bench_zoo_usad:run"),
    "beatgan": Entry(("backbone=beatgan",)),
    "omnianomaly": Entry(("backbone=omnianomaly",), reference="bench_zoo_omni_timesnet:run_timesead"),
    "timesnet": Entry(("backbone=timesnet",), reference="bench_zoo_omni_timesnet:run_tslib"),
    "anomaly_transformer": Entry(("backbone=anomaly_transformer",)),  # the authors' code needs CUDA
    "thoc": Entry(("backbone=thoc",)),  # no official code
    "dcdetector": Entry(("backbone=dcdetector",)),  # vs the authors': bench.py dcdetector
    "deepsvdd": Entry(("backbone=deepsvdd",)),
    # FITS at the authors' AD size (window 400, dsr 4: 10,200 complex parameters)
    "fits": Entry(("backbone=fits", "dataset.window=400"), reference="bench_zoo_fits:run"),
    # telemanom's / Orion's LSTM-DT forecaster (window 250); their Keras code does not install here
    "lstm_dt": Entry(("backbone=lstm_dt", "dataset.window=250")),
    "vae": Entry(("backbone=vae",)),  # Orion's VAE is Keras
}


@dataclass
class ZooData:
    """What a reference runner gets: the windows madbench trains and validates on (float32
    numpy [N, L, D], sensors first), the composed config (sizes under ``cfg.backbone.model``,
    ``cfg.trainer.batch_size``, ``cfg.trainer.optimizer.lr``) and the device."""

    train: "object"
    val: "object"
    cfg: "object"
    device: str
    extra: dict = field(default_factory=dict)


# -- one measurement, in its own process ----------------------------------------------------------
def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _worker(spec: dict) -> dict:
    import numpy as np
    import torch
    from madbench.api import Detector, compose, seed_everything
    from madbench.data.preprocess import Preprocessor
    from madbench.data.windows import Windows
    from madbench.run import load_entities

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    det = Detector.from_config(compose(spec["overrides"])).prepare()
    cfg, trainer = det.config_, det.trainer_
    (entity,) = load_entities(cfg)[:1]
    cuda = trainer.device.type == "cuda"
    # both sides seeded before the RSS baseline (madbench's fit_group seeds again, alike): torch
    # maps about 65 MiB the first time the deterministic mode is set, memory of no model
    seed_everything(int(cfg.seed), deterministic=trainer.deterministic)
    scaled = Preprocessor(scaler=cfg.dataset.get("scaler", "minmax")).apply(entity)
    w = Windows(scaled.train, det.spec_, device=trainer.device)
    tr_idx, va_idx = w.split(trainer.val_ratio)
    out = {"n_train": int(len(tr_idx)), "n_val": int(len(va_idx)), "device": str(trainer.device),
           "threads": torch.get_num_threads()}
    if spec["impl"] == "madbench":
        del w
        rss0 = _rss_kib()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        marks, peaks = [time.process_time()], {}

        def on_epoch(rec):
            marks.append(time.process_time())
            # the peaks of training: fit_group scores the train split after the last epoch
            peaks["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if cuda:
                peaks["cuda"] = torch.cuda.max_memory_allocated()

        fitted = det.fit_group([entity], spec["backbone"], on_epoch=on_epoch)
        out["params"] = sum(p.numel() for p in fitted.model.backbone.parameters())
        seconds = [h["seconds"] for h in fitted.history]
        cpu = list(np.diff(marks))
    else:
        cols = torch.as_tensor(entity.input_idx, device=trainer.device)
        data = ZooData(train=w.inputs(tr_idx, cols).cpu().numpy(), val=w.inputs(va_idx, cols).cpu().numpy(),
                       cfg=cfg, device=str(trainer.device))
        del w
        module, function = spec["reference"].split(":")
        runner = getattr(importlib.import_module(module), function)
        rss0 = _rss_kib()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        res = runner(spec["checkout"], data, int(spec["epochs"]))
        seconds, cpu = list(res["seconds"]), list(res["cpu_seconds"])
        out.update({k: v for k, v in res.items() if k not in ("seconds", "cpu_seconds")})
        peaks = {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        if cuda:
            peaks["cuda"] = torch.cuda.max_memory_allocated()
    peak = peaks["rss"]
    out.update({"seconds": seconds, "epoch_s": seconds[-1], "windows_per_s": len(tr_idx) / seconds[-1],
                "cpu_seconds": [float(c) for c in cpu], "epoch_cpu_s": float(cpu[-1]),
                "windows_per_cpu_s": len(tr_idx) / float(cpu[-1]),
                "peak_rss_mib": peak / 1024, "rss_increase_mib": (peak - rss0) / 1024})
    if cuda:
        out["cuda_peak_mib"] = peaks["cuda"] / 2 ** 20
    return out


def measure(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return {"error": err, "wall_s": time.perf_counter() - t0}
    return json.loads(lines[-1][len(MARK):])


# -- the table -----------------------------------------------------------------------------------
def _median(rows: list[dict], key: str):
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else None


def _fmt(x, spec=".1f"):
    return "—" if x is None else format(x, spec)


def render(results: dict) -> list[dict]:
    rows = []
    for (backbone, head, impl), runs in results.items():
        ok = [r for r in runs if "error" not in r]
        rows.append({"backbone": backbone, "head": head, "impl": impl, "runs": len(ok),
                     "error": next((r["error"] for r in runs if "error" in r), None),
                     "params": ok[0].get("params") if ok else None,
                     "epoch_s": _median(ok, "epoch_s"), "windows_per_s": _median(ok, "windows_per_s"),
                     "epoch_cpu_s": _median(ok, "epoch_cpu_s"), "windows_per_cpu_s": _median(ok, "windows_per_cpu_s"),
                     "peak_rss_mib": _median(ok, "peak_rss_mib"), "rss_increase_mib": _median(ok, "rss_increase_mib"),
                     "cuda_peak_mib": _median(ok, "cuda_peak_mib"),
                     "device": ok[0]["device"] if ok else None, "threads": ok[0]["threads"] if ok else None})
    ref = {r["backbone"]: r for r in rows if r["impl"] == "reference" and r["windows_per_s"]}
    print("| backbone | head | implementation | params | epoch s | windows/s | ratio ours/ref | epoch CPU s "
          "| windows/CPU-s | ratio ours/ref (CPU) | peak RSS MiB | RSS increase MiB | CUDA peak MiB | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = ratio_cpu = None
        if r["impl"] == "madbench" and r["backbone"] in ref and r["windows_per_s"]:
            ratio = r["windows_per_s"] / ref[r["backbone"]]["windows_per_s"]
            ratio_cpu = r["windows_per_cpu_s"] / ref[r["backbone"]]["windows_per_cpu_s"]
            r["ratio_vs_reference"], r["ratio_vs_reference_cpu"] = ratio, ratio_cpu
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else "—"
        if r["error"] and not r["runs"]:
            print(f"| {r['backbone']} | {r['head']} | {r['impl']} | failed: {r['error']} |||||||||| 0 |")
            continue
        print(f"| {r['backbone']} | {r['head']} | {r['impl']} | {params} | {_fmt(r['epoch_s'], '.2f')} | "
              f"{_fmt(r['windows_per_s'])} | {_fmt(ratio, '.3f')} | {_fmt(r['epoch_cpu_s'], '.2f')} | "
              f"{_fmt(r['windows_per_cpu_s'])} | {_fmt(ratio_cpu, '.3f')} | {_fmt(r['peak_rss_mib'], '.0f')} | "
              f"{_fmt(r['rss_increase_mib'], '.0f')} | {_fmt(r['cuda_peak_mib'], '.0f')} | {r['runs']} |")
    if rows:
        print(f"\ndevice: {rows[0]['device']}, torch threads: {rows[0]['threads']}")
    return rows


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        print(MARK + json.dumps(_worker(json.loads(argv[1]))))
        return []
    ap = argparse.ArgumentParser(prog="bench.py zoo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default=",".join(ZOO), help=f"comma-separated, of {list(ZOO)}")
    ap.add_argument("--head", default="none,madcluster", help="comma-separated heads (none, madcluster, ...)")
    ap.add_argument("--reference", action="append", default=[], metavar="NAME=CHECKOUT",
                    help="run NAME's authors' implementation from this checkout (repeatable or comma-separated)")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--channel", default="C-1", help="the MSL channel")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last one is timed")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per implementation (alternated)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each worker (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every measurement")
    ap.add_argument("--tiny", action="store_true", help="debug=tiny on synthetic data (a smoke run)")
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args(argv)

    names = [b for b in a.backbones.split(",") if b]
    unknown = [b for b in names if b not in ZOO]
    if unknown:
        ap.error(f"--backbones: unknown {unknown}; registered: {list(ZOO)}")
    checkouts = dict(item.split("=", 1) for arg in a.reference for item in arg.split(",") if item)
    for name in checkouts:
        if name not in ZOO or ZOO[name].reference is None:
            ap.error(f"--reference {name}=...: no reference runner registered for {name!r}")
    data = (["debug=tiny", "dataset.n_systems=1"] if a.tiny else
            ["dataset=msl", f"dataset.entities=[{a.channel}]", "dataset.sensors=all", f"paths.data_dir={a.data_dir}"])
    common = [*data, f"trainer.epochs={a.epochs}", "trainer.progress=false", "trainer.patience=null",
              f"trainer.device={a.device}", "trainer.eval_batch_size=${trainer.batch_size}",
              "trainer.deterministic=false"]
    plan = []
    for backbone in names:
        entry = ZOO[backbone]
        for head in [h for h in a.head.split(",") if h]:
            plan.append((backbone, head, "madbench", {"impl": "madbench", "backbone": backbone,
                         "overrides": [*entry.overrides, f"head={head}", *common, *a.extra]}))
        if backbone in checkouts:
            plan.append((backbone, "none", "reference", {
                "impl": "reference", "backbone": backbone, "reference": entry.reference,
                "checkout": str(Path(checkouts[backbone]).resolve()), "epochs": a.epochs,
                "overrides": [*entry.overrides, "head=none", *common, *a.extra]}))
    results: dict = {}
    for _ in range(a.repeats):
        for backbone, head, impl, spec in plan:  # alternate implementations within each repeat
            spec["threads"] = a.threads
            r = measure(spec)
            print(f"{backbone} {head} {impl}: " + (f"failed: {r['error']}" if "error" in r else
                  f"{r['epoch_s']:.2f} s/epoch ({r['epoch_cpu_s']:.2f} CPU s), {r['windows_per_s']:.1f} windows/s, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB"),
                  file=sys.stderr, flush=True)
            results.setdefault((backbone, head, impl), []).append(r)
    rows = render(results)
    print("overrides:", " ".join(common + a.extra))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
