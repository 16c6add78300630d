"""The recurrent VAE of Orion's ``vae`` pipeline (sintel-dev/Orion,
``orion/primitives/vae.py`` and ``orion.primitives.vae.VAE.json``; after
twairball/keras_lstm_vae).

Encoder LSTM(D_in, 60) -> its last hidden state h -> z_mean = Linear(60, 20)(h),
z_log_sigma = Linear(60, 20)(h); a sample z is repeated over the window (RepeatVector) ->
LSTM(20, 60) -> Linear(60, S) at every step: the reconstruction of the sensors' window from
every input column. ``objective=vae`` adds the KL term.

The reference's KL term, ``-0.5 * mean(1 + s - mu² - exp(s))``, is the divergence of
N(mu, exp(s)) from N(0, 1): ``s`` is a log-variance. Its sampling, ``z = mu + s * eps``,
uses ``s`` as a standard deviation instead (one that can be negative), and its ``predict``
samples too, so a window's reconstruction is one random draw. By default madbench samples
``z = mu + exp(s / 2) * eps`` while training and decodes ``mu`` when scoring (eval mode);
``reference_quirks=true`` reproduces ``mu + s * eps``, in training and scoring alike.
The embedding MADCluster attaches to is the encoder's per-step output [B, L, 60].
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput


class LSTMVAE(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, hidden: int = 60, latent: int = 20,
                 reference_quirks: bool = False):
        super().__init__()
        for key, value in (("hidden", hidden), ("latent", latent)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"backbone.model.{key}={value!r}; expected an integer >= 1")
        self.window = window
        self.reference_quirks = bool(reference_quirks)
        self.encoder = nn.LSTM(n_inputs, hidden, batch_first=True)
        self.to_mean = nn.Linear(hidden, latent)
        self.to_log_sigma = nn.Linear(hidden, latent)
        self.decoder = nn.LSTM(latent, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_outputs)

    def sample(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """The latent the decoder sees: a draw while training (and always under the
        reference's quirks), the mean when scoring."""
        if self.reference_quirks:
            return mu + log_sigma * torch.randn_like(mu)
        if self.training:
            return mu + torch.exp(0.5 * log_sigma) * torch.randn_like(mu)
        return mu

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        h, _ = self.encoder(x)
        last = h[:, -1]
        mu, log_sigma = self.to_mean(last), self.to_log_sigma(last)
        z = self.sample(mu, log_sigma)
        d, _ = self.decoder(z[:, None, :].expand(-1, x.shape[1], -1))
        return BackboneOutput(embedding=h, reconstruction=self.out(d),
                              extras={"mu": mu, "log_sigma": log_sigma, "latent": z})
