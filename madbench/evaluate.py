"""Recompute metrics from a run dir's ``scores.npz`` without training.

``madbench-eval RUN_DIR protocol=[strict,tslib] protocol.m2ad.alpha=0.01`` re-evaluates the
named protocols and replaces their rows in ``RUN_DIR/results.csv`` (other rows are kept).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from madbench import protocols as P
from madbench.errors import ConfigError, DataError
from madbench.tracking import csv as tcsv

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def load_scores(run_dir: Path) -> list[P.EntityScores]:
    path = Path(run_dir) / "scores.npz"
    if not path.exists():
        raise DataError(f"{path}: missing; expected the scores.npz a completed run writes")
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["__meta__"]))
    out = []
    for name in meta["entities"]:
        k = f"{name}__"
        out.append(P.EntityScores(
            name=name, labels=z[k + "labels"], score=z[k + "score"], train_score=z[k + "train_score"],
            val_mask=z[k + "val_mask"].astype(bool), window_score=z[k + "window_score"],
            window_start=z[k + "window_start"], window=int(meta["window"]),
            p=z[k + "p"] if k + "p" in z else None, flags=z[k + "flags"] if k + "flags" in z else None))
    return out


def _protocol_cfg(cfg, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    proto = [o for o in overrides if o.split("=")[0] in ("protocol", "+protocol")]
    if proto:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = compose("config", overrides=proto, return_hydra_config=False)
        cfg.protocol = OmegaConf.create(OmegaConf.to_container(composed.protocol, resolve=False))
    dotted = [o for o in overrides if o not in proto]
    if dotted:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotted))
    return cfg


def main(argv: list[str]) -> pd.DataFrame:
    if not argv or argv[0].startswith("-"):
        raise ConfigError("usage: madbench-eval RUN_DIR [protocol=NAME|[A,B]] [protocol.NAME.key=value ...]")
    run_dir = Path(argv[0])
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise DataError(f"{cfg_path}: missing; expected a madbench run dir")
    cfg = _protocol_cfg(OmegaConf.load(cfg_path), argv[1:])
    entities = load_scores(run_dir)
    ratio = OmegaConf.select(cfg, "dataset.anomaly_ratio", default=None)
    old = tcsv.read_results(run_dir) if (run_dir / "results.csv").exists() else pd.DataFrame()
    ident = old.iloc[0].to_dict() if len(old) else {}
    rows = []
    for name, pcfg in cfg.protocol.items():
        for r in P.build(name, OmegaConf.to_container(pcfg, resolve=True)).evaluate(entities, anomaly_ratio=ratio):
            base = {k: ident.get(k) for k in tcsv.ID_COLUMNS if k not in r}
            base.update({"status": "ok", "error": ""})
            rows.append(base | r)
    new = tcsv.results_frame(rows)
    kept = old[~old["protocol"].isin(list(cfg.protocol))] if len(old) else old
    df = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    tcsv.write_results(run_dir, df.to_dict("records"))
    from madbench.tracking.summary import print_summary

    print_summary(new, run_dir)
    return new
