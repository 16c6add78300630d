"""Merge run directories into one table. Jobs never share a file; this is the only place
their results meet, which is what makes concurrent sweeps safe.

A job skipped by ``skip_done`` leaves ``skipped.json`` pointing at the earlier run that
holds its result; the collector follows it (to the run and the variants re-scored from it,
under its ``rescored/``), so a re-run sweep's table is complete.

A collected table carries the config its reports need, as ``config.<key>`` columns read
from each run's ``config.yaml`` (``config_columns``): every key that changes a number
(``madbench.keys``) and differs between the collected runs, and the keys reports read by
name (``keys.REPORTED``) whether they differ or not. So a committed CSV renders and pairs
on its own, without the run dirs it came from.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from madbench import keys
from madbench.errors import DataError
from madbench.rundir import atomic_write, read_config, read_results_csv, results_frame

KEY = ["config_hash", "entity", "aggregate", "protocol"]
#: the prefix of a config column
CONFIG_PREFIX = "config."


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
            d = read_results_csv(f)
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


def _cell(v):
    """A config value as a CSV cell: scalars as they are, lists and nulls as JSON."""
    if v is None or isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def run_config(run_dir: Path | str) -> dict:
    """A run dir's config as {dotted key: value}, only the keys that change a number
    (resolved; ``madbench.keys``)."""
    cfg = read_config(run_dir)
    tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return {k: v for k, v in keys.flatten(keys.keep_roles(tree, keys.HASHED_ROLES)).items()}


def config_columns(run_dirs) -> pd.DataFrame:
    """One row per run dir (index: the run dir) and one ``config.<key>`` column per key that
    differs between them or that reports read by name (``keys.REPORTED``). A run dir
    without a readable config.yaml gets an empty row."""
    configs = {}
    for d in dict.fromkeys(str(d) for d in run_dirs):
        try:
            configs[d] = {k: _cell(v) for k, v in run_config(d).items()}
        except (DataError, OSError, ValueError):
            configs[d] = {}
    frame = pd.DataFrame.from_dict(configs, orient="index")
    if frame.empty:
        return frame
    keep = [c for c in frame.columns
            if c in keys.REPORTED or frame[c].astype(str).nunique(dropna=False) > 1]
    return frame[sorted(keep)].add_prefix(CONFIG_PREFIX)


def with_config_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (rows with a ``run_dir``) with the ``config.<key>`` columns of their runs."""
    if not len(df) or "run_dir" not in df:
        return df
    cols = config_columns(df["run_dir"].unique())
    if cols.empty:
        return df
    df = df.drop(columns=[c for c in cols.columns if c in df])
    return df.join(cols, on="run_dir")


def collect_frame(root: Path | str) -> pd.DataFrame:
    """Every run's rows under ``root`` (see ``collect``), de-duplicated, with the config
    columns; a DataError when ``root`` holds no run."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; expected an outputs/ or sweep directory holding run dirs")
    files = find_results(root) + [f for d in skipped_targets(root) for f in find_results(d)]
    frames = _read(files)
    if not frames:
        raise DataError(f"{root}: no run dir (results.csv) below it; expected an outputs/ or sweep directory "
                        "(a collected CSV is read as a file, not collected again)")
    df = results_frame(pd.concat(frames, ignore_index=True).to_dict("records"))
    df = dedup(df)
    df = df.sort_values(["dataset", "backbone", "objective", "scoring", "seed", "config_hash", "protocol",
                         "entity", "aggregate"], kind="stable")
    return with_config_columns(df).reset_index(drop=True)


def safe_write_csv(df: pd.DataFrame, out: Path, force: bool = False) -> None:
    """Write ``df`` to ``out`` atomically, refusing to replace an existing file that holds
    more rows (a collection of the wrong directory would otherwise wipe a table) unless
    ``force``."""
    out = Path(out)
    if out.exists() and not force:
        try:
            n_old = len(pd.read_csv(out))
        except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError):
            n_old = 0
        if n_old > len(df):
            raise DataError(f"{out}: holds {n_old} rows and would be replaced by {len(df)}; nothing written "
                            "(--force replaces it, --out writes elsewhere)")
    atomic_write(out, lambda p: df.to_csv(p, index=False))


def collect(root: Path | str, out: Path | str | None = None, force: bool = False) -> tuple[pd.DataFrame, Path]:
    """Read every ``results.csv`` under ``root`` (and those of the runs its ``skipped.json``
    files point at, with their re-scored variants), de-duplicate (see ``dedup``), add the
    config columns and write ``out`` (default ``root/collected.csv``). A directory without
    runs is a DataError, and a file with more rows is never replaced without ``force``."""
    df = collect_frame(root)
    out = Path(out) if out else Path(root) / "collected.csv"
    safe_write_csv(df, out, force)
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
