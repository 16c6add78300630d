"""Zoo benchmark for backbone=timesnet and backbone=omnianomaly: training throughput
(windows/s) and peak memory at the paper's size on one NASA channel, with and without
head=madcluster, and TSLib's TimesNet beside ours in the same run.

    python scripts/bench_zoo_omni_timesnet.py timesnet    --tsl CHECKOUT [--root DIR] [--channel C-1]
    python scripts/bench_zoo_omni_timesnet.py omnianomaly [--timesead CHECKOUT] [--root DIR] [--channel C-1]
    python scripts/bench_zoo_omni_timesnet.py all --tsl CHECKOUT [--timesead CHECKOUT]

``--tsl`` is a clone of thuml/Time-Series-Library, ``--timesead`` one of wagner-d/TimeSeAD
(never committed; e.g. ``git clone https://github.com/thuml/Time-Series-Library /tmp/tsl``);
without them the reference rows are skipped. OmniAnomaly's own code (TensorFlow 1.12) does
not run here; TimeSeAD's PyTorch port is a different reading of the paper (see
``bench_omnianomaly``). Every measurement runs in a child process of its own, so peak memory is that
configuration's alone: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the child's
peak RSS minus its RSS after the data and model are built (``train MiB``).

Both implementations train on the same windows of the same channel (madbench's windows
and scaling: MSL channel, ``dataset.sensors=all``, window 100) at the same batch size, with
the same per-step work: forward, MSE, backward, one Adam step. Before timing, TSLib's
weights are copied into madbench's model and the two reconstructions compared, in eval
mode: with ``reference_quirks=true`` (TSLib's per-batch periods) they must agree to float
precision, or the suite exits 1.

For ``bench.py zoo`` (branch zoo-usad-beatgan's ``scripts/bench_zoo.py``) the reference
runners have its interface, ``run(checkout, data, epochs) -> {"seconds", "cpu_seconds"}``
(one epoch = the training loop plus a validation pass), so registering them is two lines::

    "timesnet": Entry(("backbone=timesnet",), reference="bench_zoo_omni_timesnet:run_tslib"),
    "omnianomaly": Entry(("backbone=omnianomaly",), reference="bench_zoo_omni_timesnet:run_timesead"),

Standalone, ``ZOO = {"timesnet": bench_timesnet, "omnianomaly": bench_omnianomaly}`` runs
the per-step comparison here; each takes ``(root, channel, steps, device, **options)`` and
returns row dicts (``backbone, impl, head, size, batch, windows_per_s, peak_mib, ratio``);
``print_rows`` prints them as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"

# TSLib's MSL script (scripts/anomaly_detection/MSL/TimesNet.sh) = madbench's per-dataset MSL sizes
TIMESNET_MSL = dict(d_model=8, d_ff=16, layers=1, top_k=3, num_kernels=6, batch=128)


# -- the child: one measurement -------------------------------------------------------------
def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _madbench_setup(spec: dict):
    """(cfg, detector, windows, trainer, ctx, train indices, input and sensor columns) for a
    real madbench training step: the model a job builds (``madbench.Detector.new_model``)."""
    import torch

    from madbench.api import Detector, compose
    from madbench.data.preprocess import Preprocessor
    from madbench.data.windows import Windows
    from madbench.detector import FitContext
    from madbench.run import load_entities

    over = [f"backbone={spec['backbone']}", "dataset=msl", f"dataset.entities=[{spec['channel']}]",
            "dataset.sensors=all", f"paths.data_dir={spec['root']}", f"head={spec['head']}",
            f"trainer.device={spec['device']}", f"trainer.batch_size={spec['batch']}", "trainer.progress=false",
            "seed=0", "trainer.deterministic=false", *spec.get("overrides", [])]
    api = Detector.from_config(compose(over)).prepare()
    cfg, trainer = api.config_, api.trainer_
    (entity,) = load_entities(cfg)
    det = api.new_model(entity).to(trainer.device)
    entity = Preprocessor(scaler=cfg.dataset.scaler).apply(entity)
    w = Windows(entity.train, api.spec_, device=trainer.device)
    tr_idx, va_idx = w.split(trainer.val_ratio)
    cols = torch.as_tensor(entity.input_idx, device=trainer.device)
    sens = torch.as_tensor(entity.sensor_idx, device=trainer.device)
    ctx = FitContext(trainer, det, w, tr_idx, va_idx, cols, sens)
    det.train()
    det.on_fit_start(ctx)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(trainer.make_optimizer, trainer.lr_decay)
    ctx.epoch, ctx.stage = 1, "train"
    return cfg, det, w, trainer, ctx, tr_idx, cols, sens


def _tsl_model(checkout: str, n: int, sizes: dict, seq_len: int = 100):
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    from models.TimesNet import Model  # TSLib's, from the checkout

    conf = SimpleNamespace(task_name="anomaly_detection", seq_len=seq_len, label_len=0, pred_len=0, enc_in=n, c_out=n,
                           d_model=sizes["d_model"], d_ff=sizes["d_ff"], e_layers=sizes["layers"],
                           top_k=sizes["top_k"], num_kernels=sizes["num_kernels"], embed="timeF", freq="h",
                           dropout=0.1)
    return Model(conf).float()


def _timesead_omni(checkout: str):
    """TimeSeAD's OmniAnomaly module, loaded without the package's __init__ (which imports
    every model and its optional dependencies): only the files it needs."""
    import importlib
    import importlib.util
    import types

    import torch

    root = Path(checkout) / "timesead"

    def pkg(name, path):
        m = types.ModuleType(name)
        m.__path__ = [str(path)]
        sys.modules[name] = m
        return m

    def real(name, file):
        spec = importlib.util.spec_from_file_location(name, file)
        m = importlib.util.module_from_spec(spec)
        sys.modules[name] = m
        spec.loader.exec_module(m)
        return m

    pkg("timesead", root)
    pkg("timesead.optim", root / "optim")
    real("timesead.optim.loss", root / "optim" / "loss.py")
    models = pkg("timesead.models", root / "models")

    class BaseModel(torch.nn.Module):      # timesead/models/__init__.py's, without its imports
        def grouped_parameters(self):
            return self.parameters(),

    models.BaseModel = BaseModel
    layers = pkg("timesead.models.layers", root / "models" / "layers")
    layers.PlanarFlow = real("timesead.models.layers.planar_nf", root / "models/layers/planar_nf.py").PlanarFlow
    layers.SameCausalZeroPad1d = real("timesead.models.layers.same_pad",
                                      root / "models/layers/same_pad.py").SameCausalZeroPad1d
    importlib.import_module("timesead.models.common")
    pkg("timesead.models.generative", root / "models" / "generative")
    return real("timesead.models.generative.omni_anomaly", root / "models/generative/omni_anomaly.py")


def tsl_to_madbench(state: dict) -> dict:
    """TSLib TimesNet's parameter names → madbench's (the same tensors)."""
    out = {}
    for k, v in state.items():
        if k.startswith("enc_embedding.value_embedding.tokenConv."):
            out["token." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("model."):
            out["blocks." + k[len("model."):]] = v
        elif k.startswith("layer_norm."):
            out["norm." + k[len("layer_norm."):]] = v
        elif k.startswith("projection."):
            out[k] = v
    return out


def _agreement(spec: dict) -> dict:
    """Max |difference| between TSLib's and madbench's reconstructions with TSLib's weights,
    eval mode, one batch: per-batch periods (reference_quirks) and per-window (default)."""
    import numpy as np
    import torch

    _, det, w, trainer, _, tr_idx, cols, sens = _madbench_setup({**spec, "head": "none",
                                                                  "overrides": ["backbone.reference_quirks=true"]})
    ref = _tsl_model(spec["tsl"], len(cols), spec["sizes"]).to(trainer.device).eval()
    ours = det.backbone.eval()
    missing = ours.load_state_dict(tsl_to_madbench(ref.state_dict()), strict=True)
    idx = np.sort(np.random.default_rng(0).choice(tr_idx, size=spec["batch"], replace=False))  # spread over the series
    x = trainer.batch(w, idx, cols, sens)["x"]
    with torch.no_grad():
        r = ref(x, None, None, None)
        quirk = ours(x).reconstruction
        for b in ours.blocks:
            b.per_batch = False
        default = ours(x).reconstruction
    return {"max_abs_diff_quirks": float((r - quirk).abs().max()), "max_abs_diff_default": float((r - default).abs().max()),
            "scale": float(r.abs().max()), "missing": str(missing)}


def _child(spec: dict) -> dict:
    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    if spec["kind"] == "agreement":
        return _agreement(spec)
    _, det, w, trainer, ctx, tr_idx, cols, sens = _madbench_setup(spec)
    dev = trainer.device
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(tr_idx, size=spec["batch"], replace=False)) for _ in range(spec["steps"] + spec["warmup"])]
    if spec["impl"] == "tslib":
        model = _tsl_model(spec["tsl"], len(cols), spec["sizes"]).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        crit = torch.nn.MSELoss()

        def step(idx):
            x = trainer.batch(w, idx, cols, sens)["x"]
            opt.zero_grad()
            loss = crit(model(x, None, None, None), x)
            loss.backward()
            opt.step()
    elif spec["impl"] == "timesead":
        mod = _timesead_omni(spec["timesead"])
        model = mod.OmniAnomaly(len(cols)).to(dev).train()   # its defaults: z 3, GRU 500, dense (500, 500), 20 flows
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        crit = mod.OmniAnomalyLoss()

        def step(idx):
            x = trainer.batch(w, idx, cols, sens)["x"].transpose(0, 1)   # TimeSeAD is time-first
            opt.zero_grad()
            loss = crit(model((x,)), (x,))
            loss.backward()
            opt.step()
    else:
        def step(idx):
            det.training_step(trainer.batch(w, idx, cols, sens), ctx)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base = _rss_mib()            # data and model built; the optimiser state comes with the first steps
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    for idx in batches[:spec["warmup"]]:
        step(idx)
    sync()
    t0 = time.perf_counter()
    for idx in batches[spec["warmup"]:]:
        step(idx)
    sync()
    dt = time.perf_counter() - t0
    out = {"windows_per_s": spec["steps"] * spec["batch"] / dt, "seconds": dt}
    if dev.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["train_mib"] = out["peak_mib"] - base_cuda
    else:
        out["peak_mib"] = _peak_rss_mib()
        out["train_mib"] = max(out["peak_mib"] - base, 0.0)
    return out


def run_child(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    p = subprocess.run([sys.executable, __file__, "_child", json.dumps(spec)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        return {"error": err}
    return json.loads(lines[-1])


# -- the suites -------------------------------------------------------------------------------
def bench_timesnet(root=DEFAULT_DATA, channel="C-1", steps=20, device="auto", tsl=None, warmup=3, threads=None,
                   sizes=None, **_) -> list[dict]:
    sizes = dict(TIMESNET_MSL, **(sizes or {}))
    over = [f"backbone.model.{k}={sizes[k]}" for k in ("d_model", "d_ff", "layers", "top_k", "num_kernels")]
    common = dict(backbone="timesnet", root=str(root), channel=channel, steps=steps, warmup=warmup, device=device,
                  batch=sizes["batch"], sizes=sizes, tsl=tsl, threads=threads)
    size = f"d{sizes['d_model']}/ff{sizes['d_ff']}/{sizes['layers']}L/k{sizes['top_k']}"
    rows = []
    if tsl:
        agree = run_child(dict(common, kind="agreement", impl="madbench", head="none", overrides=over))
        rows.append({"backbone": "timesnet", "impl": "agreement with TSLib", "head": "-", "size": size,
                     "batch": sizes["batch"], **agree})
    runs = [("madbench", "none", []), ("madbench", "madcluster", []),
            ("madbench per-batch periods", "none", ["backbone.reference_quirks=true"])]
    if tsl:
        runs.append(("tslib", "none", []))
    for impl, head, extra in runs:
        r = run_child(dict(common, kind="train", impl="tslib" if impl == "tslib" else "madbench", head=head,
                           overrides=over + extra))
        rows.append({"backbone": "timesnet", "impl": impl, "head": head, "size": size, "batch": sizes["batch"], **r})
    ref = next((r for r in rows if r["impl"] == "tslib" and "windows_per_s" in r), None)
    for r in rows:
        if ref and "windows_per_s" in r:
            r["ratio"] = r["windows_per_s"] / ref["windows_per_s"]
    return rows


def bench_omnianomaly(root=DEFAULT_DATA, channel="C-1", steps=5, device="auto", warmup=1, threads=None, batch=50,
                      timesead=None, **_) -> list[dict]:
    """The authors' code is TensorFlow 1.12 (Python 3.6) and does not run here. With
    ``timesead`` (a wagner-d/TimeSeAD checkout) its PyTorch port runs beside ours: a
    different reading (the dense layers inside the latent recurrence, a learnable Kalman
    prior), so its ratio compares implementations of the paper, not equal code."""
    common = dict(backbone="omnianomaly", root=str(root), channel=channel, steps=steps, warmup=warmup, device=device,
                  batch=batch, threads=threads, kind="train", timesead=timesead)
    runs = [("madbench", "none"), ("madbench", "madcluster")] + ([("timesead", "none")] if timesead else [])
    rows = []
    for impl, head in runs:
        r = run_child(dict(common, head=head, impl=impl))
        rows.append({"backbone": "omnianomaly", "impl": impl, "head": head, "size": "GRU500/z3/20NF",
                     "batch": batch, **r})
    ref = next((r for r in rows if r["impl"] == "timesead" and "windows_per_s" in r), None)
    for r in rows:
        if ref and "windows_per_s" in r:
            r["ratio"] = r["windows_per_s"] / ref["windows_per_s"]
    return rows


ZOO = {"timesnet": bench_timesnet, "omnianomaly": bench_omnianomaly}


# -- reference runners in bench_zoo.py's interface: run(checkout, data, epochs) -> {"seconds", "cpu_seconds"} --
def _epochs(data, epochs, model, train_step, val_loss, after_epoch=None) -> dict:
    """Time ``epochs`` epochs of a reference loop over ``data.train`` (shuffled batches of
    ``cfg.trainer.batch_size``) plus its validation pass over ``data.val``."""
    import torch

    dev = torch.device(data.device)
    bs = int(data.cfg.trainer.batch_size)
    train = torch.from_numpy(data.train).float().to(dev)
    val = torch.from_numpy(data.val).float().to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    seconds, cpu = [], []
    for epoch in range(epochs):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        for idx in torch.randperm(len(train), generator=gen).split(bs):
            train_step(train[idx.to(dev)])
        model.eval()
        with torch.no_grad():
            for b in range(0, len(val), bs):
                val_loss(val[b:b + bs])
        if after_epoch is not None:
            after_epoch(epoch + 1)
        sync()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"seconds": seconds, "cpu_seconds": cpu, "params": sum(p.numel() for p in model.parameters())}


def run_tslib(checkout: str, data, epochs: int) -> dict:
    """TSLib's TimesNet (models/TimesNet.py from the checkout) with its anomaly-detection
    loop (exp_anomaly_detection.py: Adam, MSE, LR halved after every epoch, a validation
    pass) at madbench's sizes (``cfg.backbone.model``)."""
    import torch

    m, cfg = data.cfg.backbone.model, data.cfg
    sizes = {k: int(m[k]) for k in ("d_model", "d_ff", "layers", "top_k", "num_kernels")}
    model = _tsl_model(checkout, data.train.shape[2], sizes, seq_len=data.train.shape[1]).to(data.device)
    lr = float(cfg.trainer.optimizer.lr)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    crit = torch.nn.MSELoss()

    def step(x):
        opt.zero_grad()
        crit(model(x, None, None, None), x).backward()
        opt.step()

    def halve(epoch):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 ** epoch

    return _epochs(data, epochs, model, step, lambda x: crit(model(x, None, None, None), x).item(), halve)


def run_timesead(checkout: str, data, epochs: int) -> dict:
    """TimeSeAD's OmniAnomaly port (a different reading of the paper, see
    ``bench_omnianomaly``) at madbench's sizes, Adam at ``cfg.trainer.optimizer.lr``."""
    import torch

    m, cfg = data.cfg.backbone.model, data.cfg
    mod = _timesead_omni(checkout)
    model = mod.OmniAnomaly(data.train.shape[2], latent_dim=int(m.z_dim), rnn_hidden_dims=(int(m.rnn_hidden),),
                            dense_hidden_dims=(int(m.dense_dim),) * int(m.dense_layers),
                            nf_layers=int(m.nf_layers)).to(data.device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.trainer.optimizer.lr))
    crit = mod.OmniAnomalyLoss()

    def loss(x):
        x = x.transpose(0, 1)                       # TimeSeAD is time-first
        return crit(model((x,)), (x,))

    def step(x):
        opt.zero_grad()
        loss(x).backward()
        opt.step()

    return _epochs(data, epochs, model, step, lambda x: loss(x).item())


def print_rows(rows: list[dict]) -> None:
    print("| backbone | impl | head | size | batch | windows/s | ratio vs ref | peak MiB | train MiB | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "max_abs_diff_quirks" in r:
            note = (f"max |ours − TSLib|: {r['max_abs_diff_quirks']:.2e} per-batch periods, "
                    f"{r['max_abs_diff_default']:.2e} per-window (output scale {r['scale']:.2f})")
            print(f"| {r['backbone']} | {r['impl']} | - | {r['size']} | {r['batch']} | | | | | {note} |")
            continue
        if "error" in r:
            print(f"| {r['backbone']} | {r['impl']} | {r['head']} | {r['size']} | {r['batch']} | | | | | failed: {r['error']} |")
            continue
        ratio = f"{r['ratio']:.2f}×" if "ratio" in r else ""
        print(f"| {r['backbone']} | {r['impl']} | {r['head']} | {r['size']} | {r['batch']} | {r['windows_per_s']:.0f} "
              f"| {ratio} | {r['peak_mib']:.0f} | {r['train_mib']:.0f} | |")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        print(json.dumps(_child(json.loads(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(prog="bench_zoo_omni_timesnet.py")
    ap.add_argument("which", choices=[*ZOO, "all"])
    ap.add_argument("--root", default=str(DEFAULT_DATA), help="paths.data_dir holding NASA/")
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default: 20 TimesNet, 5 OmniAnomaly)")
    ap.add_argument("--tsl", default=None, help="a Time-Series-Library checkout (TSLib's TimesNet beside ours)")
    ap.add_argument("--timesead", default=None, help="a TimeSeAD checkout (its OmniAnomaly port beside ours)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in every child (CPU)")
    a = ap.parse_args(argv)
    if not (Path(a.root) / "NASA").exists():
        print(f"bench zoo: {a.root}/NASA not found; pass --root", file=sys.stderr)
        return 2
    rows = []
    for name in (list(ZOO) if a.which == "all" else [a.which]):
        kw = dict(root=a.root, channel=a.channel, device=a.device, tsl=a.tsl, timesead=a.timesead, threads=a.threads)
        if a.steps:
            kw["steps"] = a.steps
        rows += ZOO[name](**kw)
    print_rows(rows)
    bad = [r for r in rows if "error" in r or r.get("max_abs_diff_quirks", 0) > 1e-4 * max(1.0, r.get("scale", 1.0))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
