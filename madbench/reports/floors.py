"""The trivial floor of a table: the best training-free baseline (``backbone.baseline``:
random, constant, deviation, pca, persistence, train_mean) on the same dataset, protocol
and entities as a row, and whether the row clears it.

Under best-F1 or event-overlap evaluation a score that learnt nothing can look good:
flagging every window scores the positive rate's F1, smooth noise more, and the input's own
deviation from the train data often more than a trained detector (METHODS.md, "Evaluation
floors"). So every method row is read against the best such baseline present in the same
results: per entity, the row's metric against the floor's (each averaged over seeds), the
mean difference, its bootstrap 95% CI, the Wilcoxon p, and the verdict of
``madbench.reports.pairs`` ("clears the floor" when it is a gain by that rule).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from madbench.reports.base import _parse
from madbench.tracking.collect import CONFIG_PREFIX

BASELINE_COLUMN = CONFIG_PREFIX + "backbone.baseline"


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """Per row: whether its run is a trivial baseline (its backbone YAML says
    ``baseline: true``; the collected table carries it as a config column)."""
    if BASELINE_COLUMN not in df:
        return pd.Series(False, index=df.index)
    return df[BASELINE_COLUMN].map(lambda v: _parse(v) is True or str(v).lower() == "true")


def _config_key(rows: pd.DataFrame, exclude=("seed",)) -> dict:
    cols = [c for c in rows.columns if c.startswith(CONFIG_PREFIX) and c[len(CONFIG_PREFIX):] not in exclude]
    first = rows.iloc[0]
    return {"backbone": str(first["backbone"]), **{c[len(CONFIG_PREFIX):]: str(first[c]) for c in cols}}


def baseline_names(df: pd.DataFrame) -> pd.Series:
    """Per baseline row (index of ``df``): the name of its baseline config, as the floor
    column names it (``deviation``, ``deviation (kind=range)``), so two configs of one
    baseline backbone stay two rows of a table."""
    rows = df[is_baseline(df)]
    if rows.empty:
        return pd.Series(dtype=object)
    keys = {rid: tuple(sorted(_config_key(g, exclude=("seed",) + tuple(_ROW_KEYS)).items()))
            for rid, g in rows.groupby("run_id")}
    labels = _labels({k: rows[rows["run_id"].map(keys) == k] for k in set(keys.values())})
    return rows["run_id"].map(lambda rid: labels[keys[rid]])


# what a table's rows already tell apart (a floor is one config however it is evaluated)
_ROW_KEYS = ("head.score", "protocol", "dataset.shard")


@dataclass
class Floor:
    label: str                 # which baseline
    mean: float                # its metric, mean over the entities (each averaged over seeds)
    per_entity: pd.Series      # entity → its metric


def entity_values(rows: pd.DataFrame, metric: str) -> pd.Series:
    """entity → ``metric`` averaged over seeds (per-entity rows of one config)."""
    ent = rows[rows["entity"] != "ALL"]
    return ent.groupby("entity")[metric].mean().astype(float)


def best_floor(df: pd.DataFrame, dataset: str, protocol: str, entities, metric: str) -> Floor | None:
    """The baseline with the highest mean ``metric`` over ``entities`` among the ok baseline
    runs of ``dataset`` under ``protocol`` that cover every one of them (a baseline's seeds
    averaged per entity); None if none does."""
    ok = df[(df["status"] == "ok") & (df["dataset"] == dataset) & (df["protocol"] == protocol)
            & (df["entity"] != "ALL")]
    ok = ok[is_baseline(ok)]
    if ok.empty or metric not in ok:
        return None
    entities = sorted(set(entities))
    # one candidate per baseline config, its seeds together
    configs = {}
    for _, rows in ok.groupby("run_id"):
        key = tuple(sorted(_config_key(rows).items()))
        configs.setdefault(key, []).append(rows)
    labels = _labels({k: pd.concat(v) for k, v in configs.items()})
    best = None
    for key, parts in configs.items():
        vals = entity_values(pd.concat(parts), metric)
        if not set(entities) <= set(vals.index):
            continue
        vals = vals.loc[entities]
        mean = float(vals.mean())
        if best is None or mean > best.mean:
            best = Floor(labels[key], mean, vals)
    return best


def _labels(configs: dict) -> dict:
    """A name per baseline config: its backbone, and the config values that tell it apart
    from other configs of the same backbone (``deviation (kind=range)``)."""
    by_backbone = {}
    for key, rows in configs.items():
        by_backbone.setdefault(str(rows["backbone"].iloc[0]), []).append(key)
    out = {}
    for backbone, ks in by_backbone.items():
        differ = set()
        if len(ks) > 1:
            d = [dict(k) for k in ks]
            differ = {c for c in set().union(*d) if len({x.get(c) for x in d}) > 1}
        for k in ks:
            extra = ", ".join(dict.fromkeys(f"{c.rsplit('.', 1)[-1]}={dict(k)[c]}" for c in sorted(differ)
                                            if c in dict(k)))  # dataset.sensors and backbone.model.sensors: once
            out[k] = f"{backbone} ({extra})" if extra else backbone
    return out


def against_floor(values: pd.Series, floor: Floor | None) -> dict:
    """The paired comparison of a row's per-entity ``values`` with the floor's: the floor's
    name and mean, the mean difference, CI, Wilcoxon p and the verdict."""
    from madbench.paired import paired_gain
    from madbench.reports.pairs import verdict

    if floor is None:
        return {"floor": "—", "floor_value": np.nan, "vs_floor": np.nan, "vs_floor_ci_low": np.nan,
                "vs_floor_ci_high": np.nan, "vs_floor_p": np.nan, "clears_floor": "no floor in RESULTS"}
    common = sorted(set(values.index) & set(floor.per_entity.index))
    gain = paired_gain(floor.per_entity.loc[common].to_numpy(), values.loc[common].to_numpy())
    v = verdict(gain)
    clears = {"gain": "yes", "loss": "below", "no difference shown": "not shown"}.get(v, v)
    return {"floor": floor.label, "floor_value": floor.mean, "vs_floor": gain.mean_gain, "vs_floor_ci_low": gain.ci_low,
            "vs_floor_ci_high": gain.ci_high, "vs_floor_p": gain.wilcoxon_p, "clears_floor": clears}


FLOOR_RULE = ("floor: the best training-free baseline (backbone.baseline: random, constant, deviation, pca, persistence, "
              "train_mean) in RESULTS on the same dataset, protocol and entities; 'clears floor' yes = the row's "
              "per-entity gain over it is a gain by the verdict rule (95% bootstrap CI excludes 0 and Wilcoxon "
              "p < 0.05), below = a loss by that rule, not shown = neither")


def floor_text(r) -> str:
    """'name value (Δ gain, clears)' for a rendered cell."""
    if r["floor"] == "—":
        return "—"
    return f"{r['floor']} {r['floor_value']:.3f} ({r['vs_floor']:+.3f}, {r['clears_floor']})"
