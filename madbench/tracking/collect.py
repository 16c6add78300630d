"""Merge run directories into one table. Jobs never share a file; this is the only place
their results meet, which is what makes concurrent sweeps safe.

A job skipped by ``skip_done`` leaves ``skipped.json`` pointing at the earlier run that
holds its result; the collector follows it (to the run and the variants re-scored from it,
under its ``rescored/``), so a re-run sweep's table is complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from madbench.rundir import atomic_write, results_frame

KEY = ["config_hash", "entity", "aggregate", "protocol"]


def find_results(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("results.csv") if not p.name.startswith("."))


def skipped_targets(root: Path | str) -> list[Path]:
    """The run dirs that ``skipped.json`` files under ``root`` point at (existing ones)."""
    out = []
    for f in sorted(Path(root).rglob("skipped.json")):
        try:
            target = Path(json.loads(f.read_text())["done_in"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (target / "results.csv").exists():
            out.append(target)
    return out


def _read(files: list[Path]) -> list[pd.DataFrame]:
    frames, seen = [], set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            d = pd.read_csv(f)
        except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        d["run_dir"] = str(f.parent)
        frames.append(d)
    return frames


def dedup(df: pd.DataFrame) -> pd.DataFrame:
    """Per (config_hash, entity, aggregate, protocol), the newest ``ok`` row; a config with
    no ``ok`` run keeps its newest failed rows. Once a config has an ``ok`` run its failed
    rows are dropped, so a retried job shows only its result."""
    if not len(df):
        return df
    df = df.copy()
    df["aggregate"] = df["aggregate"].fillna("")
    ok = df["status"] == "ok"
    has_ok = ok.groupby(df["config_hash"]).transform("any")
    df = df[ok | ~has_ok]
    df = df.sort_values("finished_at", ascending=False, kind="stable", na_position="last")
    return df.drop_duplicates(KEY, keep="first")


def collect(root: Path | str, out: Path | str | None = None) -> tuple[pd.DataFrame, Path]:
    """Read every ``results.csv`` under ``root`` (and those of the runs its ``skipped.json``
    files point at, with their re-scored variants), de-duplicate (see ``dedup``) and write
    ``out`` (default ``root/collected.csv``)."""
    root = Path(root)
    files = find_results(root) + [f for d in skipped_targets(root) for f in find_results(d)]
    frames = _read(files)
    df = results_frame(pd.concat(frames, ignore_index=True).to_dict("records")) if frames else results_frame([])
    if len(df):
        df = dedup(df)
        df = df.sort_values(["dataset", "backbone", "objective", "scoring", "seed", "config_hash", "protocol",
                             "entity", "aggregate"], kind="stable")
    out = Path(out) if out else root / "collected.csv"
    atomic_write(out, lambda p: df.to_csv(p, index=False))
    return df, out


def find_ok_run(root: Path | str, config_hash: str, exclude: Path | None = None) -> Path | None:
    """The newest run dir under ``root`` whose results are all ``ok`` for ``config_hash``."""
    best, best_t = None, ""
    needle = config_hash.encode()
    exclude = Path(exclude).resolve() if exclude is not None else None
    for f in find_results(root):
        if exclude is not None and f.parent.resolve() == exclude:
            continue
        try:
            if needle not in f.read_bytes():  # cheap: most run dirs hold another config
                continue
            d = pd.read_csv(f, usecols=["config_hash", "status", "finished_at"], dtype=str)
        except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if len(d) and (d["config_hash"] == config_hash).all() and (d["status"] == "ok").all():
            t = str(d["finished_at"].max())
            if t > best_t:
                best, best_t = f.parent, t
    return best
