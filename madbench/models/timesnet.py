"""TimesNet (Wu et al., ICLR 2023) for reconstruction (BACKBONES.md, TimesNet; TSLib
thuml/Time-Series-Library models/TimesNet.py, layers/{Embed,Conv_Blocks}.py and
exp/exp_anomaly_detection.py, read for this).

- **Per-window normalisation** (Non-stationary Transformer's): each window's channels are
  centred and divided by √(var + 1e-5) (biased variance); the output is mapped back with
  the same mean and std. The inputs are the sensors followed by the covariates
  (``Entity.input_idx``), so the reconstructed sensors take the first ``n_outputs``
  channels' statistics (TSLib has inputs = outputs).
- **Embedding**: circular Conv1d(D_in → d_model, k3, no bias, He-normal fan-in) plus the
  fixed sinusoidal positions, dropout 0.1 (no time-feature embedding in anomaly detection).
- **TimesBlock** × ``layers``: the FFT amplitudes of the block's input, averaged over the
  channels, give the top-k frequencies f (the zero frequency never counts) and the periods
  p = L // f; for each period the sequence is zero-padded to a multiple of p, folded to a
  2-D [L/p, p] grid, passed through Inception(d_model → d_ff) – GELU – Inception(d_ff →
  d_model), unfolded, and the k results are summed with softmax-of-amplitude weights;
  residual connection. One LayerNorm, shared by every block, after each block.
- **Output**: Linear(d_model → S) on the last block's normalised output, which is also the
  MADCluster embedding [B, L, d_model] (BACKBONES.md point 4).

**Periods per window (default) or per batch (``reference_quirks=true``).** TSLib's
``FFT_for_Period`` averages the amplitudes over the *batch* before choosing the periods,
so a window's reconstruction — and its score — depends on which windows share its batch
(and on the evaluation batch size: ``trainer.eval_batch_bytes`` or ``trainer.eval_batch_size``).
By default each window chooses its own periods; windows that chose the same period are
folded and convolved together, so the cost stays one 2-D convolution per distinct period in
the batch. The amplitude weights are per window in both (as TSLib's).

An Inception block is the mean of ``num_kernels`` 'same' convolutions of sizes 1, 3, ...,
2·num_kernels − 1; that equals one convolution with their kernels zero-padded to the
largest size and averaged, which is what runs (one convolution instead of six, 121 instead
of 286 multiply-adds per output and channel pair at six kernels). The parameters are still
the six kernels (TSLib's ``kernels.i.weight``), so optimisation is unchanged. A TimesBlock
merges each Inception block's kernels once per forward and uses the merged kernel for every
period's convolution (a merge per period kept one copy and its gradient per distinct period
in the graph: 7.6 GB peak RSS for one training step at TSLib's SMAP size, 2.1 GB merged once).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput
from madbench.models.deepsvdd import sinusoidal_encoding


class InceptionBlock(nn.Module):
    """TSLib's Inception_Block_V1: mean of Conv2d(k×k, padding k//2) for k = 1, 3, ...;
    weights He-normal (fan-out, relu), biases 0."""

    def __init__(self, c_in: int, c_out: int, num_kernels: int = 6):
        super().__init__()
        self.kernels = nn.ModuleList(nn.Conv2d(c_in, c_out, 2 * i + 1, padding=i) for i in range(num_kernels))
        for m in self.kernels:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.kernels)
        w = sum(F.pad(k.weight, [n - 1 - i] * 4) for i, k in enumerate(self.kernels)) / n
        b = sum(k.bias for k in self.kernels) / n
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.merged()
        return F.conv2d(x, w, b, padding=len(self.kernels) - 1)


class TimesBlock(nn.Module):
    def __init__(self, d_model: int, d_ff: int, top_k: int, num_kernels: int, per_batch: bool = False):
        super().__init__()
        self.k, self.per_batch = top_k, per_batch
        self.conv = nn.Sequential(InceptionBlock(d_model, d_ff, num_kernels), nn.GELU(),
                                  InceptionBlock(d_ff, d_model, num_kernels))

    def periods(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(periods [B, k] (long), weights [B, k]) from the FFT amplitudes of x [B, L, d]:
        the top-k non-zero frequencies of each window's channel-mean amplitude, or of the
        batch mean under ``per_batch``; the weights are the window's own amplitudes there."""
        L = x.shape[1]
        amp = torch.fft.rfft(x.float(), dim=1).abs().mean(-1)[:, 1:]          # [B, L//2] (no zero frequency)
        if self.per_batch:
            top = torch.topk(amp.mean(0), self.k).indices                     # [k]
            top = top.unsqueeze(0).expand(x.shape[0], -1)
        else:
            top = torch.topk(amp, self.k, dim=1).indices                      # [B, k]
        weights = amp.gather(1, top)
        return L // (top + 1), weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        period, weight = self.periods(x)
        flat = period.reshape(-1)                                             # (window, rank) pairs
        order = torch.argsort(flat, stable=True)
        values, counts = torch.unique_consecutive(flat[order], return_counts=True)
        # each Inception block's merged kernel once per forward, shared by every period's
        # convolution: merged per period, each copy (d_model · d_ff · 121 floats) and its
        # gradient stayed in the graph, one per distinct period in the batch (up to 3 GB per
        # block at TSLib's SMAP size, batch 128)
        first, act, second = self.conv
        (w1, b1), (w2, b2) = first.merged(), second.merged()
        pad1, pad2 = len(first.kernels) - 1, len(second.kernels) - 1
        outs = []
        for p, idx in zip(values.tolist(), torch.split(order, counts.tolist())):
            seg = x[idx // self.k]                                            # [n, L, d]
            length = -(-L // p) * p
            if length != L:
                seg = F.pad(seg, (0, 0, 0, length - L))
            seg = seg.reshape(len(idx), length // p, p, d).permute(0, 3, 1, 2)
            seg = F.conv2d(act(F.conv2d(seg, w1, b1, padding=pad1)), w2, b2, padding=pad2)
            seg = seg.permute(0, 2, 3, 1).reshape(len(idx), length, d)
            outs.append(seg[:, :L])
        res = torch.cat(outs)[torch.argsort(order)].view(B, self.k, L, d)     # back in (window, rank) order
        w = torch.softmax(weight, dim=1).to(res.dtype)
        return (res * w[:, :, None, None]).sum(1) + x


class TimesNet(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, d_model: int = 8, d_ff: int = 16, layers: int = 1,
                 top_k: int = 3, num_kernels: int = 6, dropout: float = 0.1, reference_quirks: bool = False):
        super().__init__()
        for key, v in (("d_model", d_model), ("d_ff", d_ff), ("layers", layers), ("num_kernels", num_kernels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"backbone.model.{key}={v}; expected an integer >= 1")
        n_freq = window // 2
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= n_freq:
            raise ConfigError(f"backbone.model.top_k={top_k}; expected an integer in [1, {n_freq}]: a window of "
                              f"{window} steps has {n_freq} non-zero frequencies")
        if n_outputs > n_inputs:
            raise ConfigError(f"backbone=timesnet reconstructs {n_outputs} sensors from {n_inputs} inputs; "
                              "expected the sensors among the inputs")
        self.n_outputs = n_outputs
        self.token = nn.Conv1d(n_inputs, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.token.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.register_buffer("pe", sinusoidal_encoding(window, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TimesBlock(d_model, d_ff, top_k, num_kernels, per_batch=bool(reference_quirks))
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        mean = x.mean(1, keepdim=True).detach()
        x = x - mean
        std = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + 1e-5)
        x = x / std
        pe = self.pe if x.shape[1] == self.pe.shape[1] else sinusoidal_encoding(x.shape[1], self.pe.shape[2]).to(x.device)
        h = self.dropout(self.token(x.transpose(1, 2)).transpose(1, 2) + pe)
        for block in self.blocks:
            h = self.norm(block(h))
        S = self.n_outputs
        rec = self.projection(h) * std[:, :, :S] + mean[:, :, :S]
        return BackboneOutput(embedding=h, reconstruction=rec)
