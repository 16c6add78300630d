"""The authors' USAD (manigalati/usad) for ``bench.py zoo``: their ``UsadModel`` and their
``training`` loop, imported from a checkout given on the command line and run as they are
(never copied into this project).

    git clone https://github.com/manigalati/usad /tmp/usad
    python scripts/bench.py zoo --backbones usad --reference usad=/tmp/usad

At madbench's config: w = L·D and z = L·hidden (``cfg.backbone.model.hidden``), the same
training and validation windows flattened step by step as their notebook does
(``view([N, w])``), ``DataLoader(TensorDataset, batch_size, shuffle=False)`` as in the
notebook and DeepOD, ``opt_func = Adam(lr=cfg.trainer.optimizer.lr)``. ``training(1, ...)``
is called once per epoch (one epoch: their two-phase loop over the batches, then their
validation pass), so each epoch is timed on its own; their optimisers are re-created at
every call, which costs nothing measurable.

Their ``utils.py`` imports seaborn for a plotting helper the training never calls; when
seaborn is not installed an empty module stands in for it.
"""
from __future__ import annotations

import functools
import importlib
import sys
import time
import types


def _import_usad(checkout: str):
    sys.path.insert(0, checkout)
    try:
        importlib.import_module("seaborn")
    except ImportError:
        sys.modules["seaborn"] = types.ModuleType("seaborn")
    return importlib.import_module("usad")


def run(checkout: str, data, epochs: int) -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    usad = _import_usad(checkout)
    cfg = data.cfg
    n, L, D = data.train.shape
    w_size, z_size = L * D, L * int(cfg.backbone.model.hidden)
    bs = int(cfg.trainer.batch_size)

    def loader(x):
        flat = torch.from_numpy(x).float().view([len(x), w_size])
        return DataLoader(TensorDataset(flat), batch_size=bs, shuffle=False, num_workers=0)

    train_loader, val_loader = loader(data.train), loader(data.val)
    model = usad.to_device(usad.UsadModel(w_size, z_size), usad.device)
    opt = functools.partial(torch.optim.Adam, lr=float(cfg.trainer.optimizer.lr))
    seconds, cpu = [], []
    for _ in range(epochs):
        if usad.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        usad.training(1, model, train_loader, val_loader, opt_func=opt)
        if usad.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"seconds": seconds, "cpu_seconds": cpu, "params": sum(p.numel() for p in model.parameters()),
            "reference_device": str(usad.device)}
