"""THOC, the Temporal Hierarchical One-Class network (Shen et al., NeurIPS 2020;
BACKBONES.md, THOC). There is no official code; this follows TimeSeAD's
``timesead/models/other/thoc.py`` (wagner-d/TimeSeAD, whose comments quote the authors'):

- a dilated LSTM, one single-layer LSTM of ``hidden`` units per entry of ``dilations``
  (1, 2, 4): layer l runs over the d_l interleaved sub-sequences x[j::d_l] of its input
  (Chang et al. 2017), the end zero-padded to a multiple of d_l and cut off again;
- per layer K_l centres c_l (``clusters``, 6; uniform in [−1, 1] until the objective sets
  them by K-means before epoch 1), and on the layer's features f (the layer-0 features are
  the DRNN output, one "previous cluster"):
  s = ½(cos(f, c) − 1), P = softmax(s/τ) over the K_l centres,
  f̄ = P·ReLU(W_l f) (eq. 7: TimeSeAD's paper-faithful form, no second softmax),
  R_l = softmax(P·R_{l−1}) over the K_l centres (R_0 = softmax(P)),
  and the next layer's features are join_l([f̄_{l−1}, f_l]) (eq. 8), one per previous
  cluster;
- out_l = Linear(hidden → S, no bias) of layer l's DRNN output: the forecast of the
  sensors d_l steps ahead (the TSS term, eq. 12).

τ (``tau``, 100) is a buffer, so early stopping restores it with the weights; the THOC
objective anneals it (madbench/objectives/thoc.py).

The ``embedding`` MADCluster attaches to is the last DRNN layer's output [B, L, hidden]
(BACKBONES.md point 4: d = 128). ``extras``: ``cluster_features`` f̄ of the last layer
[B, L, K, hidden], ``assignments`` R [B, L, K], ``centres`` (the list of c_l, the
parameters themselves), ``forecasts`` (per layer [B, L, S]), ``dilations`` and
``features`` (per layer the f that was assigned, [B, L, K_{l−1}, hidden]: what K-means
clusters).

``reference_quirks=true``: TimeSeAD's THOC hands its [B, L, C] windows to LSTMs built with
``batch_first=False`` (its other RNN models stack batches on dim 1; THOC's experiment uses
dim 0), so the recurrence and the dilation run across the windows of a batch rather than
along time. The quirk reproduces that; the default recurs along each window.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput


def _as_list(value, n: int, key: str) -> list[int]:
    values = [value] * n if isinstance(value, int) else list(value)
    if len(values) != n or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ConfigError(f"backbone.model.{key}={value}; expected an integer >= 1 or a list of {n} of them "
                          "(one per entry of backbone.model.dilations)")
    return values


class DilatedLSTM(nn.Module):
    """Stacked single-layer LSTMs, layer l dilated by d_l; returns every layer's output."""

    def __init__(self, n_inputs: int, hidden: list[int], dilations: list[int]):
        super().__init__()
        dims = [n_inputs, *hidden]
        self.cells = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(dims[:-1], dims[1:]))
        self.dilations = dilations

    @staticmethod
    def dilated(lstm: nn.LSTM, x: torch.Tensor, d: int) -> torch.Tensor:
        if d == 1:
            return lstm(x)[0]
        B, L, C = x.shape
        pad = -L % d
        if pad:
            x = torch.cat([x, x.new_zeros(B, pad, C)], dim=1)
        n = x.shape[1] // d
        # sub-sequence j = x[:, j::d], stacked on the batch axis: [B·d, n, C]
        sub = x.reshape(B, n, d, C).transpose(1, 2).reshape(B * d, n, C)
        y = lstm(sub)[0]
        y = y.reshape(B, d, n, -1).transpose(1, 2).reshape(B, n * d, -1)
        return y[:, :L]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for lstm, d in zip(self.cells, self.dilations):
            x = self.dilated(lstm, x, d)
            outs.append(x)
        return outs


class THOC(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, hidden: int = 128, dilations=(1, 2, 4),
                 clusters=6, tau: float = 100.0, reference_quirks: bool = False):
        super().__init__()
        dilations = list(dilations)
        if not dilations or not all(isinstance(d, int) and d >= 1 for d in dilations):
            raise ConfigError(f"backbone.model.dilations={dilations}; expected a non-empty list of integers >= 1")
        if window <= max(dilations):
            raise ConfigError(f"backbone.model.dilations={dilations}: the largest dilation ({max(dilations)}) needs "
                              f"dataset.window > {max(dilations)} (its forecast is that many steps ahead); "
                              f"got dataset.window={window}")
        n = len(dilations)
        hidden = _as_list(hidden, n, "hidden")
        clusters = _as_list(clusters, n, "clusters")
        if not float(tau) > 0:
            raise ConfigError(f"backbone.model.tau={tau}; expected a temperature > 0")
        self.dilations, self.clusters, self.window = dilations, clusters, window
        self.reference_quirks = bool(reference_quirks)
        self.drnn = DilatedLSTM(n_inputs, hidden, dilations)
        self.centres = nn.ParameterList(nn.Parameter((torch.rand(k, h) - 0.5) * 2) for k, h in zip(clusters, hidden))
        self.transforms = nn.ModuleList(nn.Linear(h, h) for h in hidden)
        self.out_project = nn.ModuleList(nn.Linear(h, n_outputs, bias=False) for h in hidden)
        self.join = nn.ModuleList(nn.Linear(hidden[l - 1] + hidden[l], hidden[l]) for l in range(1, n))
        self.register_buffer("tau", torch.tensor(float(tau)))

    @staticmethod
    def similarity(f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """s = ½(cos(f, c) − 1): [B, L, P, h] × [K, h] → [B, L, K, P] (eq. 6, the authors' scaling)."""
        return 0.5 * (torch.einsum("blph,kh->blkp", F.normalize(f, dim=-1), F.normalize(c, dim=-1)) - 1)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        if self.reference_quirks:  # TimeSeAD: the LSTMs read dim 0 (the batch) as time
            layers = [y.transpose(0, 1) for y in self.drnn(x.transpose(0, 1))]
        else:
            layers = self.drnn(x)
        f_bar = R = None
        features = []
        for l, out in enumerate(layers):
            f = out.unsqueeze(2)                                               # [B, L, 1, h]
            if f_bar is not None:                                              # eq. 8, per previous cluster
                f = self.join[l - 1](torch.cat([f_bar, f.expand(-1, -1, f_bar.shape[2], -1)], dim=-1))
            P = torch.softmax(self.similarity(f, self.centres[l]) / self.tau, dim=2)    # [B, L, K, P]
            R = torch.softmax(P.squeeze(-1) if R is None else torch.einsum("blkp,blp->blk", P, R), dim=-1)
            f_bar = torch.einsum("blkp,blph->blkh", P, torch.relu(self.transforms[l](f)))   # eq. 7
            features.append(f)
        return BackboneOutput(
            embedding=layers[-1],
            extras={"cluster_features": f_bar, "assignments": R, "centres": list(self.centres),
                    "forecasts": [proj(o) for proj, o in zip(self.out_project, layers)],
                    "dilations": self.dilations, "features": features})
