"""The backbone contract: ``forward(x[B, L, D_in]) -> BackboneOutput``.

A backbone is built by Hydra from its YAML (``_target_`` + ``_partial_: true``) and
completed by the runner with the sizes only the data knows:
``model(n_inputs=D_in, n_outputs=|sensors|, window=L)``. Adding one is one module here plus
one YAML in ``configs/backbone/``; nothing else changes. A backbone may define
``on_fit_start(ctx)``, called once before training (``Detector.on_fit_start``): the
baselines fit their statistics there and then have no parameter left to train.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BackboneOutput:
    """``embedding`` [B, L, d] is what MADCluster attaches to: present for every backbone
    whose YAML ``provides`` it, None for the trivial baselines (which provide none, so a
    head on them is refused when the config is composed).

    ``forecast`` [B, H, S] and ``reconstruction`` [B, L, S] are there when the backbone
    makes them; ``extras`` carries anything else an objective needs (associations,
    latents, a second decoder's output, ...).
    """

    embedding: torch.Tensor | None
    forecast: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)
