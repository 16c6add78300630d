"""LSTM autoencoder: encode the window, repeat the last state, decode every step.

``latent=null`` repeats the encoder's last state itself (Orion's ``LSTMSeq2Seq``: LSTM(60)
-> RepeatVector -> LSTM(60) -> TimeDistributed(Dense)); an integer projects it to that many
units first."""
from __future__ import annotations

import torch
from torch import nn

from madbench.models.base import BackboneOutput


class LSTMAutoencoder(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, hidden: int = 64,
                 latent: int | None = 32, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        drop = dropout if layers > 1 else 0.0
        self.encoder = nn.LSTM(n_inputs, hidden, num_layers=layers, dropout=drop, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent) if latent else nn.Identity()
        self.decoder = nn.LSTM(latent or hidden, hidden, num_layers=layers, dropout=drop, batch_first=True)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        h, _ = self.encoder(x)
        z = self.to_latent(h[:, -1])
        d, _ = self.decoder(z[:, None, :].expand(-1, x.shape[1], -1))
        return BackboneOutput(embedding=h, reconstruction=self.out(d), extras={"latent": z})
