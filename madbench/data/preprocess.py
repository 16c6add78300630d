"""Imputation and scaling, fitted on train only (sklearn style: fit, then transform)."""
from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from madbench.data.entity import Entity

SCALERS = ("minmax", "standard", "none")


def column_means(train: np.ndarray) -> np.ndarray:
    """Per-column mean of finite train values (0 for an all-NaN column)."""
    x = np.where(np.isfinite(train), train, np.nan)
    with np.errstate(all="ignore"):
        m = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
    return np.nan_to_num(m, nan=0.0).astype(np.float32)


def impute(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Replace non-finite values by the given (train) column means."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    out = x.copy()
    out[bad] = np.broadcast_to(means, x.shape)[bad]
    return out


class Preprocessor:
    """Mean imputation + scaling of the model-input columns, fitted on train.

    ``refit_on_test`` reproduces M2AD's reference quirk (the scaler is fitted again on
    the test data); it is off by default because it leaks test statistics.
    """

    def __init__(self, scaler: str = "minmax", feature_range=(0.0, 1.0), refit_on_test: bool = False):
        if scaler not in SCALERS:
            raise ValueError(f"dataset.scaler={scaler!r}; expected one of {SCALERS}")
        self.scaler = scaler
        self.feature_range = tuple(feature_range)
        self.refit_on_test = refit_on_test

    def _make(self):
        if self.scaler == "minmax":
            return MinMaxScaler(feature_range=self.feature_range, clip=False)
        if self.scaler == "standard":
            return StandardScaler()
        return None

    def fit(self, train: np.ndarray) -> "Preprocessor":
        self.means_ = column_means(train)
        self.scaler_ = self._make()
        if self.scaler_ is not None:
            self.scaler_.fit(impute(train, self.means_))
        return self

    def transform(self, x: np.ndarray, *, is_test: bool = False) -> np.ndarray:
        x = impute(x, self.means_)
        scaler = self.scaler_
        if is_test and self.refit_on_test and scaler is not None:
            scaler = self._make().fit(x)
        if scaler is None:
            return x.astype(np.float32, copy=False)
        with np.errstate(all="ignore"):
            out = scaler.transform(x)
        # constant train columns: sklearn leaves scale 1, which is what we want
        return np.asarray(out, dtype=np.float32)

    def state(self) -> dict:
        """The fitted state as arrays and plain values (a checkpoint keeps it);
        :meth:`from_state` rebuilds an equal Preprocessor."""
        fitted = {} if self.scaler_ is None else {k: v for k, v in vars(self.scaler_).items()
                                                  if k.endswith("_") and not k.startswith("_")}
        return {"scaler": self.scaler, "feature_range": list(self.feature_range), "refit_on_test": self.refit_on_test,
                "means": self.means_, "fitted": fitted}

    @classmethod
    def from_state(cls, state: dict) -> "Preprocessor":
        pre = cls(scaler=state["scaler"], feature_range=state["feature_range"],
                  refit_on_test=bool(state["refit_on_test"]))
        pre.means_ = np.asarray(state["means"], dtype=np.float32)
        pre.scaler_ = pre._make()
        if pre.scaler_ is not None:
            for k, v in state["fitted"].items():
                setattr(pre.scaler_, k, v)
        return pre

    def apply(self, entity: Entity) -> Entity:
        """Fit on ``entity.train`` and return a scaled copy of the entity."""
        self.fit(entity.train)
        return dataclasses.replace(
            entity,
            train=self.transform(entity.train),
            test=self.transform(entity.test, is_test=True),
        )
