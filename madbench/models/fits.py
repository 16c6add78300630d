"""FITS as a reconstruction model (Xu et al., "FITS: Modeling Time Series with 10k
Parameters", ICLR 2024; the authors' anomaly-detection code, VEWOXIC/FITS ``AD/FITS.py`` and
``AD/solver_recon.py``).

A window of L steps is downsampled by ``dsr`` (every dsr-th step, n = ceil(L / dsr) steps),
normalised per channel (mean, and the unbiased variance + 1e-5: reversible instance
normalisation), and taken to the frequency domain (rfft). Only the ``cut_freq`` lowest
bins are kept (a low-pass filter; by default every bin below the Nyquist bin, n // 2), and
one complex linear layer maps them to ``int(cut_freq * L / n)`` bins: interpolation in the
frequency domain, upsampling n steps to L. Zero-padded to L // 2 + 1 bins, the inverse rfft
(length L), times L / n, de-normalised, is the reconstruction of the whole window. Channels
share the layer (``individual=false``, the reference's default) or get one each.

The reference's anomaly-detection scripts use dsr 4 and windows of 200 or 400; at 400 the
layer is Linear(50, 200): 10,200 complex parameters, the paper's "10k". The reference
reconstructs every input channel; madbench scores the sensors, the first n_outputs inputs.
The reference calls ``irfft`` without a length, which returns L - 1 steps for an odd
window; madbench asks for L. The embedding MADCluster attaches to is the normalised
low-pass reconstruction [B, L, D_in].
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput


def downsampled_length(window: int, dsr: int) -> int:
    """Steps in ``x[:, ::dsr]`` of a ``window``-step window."""
    return math.ceil(window / dsr)


class FITS(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, dsr: int = 4, cut_freq: int | None = None,
                 individual: bool = False):
        super().__init__()
        if isinstance(dsr, bool) or not isinstance(dsr, int) or dsr < 1:
            raise ConfigError(f"backbone.model.dsr={dsr!r}; expected an integer >= 1")
        n = downsampled_length(window, dsr)
        nyquist = n // 2
        if nyquist < 1:
            raise ConfigError(f"dataset.window={window} with backbone.model.dsr={dsr} leaves {n} step(s); "
                              "expected at least 2 after downsampling")
        if cut_freq is None:
            cut_freq = nyquist
        if isinstance(cut_freq, bool) or not isinstance(cut_freq, int) or cut_freq < 1:
            raise ConfigError(f"backbone.model.cut_freq={cut_freq!r}; expected an integer in 1..{nyquist} or null")
        if cut_freq > nyquist:
            raise ConfigError(f"backbone.model.cut_freq={cut_freq} is above the Nyquist bin {nyquist} of the "
                              f"downsampled window (dataset.window={window} / backbone.model.dsr={dsr} = {n} steps); "
                              f"expected an integer in 1..{nyquist} or null")
        if not isinstance(individual, bool):
            raise ConfigError(f"backbone.model.individual={individual!r}; expected true or false")
        self.window, self.dsr, self.n, self.cut_freq = window, dsr, n, cut_freq
        self.n_outputs = n_outputs
        self.length_ratio = window / n
        self.up_bins = int(cut_freq * self.length_ratio)
        self.individual = individual
        with warnings.catch_warnings():
            # torch flags complex parameters as experimental; the reference's layer is one
            warnings.filterwarnings("ignore", message="Complex modules", category=UserWarning)
            make = lambda: nn.Linear(cut_freq, self.up_bins).to(torch.cfloat)  # noqa: E731
            self.freq_upsampler = nn.ModuleList([make() for _ in range(n_inputs)]) if individual else make()

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        L = x.shape[1]
        # channels first [B, C, n]: the statistics, both FFTs and the layer then run along the
        # last (contiguous) dimension
        xd = x[:, ::self.dsr].transpose(1, 2).float().contiguous()
        var, mean = torch.var_mean(xd, dim=-1, keepdim=True)
        std = torch.sqrt(var + 1e-5)
        spec = torch.fft.rfft((xd - mean) / std, dim=-1)[..., :self.cut_freq]  # [B, C, cut]: the low-pass
        if self.individual:
            up = torch.stack([f(spec[:, i]) for i, f in enumerate(self.freq_upsampler)], dim=1)
        else:
            up = self.freq_upsampler(spec)                                    # [B, C, up_bins]
        # irfft zero-pads the up_bins given to the L // 2 + 1 of an L-step signal
        low = torch.fft.irfft(up, n=L, dim=-1) * self.length_ratio  # compensate the length change
        rec = low * std + mean
        # back to [B, L, C], contiguous: the loss against the [B, L, S] target then runs vectorised
        return BackboneOutput(embedding=low.transpose(1, 2),
                              reconstruction=rec[:, :self.n_outputs].transpose(1, 2).contiguous())
