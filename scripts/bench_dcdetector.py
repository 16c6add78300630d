"""Benchmark DCdetector + MADCluster: madbench against the MADCluster reference's code, same run.

    python scripts/bench.py dcdetector --authors /tmp/madcluster_authors   # a clone of SYLee1996/MADCluster
    python scripts/bench.py dcdetector                                      # clones it into a temporary directory
    python scripts/bench.py dcdetector --skip-epoch                         # equal results + training step only

The authors' code is the MADCluster reference's DCdetector + MADCluster (``MADCluster_MODEL.Network``
trained by ``MADCluster_SOLVER.training``), imported from the checkout (never copied into
the project; it needs ``einops``). Both sides run at the paper config
(MADCluster_run_all_datasets.py: window 100, batch 128, d_model 256, patches [2, 5, 10],
1 head, 3 layers, soft-boundary, Adam(amsgrad) lr 1e-4, weight decay 1e-5) on one NASA
channel with all its columns (``--channel``, default C-1: 55 columns); madbench runs
``backbone=dcdetector backbone.reference_quirks=true head=madcluster`` (the authors' model).

1. **Equal results** (one process, eval mode: dropout off on both sides): the authors'
   He-initialised weights are copied into madbench (``WEIGHT_MAP``), and the same batch of
   128 windows gives the loss ``(prior_loss − series_loss) + log(mean Σ(L_map + L_cluster)
   + 1e-8)`` on both sides (to 1e-5), the same per-step discrepancy Σ_u [KL(S‖P̂) + KL(P̂‖S)]
   (the score's input) and the same gradients of every mapped parameter. The authors' loss
   is assembled from their own functions (``my_kl_loss``, ``custom_loss_function``,
   ``mapping_loss_function``) following BACKBONES.md point 2; their gradients come from one
   call of their ``training`` on that batch (optimisers at lr 0). madbench is checked on both
   of its paths (scores from the embeddings' narrow inputs, as in eval mode, and from the
   embeddings, with recomputation, as in training with dropout); the worst is printed.
2. **Training step** (each side in its own process, so that the peak RSS is its own):
   forward (+ loss) and backward (+ optimiser steps) of a 128-window step after one warm-up
   step, in CPU seconds (user + system, all threads: the steadier measure on a shared
   machine) and wall seconds. The authors' step is one call of their ``training`` on one
   batch, its forward a separate call of ``Network.forward``.
3. **Epoch on the channel**, each as it runs: madbench's job path (``Detector.fit_group``)
   for one epoch (train windows, then the validation windows: the last 20% of train; wall
   time ``Fitted.fit_seconds``, CPU time and peak RSS up to the epoch's end, building the
   model included: milliseconds; the train split's scoring after it is not in them); the authors' epoch
   as ``main_trainer`` runs it: ``training`` over every train window, ``validation`` (on the
   test split, their val = test) and ``testing`` (on the test split, metrics included),
   which madbench does not do per epoch.

Run it on an otherwise idle machine: the authors' step needs about 11 GB (the bench prints
the load average seen during the runs).

Prints a table with the ratios and each side's peak RSS; exits 1 when the results disagree.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
AUTHORS_URL = "https://github.com/SYLee1996/MADCluster"
LOSS_TOL = 1e-5
GRAD_REL_TOL = 1e-4
STEP_REL_TOL = 1e-5

#: the authors' parameter name (MADCluster_MODEL.Network) → madbench's (Detector), per patch
#: index i and layer l. The key bias, value/out projections and LayerNorms have no effect on
#: any loss or score (the softmax over keys cancels a key bias; the rest is never used).
WEIGHT_MAP = {
    "embedding_patch_size.{i}.value_embedding.tokenConv.weight": "backbone.patch_embed.{i}.conv.weight",
    "embedding_patch_num.{i}.value_embedding.tokenConv.weight": "backbone.inpatch_embed.{i}.conv.weight",
    "embedding_window_size.value_embedding.tokenConv.weight": "backbone.window_embed.conv.weight",
    "encoder.attn_layers.{l}.patch_query_projection.weight": "backbone.layers.{l}.query.weight",
    "encoder.attn_layers.{l}.patch_query_projection.bias": "backbone.layers.{l}.query.bias",
    "encoder.attn_layers.{l}.patch_key_projection.weight": "backbone.layers.{l}.key.weight",
    "centroid.cluster_centers": "heads.0.centre",
    "threshold": "heads.0.nu",
}


def paper_config(args) -> dict:
    """The authors' config dict (MADCluster_MAIN.py's keys at MADCluster_run_all_datasets.py's values)."""
    return {
        "MADCluster": True, "batch_size": 128, "window_size": 100, "patch_size": [2, 5, 10], "d_model": 256,
        "n_heads": 1, "e_layers": 3, "k": 3, "temperature": 50.0, "nu": 0.01, "objective": "soft-boundary",
        "smoothing_factor": 0.01, "lr": 1e-4, "lr_lambda": 0.9, "min_delta": 1e-5, "weight_decay": 1e-5,
        "init_method": "he", "init_threshold": 0.5, "dataset": "MSL", "fname": args.channel, "num_epochs": 1,
        "patience": 5, "device": "cpu", "step": 1, "mode": "Train", "feature_size": args.columns,
        "data_path": str(Path(args.root) / "NASA"), "model_save_name": str(Path(args.tmp) / "authors_model"),
    }


def mapped_names(patch_sizes, layers):
    for theirs, ours in WEIGHT_MAP.items():
        if "{i}" in theirs:
            for i in range(len(patch_sizes)):
                yield theirs.format(i=i), ours.format(i=i)
        elif "{l}" in theirs:
            for l in range(layers):
                yield theirs.format(l=l), ours.format(l=l)
        else:
            yield theirs, ours


# -- the two sides ---------------------------------------------------------------------------
def authors_modules(checkout: str):
    sys.path.insert(0, str(Path(checkout) / "MADCluster"))
    import MADCluster_MODEL
    import MADCluster_SOLVER
    import MADCluster_UTILS

    return MADCluster_MODEL, MADCluster_SOLVER, MADCluster_UTILS


def madbench_parts(args, quirks=True):
    """(prepared madbench.Detector, raw entity, scaled train windows) at the paper config."""
    sys.path.insert(0, str(ROOT))
    from madbench.api import Detector, compose
    from madbench.data.preprocess import Preprocessor
    from madbench.data.windows import Windows
    from madbench.run import load_entities

    overrides = ["backbone=dcdetector", f"backbone.reference_quirks={str(quirks).lower()}", "head=madcluster",
                 "dataset=msl", f"dataset.entities=[{args.channel}]", "dataset.sensors=all", "dataset.window=100",
                 f"paths.data_dir={args.root}", "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu",
                 f"seed={args.seed}", "trainer.deterministic=false", *args.override]
    api = Detector.from_config(compose(overrides)).prepare()
    (entity,) = load_entities(api.config_)
    scaled = Preprocessor(scaler=api.config_.dataset.scaler).apply(entity)
    return api, entity, Windows(scaled.train, api.spec_)


def authors_batch(config, mods):
    """The authors' first 128 train windows of the channel (their loader: MinMaxScaler on train)."""
    import torch

    _, _, utils = mods
    loader = utils.get_loader_segment(config["data_path"], batch_size=128, window_size=100, mode="train", step=1,
                                      fname=config["fname"], dataset="MSL")
    ds = loader.dataset
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in range(128)])
    y = torch.stack([torch.as_tensor(ds[i][1]) for i in range(128)])
    return x, y


def authors_model(config, mods, seed):
    import torch

    model_mod, _, utils = mods
    torch.manual_seed(seed)
    model = model_mod.Network(config)
    model.apply(utils.he_init_normal)
    return model


def authors_optimizers(model, config, frozen=False):
    """MADCluster_MAIN.py's two optimisers; ``frozen``: lr 0 and no weight decay (the
    gradients are all that is wanted)."""
    import torch

    lr = 0.0 if frozen else config["lr"]
    opt1 = torch.optim.Adam(model.get_model_params(), lr=lr, betas=(0.9, 0.999),
                            weight_decay=0.0 if frozen else config["weight_decay"], amsgrad=True)
    opt2 = torch.optim.Adam(model.get_thre_param(), lr=lr, amsgrad=True)
    return opt1, opt2


def authors_loss(config, mods, model, x, R):
    """The reference's training loss (BACKBONES.md point 2, METHODS.md MADCluster step 5), from
    the authors' own functions, and their per-step discrepancy [B, L] (the score's input)."""
    import torch

    _, solver, _ = mods
    series, prior, x_latent, p, q, c, thr = model(x)
    L = config["window_size"]
    series_loss = prior_loss = 0.0
    step = 0.0
    for u in range(len(prior)):
        ph = prior[u] / prior[u].sum(-1, keepdim=True).repeat(1, 1, 1, L)
        series_loss = series_loss + (solver.my_kl_loss(series[u], ph.detach()).mean()
                                     + solver.my_kl_loss(ph.detach(), series[u]).mean())
        prior_loss = prior_loss + (solver.my_kl_loss(ph, series[u].detach()).mean()
                                   + solver.my_kl_loss(series[u].detach(), ph).mean())
        step = step + solver.my_kl_loss(series[u], ph) + solver.my_kl_loss(ph, series[u])
    dc = prior_loss / len(prior) - series_loss / len(prior)
    cluster = solver.custom_loss_function(p, q, thr, config)
    _, _, mapping = solver.mapping_loss_function(x_latent, c, R, config)
    head = torch.log(torch.sum(mapping + cluster, dim=[1, 2]).mean() + 1e-8)
    return dc + head, step


def len_windows(args, split: str) -> int:
    """Windows of 100 steps at stride 1 in the channel's train or test file."""
    import numpy as np

    return len(np.load(Path(args.root) / "NASA" / split / f"{args.channel}.npy", mmap_mode="r")) - 100 + 1


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


# -- children --------------------------------------------------------------------------------
def child_equal(args) -> dict:
    import torch

    mods = authors_modules(args.authors)
    config = paper_config(args)
    theirs = authors_model(config, mods, args.seed)
    api, entity, _ = madbench_parts(args)
    det = api.new_model(entity)
    det.heads[0].ensure_centre(config["d_model"])
    ours = dict(det.named_parameters())
    pairs = list(mapped_names(config["patch_size"], config["e_layers"]))
    with torch.no_grad():
        src = dict(theirs.named_parameters())
        for t, o in pairs:
            ours[o].copy_(src[t].reshape(ours[o].shape))
    x, y = authors_batch(config, mods)
    R = torch.zeros(1)
    # eval on both sides: madbench's eval(); the authors' training() calls model.train(), so
    # their dropouts are set to 0 instead (nothing else differs between train and eval there)
    for m in theirs.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    theirs.eval()
    loss_t, step_t = authors_loss(config, mods, theirs, x, R)
    # their gradients: one call of their own training step on this batch, at lr 0
    opt1, opt2 = authors_optimizers(theirs, config, frozen=True)
    mods[1].training(config, [(x, y)], theirs, opt1, opt2, 1, R)
    res = {"loss_authors": float(loss_t), "n_mapped": len(pairs), "loss_diff": 0.0, "step_max_rel": 0.0,
           "grad_max_rel": 0.0, "grad_worst": ""}
    from madbench.models.dcdetector import DCdetector

    det.eval()
    # both of madbench's paths: scores from the embeddings' narrow inputs (what eval mode uses)
    # and from the embeddings (what training with dropout uses)
    for compose in (True, False):
        DCdetector.compose = compose
        det.zero_grad(set_to_none=True)
        out = det(x)
        loss_o = det.total_loss({"x": x, "y": x}, out)["loss"]
        step_o = det.objective.discrepancy(out)
        loss_o.backward()
        res["loss_madbench"] = float(loss_o)
        res["loss_diff"] = max(res["loss_diff"], abs(float(loss_o - loss_t)))
        res["step_max_rel"] = max(res["step_max_rel"],
                                  float(((step_o - step_t).abs() / step_t.abs().clamp_min(1e-12)).max()))
        for t, o in pairs:
            gt = src[t].grad
            go = ours[o].grad
            go = torch.zeros_like(ours[o]) if go is None else go
            rel = float((go.reshape(gt.shape) - gt).abs().max() / gt.abs().max().clamp_min(1e-30))
            if rel > res["grad_max_rel"]:
                res["grad_max_rel"], res["grad_worst"] = rel, f"{o} (compose={compose})"
    res["unmapped_max_grad"] = max((float(p.grad.abs().max()) for n, p in theirs.named_parameters()
                                    if p.grad is not None and n not in dict(pairs)), default=0.0)
    return res


class Clock:
    """Wall and CPU (user + system, all threads) seconds of a block: on a shared machine the
    CPU time is the steadier measure of the work done."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def timings(fwd: Clock, step: Clock, base: float, **extra) -> dict:
    """The step's forward (+ loss) and the rest (backward + optimiser steps), wall and CPU."""
    return {"forward_s": fwd.wall, "backward_s": step.wall - fwd.wall, "step_s": step.wall,
            "forward_cpu": fwd.cpu, "backward_cpu": step.cpu - fwd.cpu, "step_cpu": step.cpu,
            "rss_before_gib": base, "peak_rss_gib": rss_gib(), "load": os.getloadavg()[0], **extra}


def child_step_madbench(args) -> dict:
    import numpy as np
    import torch

    from madbench.detector import FitContext

    api, entity, windows = madbench_parts(args)
    trainer, det = api.trainer_, api.new_model(entity)
    cols = torch.as_tensor(entity.input_idx), torch.as_tensor(entity.sensor_idx)
    ctx = FitContext(trainer, det, windows, *windows.split(trainer.val_ratio), *cols)
    det.train()
    det.on_fit_start(ctx)
    ctx.optimizers, ctx.schedulers = det.configure_optimizers(trainer.make_optimizer, trainer.lr_decay)
    ctx.epoch, ctx.stage = 1, "train"
    batch = trainer.batch(windows, np.arange(128), *cols)
    base = rss_gib()
    det.training_step(batch, ctx)                      # warm-up
    with Clock() as step:
        with Clock() as fwd:
            losses = det.total_loss(batch, det(batch["x"]), ctx)
        ctx.backward(losses["loss"])
        ctx.step()
    ctx.stage = "val"
    det.eval()
    with Clock() as val, torch.no_grad():   # one validation batch (eval mode, no gradient)
        det.validation_step(batch, ctx)
    return timings(fwd, step, base, eval_cpu=val.cpu, eval_s=val.wall)


def child_step_authors(args) -> dict:
    import torch

    mods = authors_modules(args.authors)
    config = paper_config(args)
    model = authors_model(config, mods, args.seed)
    opt1, opt2 = authors_optimizers(model, config)
    x, y = authors_batch(config, mods)
    R = torch.zeros(1)
    base = rss_gib()
    mods[1].training(config, [(x, y)], model, opt1, opt2, 1, R)      # warm-up
    model.train()
    with Clock() as fwd:    # their forward alone (the graph is dropped)
        model(x)
    with Clock() as step:   # their whole training step: forward, loss, backward, both optimisers
        mods[1].training(config, [(x, y)], model, opt1, opt2, 1, R)
    with Clock() as val:    # one batch of their validation (eval mode, no gradient)
        mods[1].validation(config, [(x, y)], model, R)
    # fwd was timed in a separate pass: the step's own backward is step − fwd
    return timings(fwd, step, base, eval_cpu=val.cpu, eval_s=val.wall)


def child_epoch_madbench(args) -> dict:
    api, entity, windows = madbench_parts(args)
    tr, va = windows.split(api.trainer_.val_ratio)
    end = {}
    c0 = time.process_time()
    # the epoch's end: fit_group then scores the train split, which is no part of an epoch
    fitted = api.fit_group([entity], "madbench", on_epoch=lambda rec: end.update(cpu=time.process_time(),
                                                                                 peak=rss_gib()))
    return {"epoch_s": fitted.fit_seconds, "epoch_cpu": end["cpu"] - c0, "train_windows": len(tr),
            "val_windows": len(va), "train_loss": fitted.history[0]["train_loss"], "peak_rss_gib": end["peak"],
            "load": os.getloadavg()[0]}


def child_epoch_authors(args) -> dict:
    import torch

    mods = authors_modules(args.authors)
    _, solver, utils = mods
    config = paper_config(args)
    model = authors_model(config, mods, args.seed)
    opt1, opt2 = authors_optimizers(model, config)
    loaders = {m: utils.get_loader_segment(config["data_path"], batch_size=128, window_size=100, mode=m, step=1,
                                           fname=config["fname"], dataset="MSL") for m in ("train", "val", "test")}
    R = torch.zeros(1)
    parts = {}
    t0, c0 = time.perf_counter(), time.process_time()
    # one epoch of main_trainer: training, validation (val = test), the radius, testing on test
    out = solver.training(config, loaders["train"], model, opt1, opt2, 1, R)
    parts["train_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    _, val_d = solver.validation(config, loaders["val"], model, R)
    torch.tensor(solver.get_radius(torch.cat([out[-1], val_d], dim=0), config["nu"]))
    parts["validation_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    solver.testing(config, loaders["test"], model)
    parts["testing_s"] = time.perf_counter() - t2
    return {"epoch_s": time.perf_counter() - t0, "epoch_cpu": time.process_time() - c0, **parts,
            "train_windows": len(loaders["train"].dataset), "val_windows": len(loaders["val"].dataset),
            "test_windows": len(loaders["test"].dataset), "peak_rss_gib": rss_gib(), "load": os.getloadavg()[0]}


CHILDREN = {"equal": child_equal, "step-madbench": child_step_madbench, "step-authors": child_step_authors,
            "epoch-madbench": child_epoch_madbench, "epoch-authors": child_epoch_authors}


# -- parent ----------------------------------------------------------------------------------
def run_child(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--authors", args.authors, "--root", str(args.root),
           "--channel", args.channel, "--columns", str(args.columns),
           "--seed", str(args.seed), "--tmp", args.tmp, *[a for o in args.override for a in ("--override", o)]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.tmp)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise SystemExit(f"bench dcdetector: {name} failed: {tail}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py dcdetector")
    ap.add_argument("--authors", default=None, help="a clone of SYLee1996/MADCluster (default: cloned to a temp dir)")
    ap.add_argument("--root", default=str(DEFAULT_DATA), help="paths.data_dir holding NASA/")
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--columns", type=int, default=55, help="the channel's column count (MSL: 55)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--override", action="append", default=[],
                    help="a Hydra override for madbench's side (repeatable), e.g. backbone.model.recompute=false")
    ap.add_argument("--skip-epoch", action="store_true", help="equal results and the training step only")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_dcdetector_") as tmp:
        args.tmp = tmp
        if args.authors is None:
            args.authors = str(Path(tmp) / "MADCluster")
            subprocess.run(["git", "clone", "-q", "--depth", "1", AUTHORS_URL, args.authors], check=True)
        if not (Path(args.authors) / "MADCluster" / "MADCluster_MODEL.py").exists():
            raise SystemExit(f"bench dcdetector: --authors {args.authors} is not a clone of {AUTHORS_URL}")
        print(f"DCdetector + MADCluster, {args.channel} ({args.columns} columns), window 100, batch 128, d_model 256, "
              f"patches [2, 5, 10], 1 head, 3 layers; torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}",
              file=sys.stderr)
        eq = run_child("equal", args)
        st = {s: run_child(f"step-{s}", args) for s in ("authors", "madbench")}
        ep = None if args.skip_epoch else {s: run_child(f"epoch-{s}", args) for s in ("authors", "madbench")}
    ok = (eq["loss_diff"] <= LOSS_TOL and eq["grad_max_rel"] <= GRAD_REL_TOL and eq["step_max_rel"] <= STEP_REL_TOL)
    a, m = st["authors"], st["madbench"]
    print("| | authors' code | madbench | authors ÷ madbench |\n|---|---|---|---|")
    for key, label in (("forward", "forward (+ loss)"), ("backward", "backward (+ optimiser steps)"),
                       ("step", "training step, 128 windows")):
        for unit, suffix in (("CPU s", "_cpu"), ("wall s", "_s")):
            k = key + suffix
            print(f"| {label}, {unit} | {a[k]:.1f} | {m[k]:.1f} | {a[k] / m[k]:.2f} |")
    print(f"| peak RSS of the step process, GiB | {a['peak_rss_gib']:.2f} | {m['peak_rss_gib']:.2f} | "
          f"{a['peak_rss_gib'] / m['peak_rss_gib']:.2f} |")
    if ep:
        a, m = ep["authors"], ep["madbench"]
        for unit, k in (("CPU s", "epoch_cpu"), ("wall s", "epoch_s")):
            print(f"| epoch on {args.channel}, {unit} | {a[k]:.0f} | {m[k]:.0f} | {a[k] / m[k]:.2f} |")
        print(f"| peak RSS of the epoch process, GiB | {a['peak_rss_gib']:.2f} | {m['peak_rss_gib']:.2f} | "
              f"{a['peak_rss_gib'] / m['peak_rss_gib']:.2f} |")
        print(f"\nauthors' epoch: training {a['train_s']:.0f} s on {a['train_windows']} windows, validation "
              f"{a['validation_s']:.0f} s and testing {a['testing_s']:.0f} s on {a['test_windows']} test windows "
              f"(val = test); madbench's: {m['train_windows']} train + {m['val_windows']} validation windows "
              f"(the last 20% of train), no test pass.")
    else:
        # an estimate from the per-batch costs measured above (the full epoch: without --skip-epoch)
        n_tr_a, n_te = (len_windows(args, split) for split in ("train", "test"))
        n_tr_m = n_tr_a - round(n_tr_a * 0.2)
        ep_a = math.ceil(n_tr_a / 128) * a["step_cpu"] + 2 * math.ceil(n_te / 128) * a["eval_cpu"]
        ep_m = math.ceil(n_tr_m / 128) * m["step_cpu"] + (n_tr_a - n_tr_m) / 128 * m["eval_cpu"]
        print(f"| epoch on {args.channel}, CPU s, estimated | {ep_a:.0f} | {ep_m:.0f} | {ep_a / ep_m:.2f} |")
        print(f"\nepoch estimate (not timed: --skip-epoch): the authors' {math.ceil(n_tr_a / 128)} training steps on "
              f"{n_tr_a} windows + validation and testing on the {n_te} test windows (2 × {math.ceil(n_te / 128)} "
              f"batches at their measured validation cost per batch, {a['eval_cpu']:.1f} CPU s; their test metrics "
              f"left out); madbench's {math.ceil(n_tr_m / 128)} steps on {n_tr_m} train windows + "
              f"{n_tr_a - n_tr_m} validation windows at {m['eval_cpu']:.1f} CPU s per 128.")
    loads = [r["load"] for r in (*st.values(), *(ep or {}).values())]
    print(f"1-minute load average during the runs: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    print(f"\nequal results (same weights, same batch, eval mode): loss {eq['loss_authors']:.7g} (authors) vs "
          f"{eq['loss_madbench']:.7g} (madbench), |Δ| {eq['loss_diff']:.2e} (tol {LOSS_TOL:g}); per-step discrepancy "
          f"max rel. Δ {eq['step_max_rel']:.2e}; gradients of {eq['n_mapped']} mapped parameters max rel. Δ "
          f"{eq['grad_max_rel']:.2e} ({eq['grad_worst']}); largest gradient of an unmapped parameter "
          f"{eq['unmapped_max_grad']:.2e}: {'OK' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
