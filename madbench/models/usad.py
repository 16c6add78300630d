"""USAD's two-decoder autoencoder (Audibert et al. 2020; BACKBONES.md, USAD).

The window is flattened, w = L·D_in values (row-major: step by step, as the reference's
``view([N, w])``), and the latent has z = L·hidden units (manigalati/usad ``USAD.ipynb``
and DeepOD's ``usad.py``: ``z_size = window · hidden``):

- E  = Linear(w, w/2) – ReLU – Linear(w/2, w/4) – ReLU – Linear(w/4, z) – ReLU
- D1, D2 = Linear(z, w/4) – ReLU – Linear(w/4, w/2) – ReLU – Linear(w/2, w) – Sigmoid

(``int(w/2)``, ``int(w/4)`` as in the reference). ``forward`` gives the three outputs the
USAD objective needs, each [B, L, D_in]: ``ae1`` = D1(E(x)), ``ae2`` = D2(E(x)) and
``ae2ae1`` = D2(E(ae1)). ``ae2`` enters only the second training phase's loss, so it is
computed in training mode only (the score and the monitored validation loss use ``ae1``
and ``ae2ae1``). ``reconstruction`` [B, L, S] is AE1's reconstruction of the sensors,
which are the first S input columns (``Entity.input_idx``: sensors, then covariates).

The MADCluster embedding (BACKBONES.md, USAD point 4) is the latent z, a per-window MLP
code:

- ``embedding=reshape`` (default): z [B, L·hidden] viewed as [B, L, hidden]. Its L rows
  are consecutive slices of one code, **not** aligned with the window's time steps: no
  unit of z is tied to a step.
- ``embedding=broadcast``: the whole code given to every step, [B, L, L·hidden] (a view;
  the head still computes over L·L·hidden values per window, so it costs L times more
  than ``reshape`` for the same information).

The latent ends in a ReLU: dead units give zero rows, whose cosine to the head's centre
is 0 (torch clamps the norm product), so the head stays finite.

A latent wider than the input (hidden > D_in, so z > w) is refused with a ConfigError
naming ``backbone.model.hidden``: such a code is no bottleneck. The published code does
exactly that (the SWaT notebook: 51 columns, hidden 100; DeepOD: hidden 100 on MSL's 55
columns), so ``wide_latent=true`` allows it, e.g. to compare with the reference at its
published size (``scripts/bench.py zoo``). The default ``hidden`` (10, madbench's choice,
configs/backbone/usad.yaml) is narrower than every shipped dataset's input.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput

EMBEDDINGS = ("reshape", "broadcast")


def _mlp(sizes: list[int], last: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.ReLU(inplace=True) if i < len(sizes) - 2 else last)
    return nn.Sequential(*layers)


class USAD(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, hidden: int = 10, embedding: str = "reshape",
                 wide_latent: bool = False):
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ConfigError(f"backbone.model.embedding={embedding!r}; expected one of {list(EMBEDDINGS)}")
        if not isinstance(hidden, int) or hidden < 1:
            raise ConfigError(f"backbone.model.hidden={hidden}; expected an integer >= 1 (latent units per step)")
        w, z = window * n_inputs, window * hidden
        if z > w and not wide_latent:
            raise ConfigError(
                f"backbone.model.hidden={hidden} makes USAD's latent ({window}·{hidden} = {z}) larger than its input "
                f"({window}·{n_inputs} = {w}); expected hidden <= {n_inputs} (the input columns), or "
                "backbone.model.wide_latent=true for the published code's wider latent")
        if w // 4 < 1:
            raise ConfigError(f"dataset.window={window} with {n_inputs} input column(s) leaves USAD's encoder "
                              f"no units (w/4 = {w / 4:g}); expected window·columns >= 4")
        self.window, self.n_inputs, self.n_outputs, self.hidden = window, n_inputs, n_outputs, hidden
        self.embedding = embedding
        self.encoder = _mlp([w, w // 2, w // 4, z], nn.ReLU(inplace=True))
        self.decoder1 = _mlp([z, w // 4, w // 2, w], nn.Sigmoid())
        self.decoder2 = _mlp([z, w // 4, w // 2, w], nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        B, L, D = x.shape
        flat = x.reshape(B, L * D)
        z = self.encoder(flat)
        w1 = self.decoder1(z)
        w3 = self.decoder2(self.encoder(w1))
        extras = {"latent": z, "ae1": w1.view(B, L, D), "ae2ae1": w3.view(B, L, D)}
        if self.training:
            extras["ae2"] = self.decoder2(z).view(B, L, D)
        if self.embedding == "reshape":
            emb = z.view(B, L, self.hidden)
        else:
            emb = z[:, None, :].expand(B, L, z.shape[1])
        return BackboneOutput(embedding=emb, reconstruction=extras["ae1"][..., : self.n_outputs], extras=extras)
