"""M2AD's LSTM forecaster (METHODS.md, M2AD step 2).

LSTM(D_in, 80, 2 layers, dropout 0.2) -> LSTM(80, 80) -> last hidden state -> Linear(80, S).
The embedding MADCluster attaches to is the per-step output of the second LSTM.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.models.base import BackboneOutput


class LSTMForecaster(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, horizon: int = 1,
                 hidden: int = 80, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.horizon = horizon
        self.n_outputs = n_outputs
        self.lstm1 = nn.LSTM(n_inputs, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                             batch_first=True)
        self.lstm2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs * horizon)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        h, _ = self.lstm1(x)
        h, _ = self.lstm2(h)
        y = self.head(h[:, -1]).view(x.shape[0], self.horizon, self.n_outputs)
        return BackboneOutput(embedding=h, forecast=y)
