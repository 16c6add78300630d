#!/usr/bin/env python
"""Issue 27's speed-ups against the code they replaced, in one run on one machine: the
Anomaly Transformer's prior as a softmax and its fused symmetric KL, DCdetector's fused
attention scores, Deep SVDD's last-step path, and evaluation batches sized by memory with
malloc keeping its big blocks.

    python scripts/bench.py speed [--root ../shared/datasets] [--channel C-1]
        [--backbones anomaly_transformer,dcdetector] [--what score,job] [--repeats 1]

Each measurement runs in a fresh child process at 1 torch thread, ``old`` and ``new``
alternated so that load drifts hit both alike:

- ``old``: the formulas as they were (transcribed below, patched over the package's for
  this child only: they live nowhere else), ``trainer.eval_batch_size=1024`` and malloc's
  defaults (``trainer.allocator=system``), i.e. the code before issue 27;
- ``new``: the package as it is, with its defaults (``trainer.eval_batch_bytes``, 128 MiB;
  ``trainer.allocator=reuse``).

``score``: an untrained detector (``trainer.epochs=0``, same seed for both; the fit-start
hooks run, untimed) scores the channel's train windows and its test windows at stride 1,
through the job's path (``madbench.Detector.fit_group``, then ``Fitted.score_stage``); the
two passes of the score stage are timed, each around the trainer's ``score``; the two
runs' scores are compared (the largest difference over the largest score). The hooks
see the training windows (stride 10) as in a job; before this bench went through the API
they saw every window (stride 1), which warmed the allocator for the train pass: page
faults measured before then are not comparable with later ones. ``job``: the whole ``madbench`` job (fit, score,
protocols) on the channel. Sizes: the MADCluster Table 2 reduced CPU run
(results/madcluster_t2_cpu: Anomaly Transformer d_model 64, d_ff 64, batch 64; DCdetector
d_model 64; Deep SVDD d_model 64, d_ff 64; window 100, every column a sensor, training
windows every 10 steps, 3 epochs). Reported: wall and CPU seconds, minor page faults,
peak RSS of the child, and old ÷ new.
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

SIZES = {
    "anomaly_transformer": ["backbone.model.d_model=64", "backbone.model.d_ff=64", "trainer.batch_size=64"],
    "dcdetector": ["backbone.model.d_model=64"],
    "deepsvdd": ["backbone.model.d_model=64", "backbone.model.d_ff=64"],
}
OLD = ["trainer.eval_batch_size=1024", "trainer.allocator=system"]


# -- the code before issue 27, for the `old` child only ----------------------------------------
def use_old_code() -> None:
    import torch

    from madbench.models import anomaly_transformer, dcdetector, deepsvdd
    from madbench.objectives import association

    eps = association.KL_EPS

    def at_attention(self, x):
        B, L, _ = x.shape
        H = self.n_heads
        q = self.query(x).view(B, L, H, -1)
        k = self.key(x).view(B, L, H, -1)
        v = self.value(x).view(B, L, H, -1)
        scale = 1.0 / math.sqrt(q.shape[-1])
        series = self.dropout(torch.softmax(scale * torch.einsum("blhe,bshe->bhls", q, k), dim=-1))
        out = torch.einsum("bhls,bshd->blhd", series, v).reshape(B, L, -1)
        sigma = torch.pow(3, torch.sigmoid(5 * self.sigma(x)) + 1e-5) - 1
        sigma = sigma.transpose(1, 2).unsqueeze(-1)
        dist = self.distances[:L, :L]
        prior = 1.0 / (math.sqrt(2 * math.pi) * sigma) * torch.exp(-dist ** 2 / 2 / sigma ** 2)
        prior = prior / prior.sum(-1, keepdim=True)
        return self.out(out), series, prior, sigma.squeeze(-1)

    def kl_rows(p, q):
        return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(-1).mean(1)

    def association_losses(series, prior):
        s_loss = p_loss = 0.0
        for s, p in zip(series, prior):
            s_loss = s_loss + kl_rows(s, p.detach()).mean() + kl_rows(p.detach(), s).mean()
            p_loss = p_loss + kl_rows(p, s.detach()).mean() + kl_rows(s.detach(), p).mean()
        return s_loss / len(series), p_loss / len(series)

    def association_discrepancy(series, prior):
        return sum(kl_rows(s, p) + kl_rows(p, s) for s, p in zip(series, prior))

    def dc_logits(self, view):
        emb, x, composed = view
        h, d = self.n_heads, self.query.in_features
        wq, wk = self.query.weight.view(h, -1, d), self.key.weight.view(h, -1, d)
        m, v = wq.transpose(1, 2) @ wk, (self.query.bias.view(h, 1, -1) @ wk).squeeze(1)
        if composed:
            a, pe = emb.matrix(), emb.pe[0]
            row = pe @ m + v[:, None]
            k = a.t() @ m @ a
            u = a.t() @ m @ pe.t()
            z = x[:, None]
            scores = (z @ k + row @ a) @ z.transpose(-1, -2) + z @ u + row @ pe.t()
        elif h == 1:
            n, t, d = x.shape
            g = torch.addmm(v, x.reshape(-1, d), m[0]).view(n, t, d)
            scores = torch.bmm(g, x.transpose(1, 2)).unsqueeze(1)
        else:
            n, t, _ = x.shape
            q = self.query(x).view(n, t, h, -1).transpose(1, 2)
            k = self.key(x).view(n, t, h, -1).transpose(1, 2)
            scores = q @ k.transpose(-1, -2)
        return scores * self.scale

    anomaly_transformer.AnomalyAttention.forward = at_attention
    association.association_losses = association_losses
    association.association_discrepancy = association_discrepancy
    dcdetector.DualAttention.logits = dc_logits
    # Deep SVDD computed every step whether or not a head read them
    deepsvdd.DeepSVDDEncoder.needs_embedding = property(lambda self: True, lambda self, value: None)


# -- one measurement (child process) -------------------------------------------------------------
def child(a) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    if a.variant == "old":
        use_old_code()
    from madbench import run
    from madbench.api import Detector, compose

    overrides = ["experiment=madcluster_t2", "head=none", f"backbone={a.backbone}", "dataset.stride=10",
                 f"dataset.entities=[{a.channel}]", f"paths.data_dir={a.root}", "trainer.num_threads=1",
                 "trainer.progress=false", "logger.csv.plots=false", "trainer.epochs=3", "seed=0",
                 *SIZES.get(a.backbone, []), *(OLD if a.variant == "old" else a.set)]
    if a.what == "score":   # the fit-start hooks only (the Deep SVDD centre), untimed
        overrides.append("trainer.epochs=0")
    cfg = compose(overrides)
    out = {}
    if a.what == "job":
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            df = run.main(cfg, Path(d))
            out["status"] = ",".join(sorted(set(df.status)))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out.update(wall=time.perf_counter() - t0, cpu=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                   sys=r1.ru_stime - r0.ru_stime, faults=r1.ru_minflt - r0.ru_minflt, peak_mib=r1.ru_maxrss / 1024)
        return out
    (entity,) = run.load_entities(cfg)
    det = Detector.from_config(cfg).prepare()
    # the job's two passes of the score stage, timed each: the train split (fit_group, after
    # the hooks) and the test split (Fitted.score_stage)
    spans, score = [], det.trainer_.score

    def timed(*args, **kw):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        res = score(*args, **kw)
        spans.append((r0, t0, resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()))
        return res

    det.trainer_.score = timed
    fitted = det.fit_group([entity], a.backbone)
    (test,), _ = fitted.score_stage([entity.test], [entity.name], desc=f"{a.backbone} score")
    assert len(spans) == 2, f"{len(spans)} passes of the score stage; expected train and test"
    np.save(a.save, np.concatenate([fitted.entities[0]["scoring"].train_.step, test.step]))
    sums = [sum(getattr(r1, k) - getattr(r0, k) for r0, _, r1, _ in spans) for k in ("ru_utime", "ru_stime", "ru_minflt")]
    out.update(split_s=[t1 - t0 for _, t0, _, t1 in spans], wall=sum(t1 - t0 for _, t0, _, t1 in spans),
               cpu=sums[0] + sums[1], sys=sums[1], faults=sums[2], peak_mib=spans[-1][2].ru_maxrss / 1024)
    return out


# -- the parent ----------------------------------------------------------------------------------
def measure(a, backbone: str, what: str, variant: str, save: str) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--backbone", backbone, "--what", what, "--root", a.root,
           "--channel", a.channel, "--save", save, "--set", *a.set]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"bench speed: {backbone} {what} {variant} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str((ROOT / ".." / "shared" / "datasets").resolve()))
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--backbones", default="anomaly_transformer,dcdetector")
    ap.add_argument("--what", default="score", help="score, job or both (score,job)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE",
                    help="Hydra overrides for the new arm only, e.g. trainer.eval_batch_bytes=64MiB")
    ap.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--backbone", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        a.variant = a.child
        print(json.dumps(child(a)))
        return 0
    if not (Path(a.root) / "NASA").exists():
        print(f"bench speed: {a.root}/NASA not found; pass --root", file=sys.stderr)
        return 2
    import numpy as np

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in a.backbones.split(","):
            for what in a.what.split(","):
                for rep in range(a.repeats):
                    res = {}
                    for variant in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                        res[variant] = measure(a, backbone, what, variant, f"{tmp}/{variant}.npy")
                    diff = ""
                    if what == "score":
                        o, n = np.load(f"{tmp}/old.npy"), np.load(f"{tmp}/new.npy")
                        ok = np.isfinite(o)
                        assert (ok == np.isfinite(n)).all(), "the two runs score different steps"
                        diff = f"{np.max(np.abs(n[ok] - o[ok])) / np.max(np.abs(o[ok])):.1e}"
                    rows.append((backbone, what, rep, res, diff))
                    print_rows(rows[-1:], header=len(rows) == 1)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def print_rows(rows, header=True) -> None:
    if header:
        print("| backbone | what | old wall s | new wall s | wall ratio | old CPU s | new CPU s | CPU ratio "
              "| old sys s | new sys s | old faults | new faults | old peak MiB | new peak MiB | peak ratio "
              "| train share of scoring (new) | max abs(new − old) / max abs(old) |")
        print("|" + "---|" * 17)
    for backbone, what, _, r, diff in rows:
        o, n = r["old"], r["new"]
        share = f"{n['split_s'][0] / sum(n['split_s']):.0%}" if "split_s" in n else ""
        print(f"| {backbone} | {what} | {o['wall']:.1f} | {n['wall']:.1f} | {o['wall'] / n['wall']:.2f} "
              f"| {o['cpu']:.1f} | {n['cpu']:.1f} | {o['cpu'] / n['cpu']:.2f} | {o['sys']:.1f} | {n['sys']:.1f} "
              f"| {o['faults']:,} | {n['faults']:,} | {o['peak_mib']:.0f} | {n['peak_mib']:.0f} "
              f"| {n['peak_mib'] / o['peak_mib']:.2f} | {share} | {diff} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
