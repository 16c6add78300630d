"""The backbone contract: ``forward(x[B, L, D_in]) -> BackboneOutput``.

A backbone is built by Hydra from its YAML (``_target_`` + ``_partial_: true``) and
completed by the runner with the sizes only the data knows:
``model(n_inputs=D_in, n_outputs=|sensors|, window=L)``. Adding one is one module here plus
one YAML in ``configs/backbone/``; nothing else changes.

A backbone whose embedding costs work its objective does not need may declare a class
attribute ``needs_embedding = True``: the Detector sets it to whether its objective or a
head reads ``embedding``, and where it is false the backbone may skip that work and return
``embedding=None`` (Deep SVDD without a head: only the last step reaches its objective).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BackboneOutput:
    """``embedding`` [B, L, d] is always present (what MADCluster attaches to), unless the
    backbone declares ``needs_embedding`` and the Detector has set it false.

    ``forecast`` [B, H, S] and ``reconstruction`` [B, L, S] are there when the backbone
    makes them; ``extras`` carries anything else an objective needs (associations,
    latents, a second decoder's output, ...).
    """

    embedding: torch.Tensor | None
    forecast: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)
