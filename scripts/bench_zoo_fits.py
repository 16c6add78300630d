"""The FITS authors' anomaly-detection model (VEWOXIC/FITS, ``AD/FITS.py``) for ``bench.py
zoo``: their ``Model``, imported from a checkout given on the command line (never copied into
this project), trained by their ``AD/solver_recon.py`` loop transcribed as it runs: per batch
``zero_grad``, the window downsampled ``[:, ::DSR]``, ``output, _ = model(input)``, MSE
against the whole window, ``backward(retain_graph=True)``, ``step``; then their validation
pass (eval mode, the same loss) over the validation windows.

    git clone https://github.com/VEWOXIC/FITS /tmp/FITS
    python scripts/bench.py zoo --backbones fits --head none --reference fits=/tmp/FITS

At madbench's config: ``seq_len = window // dsr``, ``pred_len = window - seq_len``,
``cut_freq`` as ``cfg.backbone.model.cut_freq`` (null: ``int(window / dsr / 2)``, their
``--cutfreq 0``), ``enc_in`` = the input columns, ``individual`` as configured; Adam at
``cfg.trainer.optimizer.lr``, ``DataLoader(batch_size, shuffle=True)`` for training and
unshuffled for validation, as their ``get_loader_segment``.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path


class _DotDict(dict):
    __getattr__ = dict.__getitem__


def _import_fits(checkout: str):
    path = Path(checkout) / "AD" / "FITS.py"
    if not path.is_file():
        raise FileNotFoundError(f"--reference fits={checkout}: no AD/FITS.py there; expected a clone of "
                                "github.com/VEWOXIC/FITS")
    spec = importlib.util.spec_from_file_location("fits_authors_ad", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(checkout: str, data, epochs: int) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    fits = _import_fits(checkout)
    cfg = data.cfg
    n, L, D = data.train.shape
    dsr = int(cfg.backbone.model.dsr)
    cut = cfg.backbone.model.cut_freq
    cut = int((L / dsr) / 2) if cut is None else int(cut)
    device = torch.device(data.device)
    model = fits.Model(_DotDict(seq_len=L // dsr, enc_in=D, individual=bool(cfg.backbone.model.individual),
                                cut_freq=cut, pred_len=L - L // dsr)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.trainer.optimizer.lr))
    criterion = nn.MSELoss()
    bs = int(cfg.trainer.batch_size)
    train = DataLoader(TensorDataset(torch.from_numpy(data.train)), batch_size=bs, shuffle=True)
    val = DataLoader(TensorDataset(torch.from_numpy(data.val)), batch_size=bs, shuffle=False)
    seconds, cpu = [], []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        for (x,) in train:
            opt.zero_grad()
            x = x.float().to(device)
            output, _ = model(x[:, ::dsr, :])
            loss = criterion(output, x)
            loss.backward(retain_graph=True)
            opt.step()
        model.eval()
        losses = []
        for (x,) in val:
            x = x.float().to(device)
            output, _ = model(x[:, ::dsr, :])
            losses.append(criterion(output, x).item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"seconds": seconds, "cpu_seconds": cpu, "params": sum(p.numel() for p in model.parameters()),
            "reference_device": str(device)}
