"""LSTM-DT's forecaster (Hundman et al., KDD 2018; telemanom's ``modeling.py`` and Orion's
``keras.Sequential.LSTMTimeSeriesRegressor``, ml-stars' primitive JSON).

LSTM(D_in, 80) -> Dropout(0.3) -> LSTM(80, 80) -> Dropout(0.3) -> last step -> Linear(80, S),
on windows of 250 steps over every input column, predicting the sensors' next step. Unlike
M2AD's forecaster (``lstm``: a 2-layer LSTM, then a third, dropout 0.2 only between the
first two) each LSTM here is one layer and dropout follows each. The embedding MADCluster
attaches to is the second LSTM's per-step output.

Keras' LSTM initialises differently (Glorot-uniform inputs, orthogonal recurrent weights,
forget-gate bias 1); this uses torch's defaults, like every LSTM in madbench.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput


class LSTMDT(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, hidden1: int = 80, hidden2: int = 80,
                 dropout: float = 0.3):
        super().__init__()
        for key, value in (("hidden1", hidden1), ("hidden2", hidden2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"backbone.model.{key}={value!r}; expected an integer >= 1")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"backbone.model.dropout={dropout!r}; expected a probability in [0, 1)")
        self.n_outputs = n_outputs
        self.lstm1 = nn.LSTM(n_inputs, hidden1, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.lstm2 = nn.LSTM(hidden1, hidden2, batch_first=True)
        self.drop2 = nn.Dropout(dropout)
        self.head = nn.Linear(hidden2, n_outputs)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        h, _ = self.lstm1(x)
        h, _ = self.lstm2(self.drop1(h))
        y = self.head(self.drop2(h[:, -1]))
        return BackboneOutput(embedding=h, forecast=y[:, None, :])
