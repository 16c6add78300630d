"""Deep SVDD's temporal encoder (BACKBONES.md, DeepSVDD; DeepOD's ``DeepSVDDTS``).

``network=transformer`` (DeepOD's default): a circular Conv1d(k3) token embedding plus a
fixed sinusoidal positional encoding, a post-norm Transformer encoder (d_model 512,
8 heads, feed-forward 512, GELU, dropout 0.1, 1 layer), GELU and dropout on its output,
then a Linear(d_model → rep 64, no bias). ``network=gru``: a GRU over the window (the
small CPU variant BACKBONES.md uses for tests).

The representation is computed for every step, ``rep_t`` [B, L, rep]: the window's
representation ``z`` (what the Deep SVDD objectives pull to their centre) is its last
step, exactly DeepOD's last-step pick, and the per-step ``rep_t`` is the ``embedding``
MADCluster attaches to (d = rep = 64, matching MADCluster's appendix T2 parameter delta).

Only the last step reaches the objectives, so when nothing reads the per-step embedding
(the Detector sets ``needs_embedding`` false when no head attaches, madbench/models/base.py)
the encoder's last layer computes its attention and feed-forward for the last step alone
(its keys and values still cover the window), and the output layer maps that step alone:
the same ``rep`` (equal within float rounding in eval mode; in training, dropout draws
masks for fewer values), at about a third of the transformer's multiply-accumulates for
one layer, and ``embedding`` is None.

Bias terms let a Deep SVDD network map every input onto the centre (Ruff et al. 2018,
§3.3). DeepOD removes only the input and output biases and keeps the attention, feed-
forward and LayerNorm ones; by default every bias is removed here (``bias=false``), and
``reference_quirks=true`` keeps DeepOD's.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput

NETWORKS = ("transformer", "gru")


def sinusoidal_encoding(length: int, d: int) -> torch.Tensor:
    """The fixed positional encoding of Vaswani et al.: [1, length, d]."""
    pe = torch.zeros(length, d)
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe[None]


class DeepSVDDEncoder(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, network: str = "transformer",
                 d_model: int = 512, n_heads: int = 8, d_ff: int = 512, layers: int = 1, hidden: int = 64,
                 rep: int = 64, dropout: float = 0.1, bias: bool = False, reference_quirks: bool = False):
        super().__init__()
        if network not in NETWORKS:
            raise ConfigError(f"backbone.model.network={network!r}; expected one of {list(NETWORKS)}")
        if network == "transformer" and d_model % n_heads:
            raise ConfigError(f"backbone.model.n_heads={n_heads} does not divide backbone.model.d_model={d_model}")
        # DeepOD: input/output without bias, attention/FF/LayerNorm with; corrected: none anywhere
        inner_bias = True if reference_quirks else bool(bias)
        self.network = network
        if network == "transformer":
            self.token = nn.Conv1d(n_inputs, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=bias)
            nn.init.kaiming_normal_(self.token.weight, mode="fan_in", nonlinearity="leaky_relu")
            self.register_buffer("pe", sinusoidal_encoding(window, d_model), persistent=False)
            layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation="gelu", batch_first=True,
                                               bias=inner_bias)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            width = d_model
        else:
            self.gru = nn.GRU(n_inputs, hidden, num_layers=layers, batch_first=True, bias=inner_bias,
                              dropout=dropout if layers > 1 else 0.0)
            width = hidden
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(width, rep, bias=bias)

    #: set by the Detector: whether anything reads the per-step embedding (madbench/models/base.py)
    needs_embedding = True

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        per_step = self.needs_embedding
        if self.network == "transformer":
            h = self.token(x.transpose(1, 2)).transpose(1, 2) + self.pe[:, : x.shape[1]]
            h = self.encoder(h) if per_step else self.encode_last_step(h)
        else:
            h, _ = self.gru(x)
            h = h if per_step else h[:, -1:]
        rep_t = self.output(self.dropout(self.act(h)))          # [B, L, rep], or [B, 1, rep]
        return BackboneOutput(embedding=rep_t if per_step else None, extras={"rep": rep_t[:, -1]})

    def encode_last_step(self, h: torch.Tensor) -> torch.Tensor:
        """The encoder's output at the last step only, [B, 1, d]: every layer but the last
        runs over the window; the last one (post-norm, as built) attends from the last step
        to every step and applies its feed-forward to that step alone."""
        *first, last = self.encoder.layers
        for layer in first:
            h = layer(h)
        y = h[:, -1:]
        y = last.norm1(y + last.dropout1(last.self_attn(y, h, h, need_weights=False)[0]))
        y = last.norm2(y + last.dropout2(last.linear2(last.dropout(last.activation(last.linear1(y))))))
        return y if self.encoder.norm is None else self.encoder.norm(y)
