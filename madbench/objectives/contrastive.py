"""DCdetector's contrastive objective (BACKBONES.md, DCdetector points 2-3; the reference is
DAMO-DI-ML/KDD2023-DCdetector solver.py and MADCluster_SOLVER.py).

The backbone gives, per (patch size, layer) u, the channel-mean patch-wise map S_u
[B, H, N, N] ("patch_series") and in-patch map P_u [B, H, p, p] ("patch_prior"), L = N·p. The reference
expands them to [L×L]: S_L[i, j] = S[i//p, j//p] (rows sum to p: it is not renormalised)
and P_L[i, j] = P[i%p, j%p], row-normalised to P̂_L. With its
``kl(a, b) = Σ_j a (log(a + 1e-4) − log(b + 1e-4))`` per row, averaged over heads:

- series_loss = mean_u [ mean kl(S_L, sg(P̂_L)) + mean kl(sg(P̂_L), S_L) ]
- prior_loss  = mean_u [ mean kl(P̂_L, sg(S_L)) + mean kl(sg(S_L), P̂_L) ]
- loss = prior_loss − series_loss (one backward). Its value is exactly 0 (the two sums hold
  the same numbers); only the gradients differ: the in-patch view is pulled towards the
  patch-wise one, which is pushed away.

Each row i = (a, r) = (i//p, i%p) of the expanded maps meets every pair (S[a, b], P̂[r, s])
exactly once, and kl's summand is a product of a function of one map and a function of the
other, so with q = P̂'s entries (P[r, s] / (N·Σ_s P[r, s])):

    kl(S_L, P̂_L)[i] = p·Σ_b S log(S + ε) − (Σ_b S)·Σ_s log(q + ε)
    kl(P̂_L, S_L)[i] = N·Σ_s q log(q + ε) − (Σ_s q)·Σ_b log(S + ε)

which costs O(N² + p²) per map instead of O(L²), with the same values and gradients
(tested against the expanded maps).

Score (per step, [B, L]): softmax over the window of −T·Σ_u [kl(S_L, P̂_L) + kl(P̂_L, S_L)]
(T = ``temperature``, 50), placed on the timestamps by the trainer. ``reference_quirks``:
the MADCluster reference's window score, the mean over the window of that softmax, given
to every step: a softmax over L has mean 1/L, so it is the same constant for every window
(MADCluster_SOLVER.py ``testing``; DeepOD's ``decision_function`` does the same).

The sign is the code's: lower discrepancy scores higher. The paper's eq. 10 scores the
discrepancy itself (issue #16/#31).

Validation monitors the discrepancy, mean_u [mean kl(S_L, P̂_L) + mean kl(P̂_L, S_L)] (the
paper's eq. 9 loss, and the value of series_loss), plus the heads' loss: the training
loss's value is identically 0 and would leave early stopping nothing to select on.
"""
from __future__ import annotations

import torch

from madbench.errors import ConfigError
from madbench.objectives.base import Objective

EPS = 1e-4  # my_kl_loss adds 1e-4 inside both logs


def _row_stats(m: torch.Tensor, eps: float):
    """Σ_j m log(m + ε), Σ_j log(m + ε), Σ_j m over the last axis."""
    lg = torch.log(m + eps)
    return (m * lg).sum(-1), lg.sum(-1), m.sum(-1)


def expanded_kls(series: torch.Tensor, prior: torch.Tensor, eps: float = EPS, stop: str | None = None):
    """Per step KL(S_L‖P̂_L) and KL(P̂_L‖S_L), [B, H, L], of the expanded maps, computed on the
    small ones. ``stop``: ``"prior"`` stops the gradient through P (series_loss), ``"series"``
    through S (prior_loss), None through neither (scores)."""
    n, p = series.shape[-1], prior.shape[-1]
    q = prior / (n * prior.sum(-1, keepdim=True))          # the entries of the row-normalised tiled map
    a_s, b_s, r_s = _row_stats(series, eps)                # [B, H, N]
    a_q, b_q, r_q = _row_stats(q, eps)                     # [B, H, p]
    if stop == "prior":
        a_q, b_q, r_q = a_q.detach(), b_q.detach(), r_q.detach()
    elif stop == "series":
        a_s, b_s, r_s = a_s.detach(), b_s.detach(), r_s.detach()
    kl_sp = p * a_s[..., :, None] - r_s[..., :, None] * b_q[..., None, :]   # [B, H, N, p]: row i = a·p + r
    kl_ps = n * a_q[..., None, :] - r_q[..., None, :] * b_s[..., :, None]
    return kl_sp.flatten(-2), kl_ps.flatten(-2)


class ContrastiveObjective(Objective):
    requires = ("patch_series", "patch_prior")  # DCdetector's multi-scale maps (not AT's [L, L] ones)
    horizon = 0
    has_residuals = False

    def __init__(self, temperature: float = 50.0, eps: float = EPS, reference_quirks: bool = False):
        super().__init__()
        if not isinstance(temperature, (int, float)) or not float(temperature) > 0:
            raise ConfigError(f"objective.temperature={temperature}; expected a number > 0")
        if not isinstance(eps, (int, float)) or not float(eps) > 0:
            raise ConfigError(f"objective.eps={eps}; expected a number > 0")
        self.temperature, self.eps, self.reference_quirks = float(temperature), float(eps), bool(reference_quirks)

    @staticmethod
    def _maps(out):
        return [(s.float(), p.float()) for s, p in zip(out.extras["patch_series"], out.extras["patch_prior"])]

    def loss(self, batch, out, ctx=None) -> dict:
        series_loss = prior_loss = 0.0
        maps = self._maps(out)
        for s, p in maps:
            kl_sp, kl_ps = expanded_kls(s, p, self.eps, stop="prior")
            series_loss = series_loss + (kl_sp.mean() + kl_ps.mean())
            kl_sp, kl_ps = expanded_kls(s, p, self.eps, stop="series")
            prior_loss = prior_loss + (kl_ps.mean() + kl_sp.mean())
        series_loss, prior_loss = series_loss / len(maps), prior_loss / len(maps)
        return {"loss": prior_loss - series_loss, "discrepancy": series_loss.detach()}

    def discrepancy(self, out) -> torch.Tensor:
        """Σ_u [KL(S_L‖P̂_L) + KL(P̂_L‖S_L)] per step, mean over heads: [B, L]."""
        total = 0.0
        for s, p in self._maps(out):
            kl_sp, kl_ps = expanded_kls(s, p, self.eps)
            total = total + (kl_sp + kl_ps).mean(1)
        return total

    def score(self, batch, out):
        step = torch.softmax(-self.temperature * self.discrepancy(out), dim=-1)
        if self.reference_quirks:   # the reference's window score: the mean of a softmax over L (= 1/L)
            step = step.mean(-1, keepdim=True).expand_as(step)
        return step, None

    def validation_step(self, detector, batch, ctx) -> dict:
        out = detector(batch["x"])
        d = dict(self.loss(batch, out, ctx))
        heads = detector.head_loss(out, ctx)
        d["contrastive"] = d.pop("loss")
        d["loss"] = d["discrepancy"] + (heads.pop("loss") if heads else 0.0)
        d.update(heads)
        return d
