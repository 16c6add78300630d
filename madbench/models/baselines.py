"""Trivial baselines: the floors every detector must clear (METHODS.md, "Evaluation floors").

Each is a backbone like any other (one YAML in ``configs/backbone/`` with ``baseline:
true``), so it runs under every objective it fits, every scoring and every protocol, and
appears in every table. None trains by gradient descent: what it needs from the data is
fitted once, on the training windows, in ``on_fit_start`` (the Trainer then runs no epoch).
Its statistics are buffers, so they are saved and restored with the Detector.

Scores of their own (``extras["score"]`` [B, L], read by ``objective=direct``; no residuals):

- ``RandomScore`` (``backbone=random``): one uniform draw per window, the same for its L
  steps, from a generator seeded by ``seed`` at the start of every scoring pass;
- ``ConstantScore`` (``backbone=constant``): 1 for every step (flag everything: under a
  best-F1 threshold it scores the all-positive F1);
- ``InputDeviation`` (``backbone=deviation``): on the scaled input, per step, ``kind=mean``
  the mean squared deviation from the train mean, ``kind=range`` the count of values
  outside the train [min, max] (the quo vadis paper's sensor-range deviation).

Predictions whose residuals feed any residual scoring (M2AD included):

- ``Persistence`` (``backbone=persistence``): the forecast ŷ_t = x_{t-1};
- ``TrainMean`` (``backbone=train_mean``): the train mean of each sensor, as a forecast and
  as a reconstruction;
- ``PCAReconstruction`` (``backbone=pca``): each step's input projected on the leading
  principal components of the train steps (sklearn ``PCA``) and back; the sensors'
  reconstruction.

No baseline gives an ``embedding``, so a head on one is refused when the config is
composed: a head would make it a trained detector, not a floor.
"""
from __future__ import annotations

import torch
from torch import nn

from madbench.errors import ConfigError
from madbench.models.base import BackboneOutput


class Baseline(nn.Module):
    """Inputs are ``[sensors ‖ covariates]`` (``Entity.input_idx``), so the sensors are the
    first ``n_outputs`` input columns. Statistics are buffers created by ``fit``; a fresh
    baseline takes them from a state_dict."""

    def __init__(self, n_inputs: int, n_outputs: int, window: int):
        super().__init__()
        self.n_inputs, self.n_outputs, self.window = int(n_inputs), int(n_outputs), int(window)

    def fit(self, rows: torch.Tensor) -> None:
        """Statistics from the training steps ``rows`` [n, D_in] (no-op by default)."""

    @torch.no_grad()
    def on_fit_start(self, ctx) -> None:
        self.fit(ctx.rows("train"))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buf in self._buffers.items():
            if buf is None and prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _fitted(self, *names: str) -> None:
        if any(getattr(self, n) is None for n in names):
            raise RuntimeError(f"{type(self).__name__} is fitted in on_fit_start; fit the detector first")


def _output(**fields) -> BackboneOutput:
    return BackboneOutput(embedding=None, **fields)


# -- scores of their own ------------------------------------------------------------------------
class RandomScore(Baseline):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, seed: int = 0):
        super().__init__(n_inputs, n_outputs, window)
        self.seed = int(seed)
        self._restart()

    def _restart(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def train(self, mode: bool = True):
        # every scoring pass (eval mode) draws the same sequence: the score of a window
        # depends on the seed and its place in the pass, never on what was scored before
        if not mode:
            self._restart()
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        u = torch.rand(len(x), generator=self.generator).to(x.device)
        return _output(extras={"score": u[:, None].expand(-1, x.shape[1])})


class ConstantScore(Baseline):
    def forward(self, x: torch.Tensor) -> BackboneOutput:
        return _output(extras={"score": x.new_ones(x.shape[:2])})


DEVIATIONS = ("mean", "range")
COLUMNS = ("inputs", "sensors")


class InputDeviation(Baseline):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, kind: str = "mean", columns: str = "inputs"):
        super().__init__(n_inputs, n_outputs, window)
        if kind not in DEVIATIONS:
            raise ConfigError(f"backbone.model.kind={kind!r}; expected one of {list(DEVIATIONS)}")
        if columns not in COLUMNS:
            raise ConfigError(f"backbone.model.columns={columns!r}; expected one of {list(COLUMNS)}")
        self.kind, self.columns = kind, columns
        self.register_buffer("mean", None)
        self.register_buffer("low", None)
        self.register_buffer("high", None)

    def _cols(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.columns == "inputs" else x[..., : self.n_outputs]

    def fit(self, rows):
        rows = self._cols(rows).double()
        self.mean = rows.mean(0).float()
        self.low, self.high = rows.min(0).values.float(), rows.max(0).values.float()

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        self._fitted("mean")
        v = self._cols(x).float()
        if self.kind == "mean":
            score = ((v - self.mean) ** 2).mean(-1)
        else:
            score = ((v < self.low) | (v > self.high)).sum(-1).float()
        return _output(extras={"score": score})


# -- predictions --------------------------------------------------------------------------------
class Persistence(Baseline):
    def forward(self, x: torch.Tensor) -> BackboneOutput:
        return _output(forecast=x[:, -1:, : self.n_outputs].float())


class TrainMean(Baseline):
    def __init__(self, n_inputs: int, n_outputs: int, window: int):
        super().__init__(n_inputs, n_outputs, window)
        self.register_buffer("mean", None)

    def fit(self, rows):
        self.mean = rows[:, : self.n_outputs].double().mean(0).float()

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        self._fitted("mean")
        m = self.mean.to(x.device)
        return _output(forecast=m.expand(len(x), 1, -1), reconstruction=m.expand(len(x), x.shape[1], -1))


def auto_components(n_features: int) -> int:
    """The quo vadis paper's rule: 10 components up to 50 features, else 30; when that is
    not below the feature count, max(2, D // 5) (at most D); 1 for one feature."""
    if n_features <= 1:
        return 1
    k = 10 if n_features <= 50 else 30
    return min(max(2, n_features // 5), n_features) if k > n_features else k


class PCAReconstruction(Baseline):
    def __init__(self, n_inputs: int, n_outputs: int, window: int, n_components: int | float | str = "auto"):
        super().__init__(n_inputs, n_outputs, window)
        ok = (n_components == "auto"
              or (isinstance(n_components, int) and not isinstance(n_components, bool) and 1 <= n_components)
              or (isinstance(n_components, float) and 0.0 < n_components < 1.0))
        if not ok:
            raise ConfigError(f"backbone.model.n_components={n_components!r}; expected auto, an integer >= 1 or a "
                              "fraction of the variance in (0, 1)")
        if isinstance(n_components, int) and n_components > n_inputs:
            raise ConfigError(f"backbone.model.n_components={n_components} is more than the {n_inputs} input columns")
        self.n_components = n_components
        self.register_buffer("mean", None)
        self.register_buffer("components", None)  # [k, D_in], orthonormal rows

    def fit(self, rows):
        from sklearn.decomposition import PCA

        k = auto_components(rows.shape[1]) if self.n_components == "auto" else self.n_components
        # the D_in × D_in covariance's eigenvectors: the same components as a full SVD of the
        # n × D_in rows (n >> D_in), an order of magnitude faster
        pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(rows.double().cpu().numpy())
        self.mean = torch.as_tensor(pca.mean_, dtype=torch.float32)
        self.components = torch.as_tensor(pca.components_, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        self._fitted("mean", "components")
        c, m = self.components.to(x.device), self.mean.to(x.device)
        rec = ((x.float() - m) @ c.T) @ c + m
        return _output(reconstruction=rec[..., : self.n_outputs])

