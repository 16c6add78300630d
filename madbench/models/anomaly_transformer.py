"""Anomaly Transformer (Xu et al., ICLR 2022; BACKBONES.md, Anomaly Transformer).

Faithful to thuml/Anomaly-Transformer ``model/{AnomalyTransformer,attn,embed}.py``:

- embedding: a circular Conv1d(C → d_model, k3, no bias, Kaiming-normal fan_in/leaky_relu)
  plus the fixed sinusoidal positional encoding, dropout;
- ``layers`` encoder layers, each: anomaly attention (below), residual + LayerNorm, a
  position-wise conv feed-forward d_model → d_ff → d_model (kernel 1, GELU), residual +
  LayerNorm; then a final LayerNorm and Linear(d_model → S) for the reconstruction.
- anomaly attention, per head h: the *series* association S = softmax(QKᵀ/√E) over the
  window (no causal mask) and the *prior* association, a Gaussian of the distance |i − j|
  with a learnt per-step width σ = 3^(sigmoid(5·s) + 1e-5) − 1, s = Linear(d_model → heads)
  of the layer input. The prior is returned row-normalised (P̂ = prior / Σ_j prior), the
  only form the losses and the score use.

The row-normalised Gaussian is computed as P̂ = softmax_j(−|i − j|²/2σ_i²): its constant
1/(√(2π)σ_i) cancels in the normalisation, and the softmax needs one full-size pass
instead of the reference's exp, scale, sum and divide (the exp of hugely negative
arguments where σ is small made that the slowest step of scoring). Equal to the
reference's formula within float rounding (tests/models/test_anomaly_transformer.py).

Differences from the reference, none numerical: the |i − j| table is a registered
(non-persistent) buffer instead of a ``.cuda()`` tensor, so the model runs on CPU (attn.py
hard-codes CUDA); the reference's unused ``AttentionLayer.norm`` (a LayerNorm
no forward reaches) is left out (3·2·d_model parameters fewer: 4,859,983 instead of
4,863,055 at d_model 512, C = S = 55).

The ``embedding`` MADCluster attaches to is the encoder output after the final LayerNorm
[B, L, d_model] (BACKBONES.md point 4), the input of the output projection. ``extras``
carries the per-layer ``series`` and ``prior`` (P̂) maps [B, H, L, L] and ``sigma``
[B, H, L] for the association objective (madbench/objectives/association.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput
from madbench.models.deepsvdd import sinusoidal_encoding


class AnomalyAttention(nn.Module):
    """Multi-head attention that also returns its series and (normalised) prior maps."""

    def __init__(self, d_model: int, n_heads: int, window: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        d_head = d_model // n_heads
        self.query = nn.Linear(d_model, d_head * n_heads)
        self.key = nn.Linear(d_model, d_head * n_heads)
        self.value = nn.Linear(d_model, d_head * n_heads)
        self.sigma = nn.Linear(d_model, n_heads)
        self.out = nn.Linear(d_head * n_heads, d_model)
        self.dropout = nn.Dropout(dropout)
        idx = torch.arange(window, dtype=torch.float32)
        # |i − j|: a buffer, so it follows the module to any device (the reference: .cuda())
        self.register_buffer("distances", (idx[:, None] - idx[None, :]).abs(), persistent=False)
        # −|i − j|²/2, the prior's logits before the per-step 1/σ²
        self.register_buffer("neg_half_sq_distances", -self.distances ** 2 / 2, persistent=False)

    def forward(self, x: torch.Tensor):
        B, L, _ = x.shape
        H = self.n_heads
        # 1/√E on the queries, not on the [B, H, L, L] scores: one small pass instead of a full one
        q = self.query(x).view(B, L, H, -1)
        q = q * (1.0 / math.sqrt(q.shape[-1]))
        k = self.key(x).view(B, L, H, -1)
        v = self.value(x).view(B, L, H, -1)
        series = self.dropout(torch.softmax(torch.einsum("blhe,bshe->bhls", q, k), dim=-1))
        out = torch.einsum("bhls,bshd->blhd", series, v).reshape(B, L, -1)
        # the prior: a Gaussian of |i − j| whose width each step learns
        sigma = torch.pow(3, torch.sigmoid(5 * self.sigma(x)) + 1e-5) - 1        # [B, L, H]
        sigma = sigma.transpose(1, 2).unsqueeze(-1)                               # [B, H, L, 1]
        prior = torch.softmax(self.neg_half_sq_distances[:L, :L] / sigma ** 2, dim=-1)   # P̂, rows sum to 1
        return self.out(out), series, prior, sigma.squeeze(-1)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, window: int, dropout: float = 0.0):
        super().__init__()
        self.attention = AnomalyAttention(d_model, n_heads, window, dropout)
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor):
        new_x, series, prior, sigma = self.attention(x)
        x = self.norm1(x + self.dropout(new_x))
        y = self.dropout(F.gelu(self.conv1(x.transpose(1, 2))))
        y = self.dropout(self.conv2(y).transpose(1, 2))
        return self.norm2(x + y), series, prior, sigma


class AnomalyTransformer(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, d_model: int = 512, n_heads: int = 8,
                 layers: int = 3, d_ff: int = 512, dropout: float = 0.0, reference_quirks: bool = False):
        super().__init__()
        for key, value in (("d_model", d_model), ("n_heads", n_heads), ("layers", layers), ("d_ff", d_ff)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"backbone.model.{key}={value}; expected an integer >= 1")
        if d_model % n_heads:
            raise ConfigError(f"backbone.model.n_heads={n_heads} does not divide backbone.model.d_model={d_model}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"backbone.model.dropout={dropout}; expected a probability in [0, 1)")
        # the reference's model has no bug that changes numbers (its .cuda() table is fixed
        # unconditionally); the flag is accepted so that backbone.reference_quirks reaches every backbone
        self.reference_quirks = bool(reference_quirks)
        self.window = window
        self.token = nn.Conv1d(n_inputs, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.token.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.register_buffer("pe", sinusoidal_encoding(window, d_model), persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, window, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        L = x.shape[1]
        if L > self.window:
            raise ValueError(f"window of {L} steps; the model was built for dataset.window={self.window}")
        h = self.embed_dropout(self.token(x.transpose(1, 2)).transpose(1, 2) + self.pe[:, :L])
        series, prior, sigma = [], [], []
        for layer in self.layers:
            h, s, p, sg = layer(h)
            series.append(s)
            prior.append(p)
            sigma.append(sg)
        h = self.norm(h)
        return BackboneOutput(embedding=h, reconstruction=self.projection(h),
                              extras={"series": series, "prior": prior, "sigma": sigma})
