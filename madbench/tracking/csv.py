"""Run-directory files. Every write is atomic (temp file + rename), so a killed job never
leaves a half-written file and a collector never reads one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from madbench.metrics import METRIC_COLUMNS
from madbench.metrics.interpretation import INTERPRETATION_COLUMNS

ID_COLUMNS = ["run_id", "config_hash", "seed", "name", "dataset", "backbone", "objective", "head", "scoring",
              "protocol", "entity", "aggregate", "status", "error"]
SIZE_COLUMNS = ["n_entities", "n_train", "n_test", "n_sensors", "n_inputs", "n_scored", "n_missing", "epochs_run",
                "fit_seconds", "score_seconds", "total_seconds", "finished_at"]
# the interpretation columns rank sensors against test labels (never a threshold); empty
# where the dataset names no ground-truth sensors
RESULT_COLUMNS = ID_COLUMNS + SIZE_COLUMNS + ["threshold", "threshold_uses_test_labels"] + list(METRIC_COLUMNS) \
    + list(INTERPRETATION_COLUMNS)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → the long result schema: every column present, extras kept at the end."""
    df = pd.DataFrame(rows)
    for c in RESULT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return df[RESULT_COLUMNS + extra]


def write_results(run_dir: Path, rows: list[dict]) -> pd.DataFrame:
    df = results_frame(rows)
    atomic_write(Path(run_dir) / "results.csv", lambda p: df.to_csv(p, index=False))
    return df


def write_train_log(run_dir: Path, records: list[dict]) -> None:
    df = pd.DataFrame(records, columns=["entity", "epoch", "train_loss", "val_loss", "seconds"]) if not records \
        else pd.DataFrame(records)
    atomic_write(Path(run_dir) / "train_log.csv", lambda p: df.to_csv(p, index=False))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def _w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    atomic_write(Path(path), _w)


def read_results(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "results.csv")
