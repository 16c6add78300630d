"""The Entity contract: what every loader returns and every later stage reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from madbench.errors import DataError


@dataclass
class Entity:
    """One system (a NASA channel, an SMD machine, a synthetic system, ...).

    ``train``/``test`` hold *all* columns, in the order of ``columns``. ``sensors`` are
    modelled and scored, ``covariates`` are input-only; both are names from ``columns``.
    ``meta`` carries loader-specific extras: ``events`` (list of dicts with start, end
    inclusive, kind, sensors), ``groups`` (M2AD sensor groups: name -> {weight, sensors}),
    ``interpretation`` (SMD), ``source`` (files read).
    """

    name: str
    system: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    columns: list[str]
    sensors: list[str]
    covariates: list[str] = field(default_factory=list)
    timestamps: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = np.asarray(self.train, dtype=np.float32)
        self.test = np.asarray(self.test, dtype=np.float32)
        self.labels = np.asarray(self.labels).astype(np.int8, copy=False)
        if self.timestamps is None:
            self.timestamps = np.arange(len(self.test), dtype=np.int64)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        where = self.meta.get("source", self.name)
        if self.train.ndim != 2 or self.test.ndim != 2:
            raise DataError(f"{where}: expected 2-D train/test arrays, got {self.train.shape} and {self.test.shape}")
        if self.train.shape[1] != self.test.shape[1] or self.train.shape[1] != len(self.columns):
            raise DataError(
                f"{where}: train has {self.train.shape[1]} columns, test {self.test.shape[1]}, "
                f"names {len(self.columns)}; expected all equal"
            )
        if len(self.labels) != len(self.test):
            raise DataError(f"{where}: {len(self.labels)} labels for {len(self.test)} test rows; expected equal lengths")
        if len(self.timestamps) != len(self.test):
            raise DataError(f"{where}: {len(self.timestamps)} timestamps for {len(self.test)} test rows")
        unknown = [c for c in list(self.sensors) + list(self.covariates) if c not in self.columns]
        if unknown:
            raise DataError(f"{where}: unknown column(s) {unknown}; available: {list(self.columns)}")
        if not self.sensors:
            raise DataError(f"{where}: no sensor columns selected; available: {list(self.columns)}")

    @property
    def sensor_idx(self) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.columns)}
        return np.array([pos[c] for c in self.sensors], dtype=np.int64)

    @property
    def covariate_idx(self) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.columns)}
        return np.array([pos[c] for c in self.covariates], dtype=np.int64)

    @property
    def input_idx(self) -> np.ndarray:
        """Model input columns: sensors then covariates."""
        return np.concatenate([self.sensor_idx, self.covariate_idx])

    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def n_inputs(self) -> int:
        return len(self.sensors) + len(self.covariates)


def label_events(labels: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of 1 in ``labels`` as inclusive (start, end) pairs."""
    y = np.asarray(labels).astype(np.int8).ravel()
    d = np.diff(np.concatenate([[0], y, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))
