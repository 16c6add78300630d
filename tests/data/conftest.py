"""Tiny files in every real on-disk layout, quirks included.

Sizes: train 120 rows, test 150 rows (>= the default window of 100, so the dataset configs
instantiate on them). Values are drawn so that the first row of every file is distinctive
(SMD has no header, and a loader that drops the first row would be caught).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

N_TRAIN, N_TEST = 120, 150
SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "datasets"

# (chan_id, spacecraft, sequences, classes) in CSV order; P-2 is listed twice like the real CSV
NASA_ROWS = [
    ("P-2", "SMAP", [[10, 20]], ["point"]),
    ("C-1", "MSL", [[5, 9], [100, 149]], ["point", "contextual"]),
    ("A-1", "SMAP", [[30, 40]], ["contextual"]),
    ("M-6", "MSL", [[0, 0]], ["point"]),
    ("P-2", "SMAP", [[15, 30]], ["contextual"]),
]
NASA_DIMS = {"MSL": 55, "SMAP": 25}


def _nasa_array(rng, n, d):
    x = np.zeros((n, d))
    x[:, 0] = rng.normal(size=n)
    x[rng.integers(0, n, size=n // 10), rng.integers(1, d, size=n // 10)] = 1.0  # one-hot commands
    return x


def write_nasa(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    rows = []
    done = set()
    for chan, sc, seqs, classes in NASA_ROWS:
        d = NASA_DIMS[sc]
        if chan not in done:
            np.save(root / "train" / f"{chan}.npy", _nasa_array(rng, N_TRAIN, d))
            np.save(root / "test" / f"{chan}.npy", _nasa_array(rng, N_TEST, d))
            done.add(chan)
        rows.append(
            {
                "chan_id": chan,
                "spacecraft": sc,
                "anomaly_sequences": str(seqs),
                "class": "[" + ", ".join(classes) + "]",
                "num_values": N_TEST,
            }
        )
    pd.DataFrame(rows).to_csv(root / "labeled_anomalies.csv", index=False)
    return root


SMD_MACHINES = {"machine-1-2": ".txt", "machine-1-10": ".txt.gz", "machine-2-1": ".txt"}
SMD_EVENTS = {"machine-1-2": [(0, 4), (50, 59)], "machine-1-10": [(149, 149)], "machine-2-1": []}
SMD_INTERP = {"machine-1-2": ["0-5:1,3", "50-60:38"], "machine-1-10": ["149-150:2"]}


def _smd_values(rng, n):
    x = np.round(rng.uniform(0, 1, size=(n, 38)), 6)
    x[0] = np.round(np.linspace(0.9, 0.1, 38), 6)  # a meaningful first row
    return x


def _write_text(path: Path, text: str) -> None:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def _matrix_text(x: np.ndarray) -> str:
    return "\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n"


def write_smd(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("train", "test", "test_label", "interpretation_label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for m, ext in SMD_MACHINES.items():
        _write_text(root / "train" / f"{m}{ext}", _matrix_text(_smd_values(rng, N_TRAIN)))
        _write_text(root / "test" / f"{m}{ext}", _matrix_text(_smd_values(rng, N_TEST)))
        y = np.zeros(N_TEST, dtype=int)
        for s, e in SMD_EVENTS[m]:
            y[s : e + 1] = 1
        _write_text(root / "test_label" / f"{m}{ext}", "\n".join(map(str, y)) + "\n")
        if m in SMD_INTERP:
            (root / "interpretation_label" / f"{m}.txt").write_text("\n".join(SMD_INTERP[m]) + "\n")
    return root


PSM_NAN = [(3, 0), (3, 5), (7, 24), (0, 1)]  # (row, feature) NaNs in train


def write_psm(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cols = ["timestamp_(min)"] + [f"feature_{i}" for i in range(25)]
    train = rng.normal(size=(N_TRAIN, 25))
    for r, c in PSM_NAN:
        train[r, c] = np.nan
    tr = pd.DataFrame(np.column_stack([np.arange(N_TRAIN, dtype=float), train]), columns=cols)
    t_test = np.arange(N_TRAIN, N_TRAIN + N_TEST, dtype=float)
    te = pd.DataFrame(np.column_stack([t_test, rng.normal(size=(N_TEST, 25))]), columns=cols)
    y = np.zeros(N_TEST, dtype=int)
    y[20:31] = 1
    y[140:] = 1
    lab = pd.DataFrame({"timestamp_(min)": t_test, "label": y})
    tr.to_csv(root / "train.csv", index=False)
    te.to_csv(root / "test.csv", index=False)
    lab.to_csv(root / "test_label.csv", index=False)
    return root


def write_merged(root: Path, name: str, dims: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{name}_train.npy", rng.normal(size=(N_TRAIN, dims)).astype(np.float32))
    np.save(root / f"{name}_test.npy", rng.normal(size=(N_TEST, dims)).astype(np.float32))
    y = np.zeros(N_TEST, dtype=bool)  # TSLib files hold bool or float labels
    y[10:20] = True
    np.save(root / f"{name}_test_label.npy", y)
    return root


def write_multisystem_files(root: Path, seed: int = 0) -> Path:
    """Handwritten (not via write_multisystem): two systems with different sensor sets."""
    rng = np.random.default_rng(seed)
    for name, cols, t0 in (("pump-1", ["p1", "p2", "t1", "cmd"], 1000), ("fan_2", ["rpm", "temp"], 0)):
        d = root / "systems" / name
        d.mkdir(parents=True, exist_ok=True)
        for split, n, start in (("train", N_TRAIN, t0), ("test", N_TEST, t0 + 10 * N_TRAIN)):
            df = pd.DataFrame(rng.normal(size=(n, len(cols))), columns=cols)
            df.insert(0, "timestamp", start + 10 * np.arange(n))  # a 10-unit step
            if split == "train" and name == "fan_2":
                df.loc[5, "rpm"] = np.nan
            df.to_csv(d / f"{split}.csv", index=False)
    (root / "meta.yaml").write_text(
        "systems:\n"
        "  pump-1:\n"
        "    system: plant\n"
        "    sensors: [p1, p2, t1]\n"
        "    covariates: [cmd]\n"
        "    groups:\n"
        "      pressure: {weight: 2.0, sensors: [p1, p2]}\n"
        "      temperature: {weight: 1, sensors: [t1]}\n"
    )
    # pump-1 test timestamps: 2200, 2210, ...; fan_2: 1200, 1210, ...
    (root / "labels.csv").write_text(
        "system,start,end,kind,sensors\n"
        "pump-1,2250,2290,spike,p1;t1\n"  # rows 5..9 inclusive
        "pump-1,2295,2301,,\n"  # row 10 only (2300)
        "fan_2,1200,1200,stuck,rpm\n"  # row 0
    )
    return root


def write_data_dir(root: Path) -> Path:
    """Everything under one `paths.data_dir`, in the folders the dataset configs expect."""
    write_nasa(root / "NASA")
    write_smd(root / "SMD")
    write_merged(root / "SMD", "SMD", 38)
    write_psm(root / "PSM")
    write_merged(root / "MSL", "MSL", 55)
    write_merged(root / "SMAP", "SMAP", 25)
    write_multisystem_files(root / "multisystem")
    return root


@pytest.fixture
def nasa_root(tmp_path):
    return write_nasa(tmp_path / "NASA")


@pytest.fixture
def smd_root(tmp_path):
    return write_smd(tmp_path / "SMD")


@pytest.fixture
def psm_root(tmp_path):
    return write_psm(tmp_path / "PSM")


@pytest.fixture
def msl_merged_root(tmp_path):
    return write_merged(tmp_path / "MSL", "MSL", 55)


@pytest.fixture
def smd_merged_root(tmp_path):
    return write_merged(tmp_path / "SMD", "SMD", 38)


@pytest.fixture
def multisystem_root(tmp_path):
    return write_multisystem_files(tmp_path / "multisystem")


@pytest.fixture
def data_dir(tmp_path):
    return write_data_dir(tmp_path / "datasets")


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "NASA" / "labeled_anomalies.csv").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA.resolve()}")
    return SHARED_DATA
