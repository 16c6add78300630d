"""MADCluster (Lee et al., 2025): a plug-in head on any backbone's per-step embedding h
[B, L, d] that learns one normal cluster centre (METHODS.md, MADCluster steps 1-8).

Loss terms as pure functions, checked against the equations in tests:

- ``cluster_loss(q, p, nu, smoothing)``: the KL term plus the one-directed adaptive terms
  (k = 1), with the reference's clamps (q, p >= 1e-6; log arguments <= 1e6);
- ``mapping_loss(h, c, R, objective, nu_svdd)``: Deep SVDD distance to the centre(s),
  one-class or soft-boundary;
- ``kl_cluster_loss(q, p)``: KL(P‖Q) per (t, j), the k > 1 variant (appendix B).

The head's total is ``log(mean_B Σ_{t,k}(L_map + L_cluster) + 1e-8)``, added to the
objective's loss in the pass the objective names.

Its score factors, per window (``score_factors``), each kept by the score stage:

- ``d``: the mean over t of ‖h_t − c*‖², the squared distance to the assigned centre (k = 1:
  the centre), where the head maps distances (``mapping`` on) or k > 1 (whose score has it);
  the Deep SVDD score (soft-boundary's d − R² is the same ranking);
- ``f``: the mean over t of Σ_k L_cluster (k = 1: the reference's factor; k > 1: the KL
  part), where ``clustering`` is on;
- ``df``: d · f, where the head has both;
- ``head``, the head's own score: f (k = 1, the reference), d + f (k > 1, appendix B), or d
  without clustering.

Ablations are the same head with a term switched off: ``head=distance_only``
(``clustering=false``: Deep SVDD on the learnable centre) and ``head=clustering_only``
(``mapping=none``). The appendix Table 3 arms (what each trains and scores) are the
``arm`` config group.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from madbench.errors import ConfigError, TrainingError
from madbench.heads.base import Head, check_score_mode

EPS = 1e-6       # the reference clamps q and p from below at 1e-6
LOG_CAP = 1e6    # ... and the arguments of the adaptive terms' logs from above at 1e6
TARGETS = ("dec", "threshold")
MAPPINGS = ("one-class", "soft-boundary", "none")


def _full_precision(h: torch.Tensor) -> torch.Tensor:
    """The head computes in at least float32 (a bf16/fp16 embedding under autocast is
    upcast); a float64 model stays float64, like its centre after ``.double()``."""
    return h.float() if h.dtype in (torch.float16, torch.bfloat16) else h


# -- the pure loss terms ---------------------------------------------------------------------
def cosine_assignment(h: torch.Tensor, c: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """q_tj = (cos(h_t, c_j) + 1) / 2 ∈ [0, 1]: [B, L, d] × [k, d] → [B, L, k].

    Computed as h·c / (max(‖h‖, eps)·max(‖c‖, eps)), as ``F.cosine_similarity`` does, but
    with one matrix product instead of broadcasting h against every centre: the [B, L, d]
    tensor is read twice (norm, product) and nothing of that size is written."""
    dot = h @ c.T
    # clamp the squared norms before the square root: sqrt'(0) is infinite, and 0 · inf = NaN
    # would reach every parameter from an all-zero embedding row
    hn = (h * h).sum(-1, keepdim=True).clamp_min(eps * eps).sqrt()
    cn = (c * c).sum(-1).clamp_min(eps * eps).sqrt()
    return (dot / (hn * cn) + 1) / 2


def student_t_assignment(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """q_tj ∝ (1 + ‖h_t − c_j‖²)⁻¹, normalised over the k clusters (appendix eq. 25)."""
    q = 1.0 / (1.0 + squared_distance(h, c))
    return q / q.sum(-1, keepdim=True)


def squared_distance(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """‖h_t − c_j‖²: [B, L, d] × [k, d] → [B, L, k], from the differences (not the
    ‖h‖² − 2h·c + ‖c‖² expansion, which cancels when h is near c)."""
    if c.shape[0] == 1:
        return ((h - c[0]) ** 2).sum(-1, keepdim=True)
    return ((h.unsqueeze(2) - c[None, None]) ** 2).sum(-1)


def dec_target(q: torch.Tensor, dims=(0, 1)) -> torch.Tensor:
    """DEC's target: weight = q² / Σ_dims q, p = weight / Σ_clusters weight. The reference
    (k = 1) normalises over batch and time (dims (0, 1)), which makes p ≡ 1; appendix B
    (k > 1) over the window's steps only (dims (1,)), so a window's target never depends
    on the other windows of its batch."""
    weight = q ** 2 / q.sum(dim=dims, keepdim=True)
    return weight / weight.sum(-1, keepdim=True)


def threshold_target(q: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Appendix eq. 4: p = 1[q >= ν]."""
    return (q >= nu).to(q.dtype)


def cluster_loss(q: torch.Tensor, p: torch.Tensor, nu: torch.Tensor, smoothing: float = 0.01) -> torch.Tensor:
    """L_cluster [B, L, k] = p log(p/q) − p̃ log f1(q) − (1 − p̃) log f2(q), with
    p̃ = p(1 − ε) + (1 − p)ε, f1(q) = (1 − ν^{1−ν})/(1 − ν)·(q − ν) + ν^{1−ν} (the line
    through (ν, ν^{1−ν}) and (1, 1)) and f2(q) = q^{1−ν}; q, p clamped at >= 1e-6 and the
    logs' arguments at <= 1e6, exactly as the reference."""
    p = p.clamp(min=EPS)
    q = q.clamp(min=EPS)
    kl = p * torch.log(p / q)
    ps = p * (1 - smoothing) + (1 - p) * smoothing
    a = nu ** (1 - nu)
    f1 = (1 - a) / (1 - nu) * (q - nu) + a
    f2 = q ** (1 - nu)
    return kl - (ps * torch.log(f1.clamp(max=LOG_CAP)) + (1 - ps) * torch.log(f2.clamp(max=LOG_CAP)))


def kl_cluster_loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """k > 1 (appendix eq. 26): p log(p/q) per (t, j), summed by the caller."""
    p = p.clamp(min=EPS)
    return p * torch.log(p / q.clamp(min=EPS))


def mapping_loss(h: torch.Tensor, c: torch.Tensor, R: torch.Tensor, objective: str = "one-class",
                 nu_svdd: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(dist, L_map), each [B, L, k]: dist = ‖h_t − c_j‖²; one-class L_map = dist;
    soft-boundary L_map = R_j² + (1/ν_svdd)·max(0, dist − R_j²)."""
    dist = squared_distance(h, c)
    if objective == "one-class":
        return dist, dist
    r2 = R.reshape(1, 1, -1).to(dist.dtype) ** 2
    return dist, r2 + torch.clamp(dist - r2, min=0) / nu_svdd


# -- the head ---------------------------------------------------------------------------------
class MADClusterHead(Head):
    name = "madcluster"

    def __init__(self, k: int = 1, target: str = "dec", mapping: str = "soft-boundary", clustering: bool = True,
                 nu: float = 0.5, nu_svdd: float = 0.01, smoothing: float = 0.01, nu_lr: float = 1e-4,
                 lr_decay: float | None = 0.9,
                 reference_quirks: bool = False, nu_eps: float = 1e-4, name: str | None = None,
                 score: str = "product"):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"head.k={k}; expected an integer >= 1")
        if target not in TARGETS:
            raise ConfigError(f"head.target={target!r}; expected one of {list(TARGETS)}")
        if mapping not in MAPPINGS:
            raise ConfigError(f"head.mapping={mapping!r}; expected one of {list(MAPPINGS)}")
        if not isinstance(nu, (int, float)) or not 0.0 < float(nu) < 1.0:
            raise ConfigError(f"head.nu={nu}; expected the initial threshold in (0, 1)")
        if mapping == "soft-boundary" and not 0.0 < float(nu_svdd) <= 1.0:
            raise ConfigError(f"head.nu_svdd={nu_svdd}; expected a fraction in (0, 1] for soft-boundary mapping")
        if not 0.0 <= float(smoothing) < 0.5:
            raise ConfigError(f"head.smoothing={smoothing}; expected a value in [0, 0.5)")
        if lr_decay is not None and not 0.0 < float(lr_decay) <= 1.0:
            raise ConfigError(f"head.lr_decay={lr_decay}; expected a factor in (0, 1] or null")
        if mapping == "none" and not clustering:
            raise ConfigError("head.mapping=none with head.clustering=false leaves the head nothing to learn")
        if name:
            self.name = name
        self.k, self.target, self.mapping = k, target, mapping
        self.nu_svdd, self.smoothing, self.nu_lr, self.lr_decay = float(nu_svdd), float(smoothing), nu_lr, lr_decay
        self.use_mapping, self.use_clustering = mapping != "none", bool(clustering)
        self.reference_quirks, self.nu_eps = bool(reference_quirks), float(nu_eps)
        # ν is learnt only where it is used: the one-directed loss (k = 1, clustering on)
        self.learns_nu = self.use_clustering and k == 1
        self.nu = nn.Parameter(torch.tensor(float(nu)), requires_grad=self.learns_nu)
        self.register_parameter("centre", None)  # [k, d], created once d is known (on_fit_start)
        self.register_buffer("R", torch.zeros(k))
        self._dists: list[torch.Tensor] = []
        # d is a score of this head where it maps distances, and always for k > 1 (appendix B)
        self.gives_distance = self.use_mapping or k > 1
        check_score_mode(score, self.score_names(), self.name)
        self.score = score

    # -- set-up ---------------------------------------------------------------------------------
    def ensure_centre(self, d: int) -> None:
        """He-normal centre(s) [k, d] (the reference's kaiming_normal_, fan_in, relu)."""
        if self.centre is None or self.centre.shape[1] != d:
            c = torch.empty(self.k, d, device=self.nu.device, dtype=self.nu.dtype)  # follows .double()
            nn.init.kaiming_normal_(c, mode="fan_in", nonlinearity="relu")
            self.centre = nn.Parameter(c)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the centre is created once the embedding width is known: a fresh head takes it from the state
        if self.centre is None and prefix + "centre" in state_dict:
            self.ensure_centre(state_dict[prefix + "centre"].shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_fit_start(self, detector, ctx) -> None:
        h = ctx.sample().embedding  # one tiny pass: the embedding's width
        self._check_embedding(h, detector)
        self.ensure_centre(h.shape[-1])

    def _check_embedding(self, h: torch.Tensor, detector=None) -> None:
        if h.dim() != 3:
            name = getattr(getattr(detector, "backbone", None), "__class__", type(None)).__name__
            raise ConfigError(f"head={self.name} needs a per-step embedding [B, L, d]; the backbone ({name}) gives "
                              f"shape {list(h.shape)}, which has no time axis")

    def configure_optimizers(self, detector) -> dict:
        if not self.learns_nu:
            return {}
        # ν has its own Adam(amsgrad) and no LR decay (MADCluster_MAIN.py)
        return {"nu": torch.optim.Adam([self.nu], lr=self.nu_lr, amsgrad=True)}

    def configure_schedulers(self, optimizers: dict, schedulers: dict) -> None:
        if self.lr_decay is None:
            return
        for name, opt in optimizers.items():
            if name not in schedulers:  # the reference's LambdaLR(0.9^epoch) on the model optimiser
                schedulers[name] = torch.optim.lr_scheduler.ExponentialLR(opt, float(self.lr_decay))

    # -- the terms ----------------------------------------------------------------------------
    def threshold(self) -> torch.Tensor:
        """ν as used in the loss: kept inside (0, 1) by clamping (the reference does not
        bound it, which ``reference_quirks`` reproduces)."""
        if self.reference_quirks:
            return self.nu
        return self.nu.clamp(self.nu_eps, 1 - self.nu_eps)

    def terms(self, h: torch.Tensor) -> dict:
        """Per (t, k) terms on the embedding: q, p, dist, L_map, L_cluster ([B, L, k])."""
        self._check_embedding(h)
        self.ensure_centre(h.shape[-1])
        c = self.centre
        out = {}
        if self.k == 1:
            q = cosine_assignment(h, c)
            nu = self.threshold()
            p = dec_target(q) if self.target == "dec" else threshold_target(q, nu.detach())
            out["cluster"] = cluster_loss(q, p, nu, self.smoothing)
        else:
            q = student_t_assignment(h, c)
            # the DEC target is a fixed target (no gradient), as in DEC (Xie et al., 2016)
            p = dec_target(q, dims=(1,)).detach()
            out["cluster"] = kl_cluster_loss(q, p)
        out["q"], out["p"] = q, p
        out["dist"], out["map"] = mapping_loss(h, c, self.R, "one-class" if self.mapping == "none" else self.mapping,
                                               self.nu_svdd)
        return out

    def loss(self, out, ctx=None) -> dict:
        t = self.terms(_full_precision(out.embedding))
        parts = []
        if self.use_mapping:
            parts.append(t["map"])
        if self.use_clustering:
            parts.append(t["cluster"])
        per_window = sum(parts).sum(dim=(1, 2))                      # Σ_{t,k}
        total = torch.log(per_window.mean() + 1e-8)                   # log(mean_B Σ + 1e-8)
        if ctx is not None and ctx.stage in ("train", "val") and self.mapping == "soft-boundary":
            self._dists.append(t["dist"].detach().reshape(-1, self.k).cpu())
        if self.reference_quirks and not torch.isfinite(total):
            nu = float(self.nu.detach())
            if not 0.0 < nu < 1.0:
                raise TrainingError(f"head={self.name}: ν={nu:.4g} left (0, 1) under head.reference_quirks=true "
                                    "(the reference does not bound it), and the cluster loss turned NaN")
        # only the terms this head trains are logged: an arm's log shows what it trains
        out = {"loss": total}
        if self.use_mapping:
            out["map"] = t["map"].mean().detach()
        if self.use_clustering:
            out["cluster"] = t["cluster"].mean().detach()
        return out

    # -- per-epoch state ------------------------------------------------------------------------
    def on_epoch_end(self, detector, ctx) -> None:
        if self._dists:
            # R: the (1 − ν_svdd) quantile of √dist over this epoch's train + validation steps
            d = torch.cat(self._dists).double().sqrt().numpy()
            self.R.copy_(torch.as_tensor(np.quantile(d, 1 - self.nu_svdd, axis=0), dtype=self.R.dtype))
            self._dists = []
        if self.learns_nu:
            ctx.log(f"{self.name}_nu", self.threshold())
        if self.mapping == "soft-boundary":
            ctx.log(f"{self.name}_R", self.R)

    # -- score ----------------------------------------------------------------------------------
    def score_names(self) -> tuple[str, ...]:
        names = ["head"] + ["d"] * self.gives_distance + ["f"] * self.use_clustering
        return tuple(names + ["df"] * (self.gives_distance and self.use_clustering))

    def score_factors(self, out) -> dict:
        """Per window [B]: ``d``, ``f``, ``df`` where the head has them, and ``head`` (module
        docstring)."""
        t = self.terms(_full_precision(out.embedding))
        parts = {}
        if self.gives_distance:
            nearest = t["dist"] if self.k == 1 else t["dist"].gather(-1, t["q"].argmax(-1, keepdim=True))
            parts["d"] = nearest.mean(dim=(1, 2))                    # ‖h_t − c*‖², mean over t
        if self.use_clustering:
            parts["f"] = t["cluster"].sum(-1).mean(dim=1)            # Σ_k L_cluster, mean over t
        if "d" in parts and "f" in parts:
            parts["df"] = parts["d"] * parts["f"]
        if not self.use_clustering:
            parts["head"] = parts["d"]
        elif self.k == 1:
            parts["head"] = parts["f"]
        else:
            parts["head"] = parts["f"] + parts["d"]                  # Σ_j p log(p/q) + ‖h_t − c*‖²
        return parts

    def score_factor(self, out) -> torch.Tensor:
        """The head's own score per window (``score_factors(out)["head"]``)."""
        return self.score_factors(out)["head"]
