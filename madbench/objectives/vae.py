"""VAE objective (Orion's ``VAE._vae_loss``): the reconstruction's MSE plus the KL term
``-0.5 * mean(1 + s - mu² - exp(s))`` (a mean over the batch and the latent units, as
``K.mean``), weighted by ``kl_weight`` (1 in the reference). The score is the reconstruction
residual, as ``objective=reconstruct`` (Orion scores the VAE with ``reconstruction_errors``)."""
from __future__ import annotations

import torch

from madbench.errors import ConfigError
from madbench.objectives.base import Objective, at_least_float32, mse


def kl_term(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(s)) || N(0, 1)) per latent unit, averaged over units and the batch."""
    mu, s = at_least_float32(mu), at_least_float32(log_sigma)
    return -0.5 * torch.mean(1 + s - mu ** 2 - torch.exp(s))


class VAEObjective(Objective):
    requires = ("reconstruction", "mu", "log_sigma")
    horizon = 0

    def __init__(self, kl_weight: float = 1.0):
        super().__init__()
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float)) or kl_weight < 0:
            raise ConfigError(f"objective.kl_weight={kl_weight!r}; expected a number >= 0")
        self.kl_weight = float(kl_weight)

    def loss(self, batch, out, ctx=None):
        rec = mse(out.reconstruction, batch["y"])
        kl = kl_term(out.extras["mu"], out.extras["log_sigma"])
        return {"loss": rec + self.kl_weight * kl, "reconstruction": rec.detach(), "kl": kl.detach()}

    def score(self, batch, out):
        res = batch["y"] - at_least_float32(out.reconstruction)
        return (res ** 2).mean(-1), res
