"""Results → paper tables: ours (mean ± std over seeds) next to the published numbers.

    madbench-tables m2ad_table2 RESULTS [--out DIR]
    madbench-tables m2ad_ablation RESULTS [--out DIR]
    madbench-tables madcluster_t3 RESULTS [--out DIR]
    madbench-tables madcluster_t2 RESULTS [--out DIR] [--metric f1]
    madbench-tables madcluster_t1 RESULTS [--out DIR]
    madbench-tables grid RESULTS [--out DIR] [--metric COLUMN]
    madbench-tables paired RESULTS --paired head=none,madcluster [--by backbone[,scoring]] [--metric f1]
    madbench-tables traces RESULTS --paired head=none,madcluster [--entity C-1] [--seed 0] [--wandb]
    madbench-tables attribution RESULTS [--out DIR]
    madbench-tables m2ad_search RESULTS [--out DIR]

RESULTS is a collected CSV (``madbench-collect``) or a directory of run dirs (collected
on the fly). Prints the table and writes it as CSV, Markdown and LaTeX (default: beside
RESULTS). Event F1/F0.5 are recomputed from tp/fp/fn summed over the entities of one seed,
then averaged over seeds (std with ddof=1, as the paper's figures are). ``flagged`` is the
mean share of test steps inside detected intervals: event overlap rewards wide intervals
(one over a whole split scores tp = all events, fp = 0), so read F1 next to it. Where our entity
set differs from the paper's (e.g. the 19 SMD machines available here), the paper's
figure is also recomputed on the same entities from the authors' per-signal results.

``madcluster_t1`` has one row per dataset × backbone × number of clusters (``head.k``, read
from each run dir's ``config.yaml``), the appendix's Table 1 beside. ``grid`` has one row per
dataset × backbone × head × scoring and one column per protocol: each protocol's own F1
(strict macro F1, madcluster best window F1, m2ad event F1, tslib PA-F1), or ``--metric``
under every protocol.

``traces`` is a plot, not a table: per backbone, one entity's test score from the two run
dirs of a pair (config-equal but for the ``--paired`` key), stacked, each with its threshold
(``--protocol`` strict or tslib) and the labelled events: ``<out>/traces/*.png`` (and W&B
with ``--wandb``).

``m2ad_search`` has one row per dataset and interval construction (``protocol.m2ad``
grouping and padding / bridge, ``scoring.two_sided``), read from each row's run dir
``config.yaml``: a run and its re-scored variants (``madbench-eval --variants``). Its
``flagged`` is the share of all test steps inside detected intervals (pooled over entities).
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent / "paper"
#: ablation run name suffix → (our label, the paper's pipeline name in m2ad_ablation.csv).
#: The paper's single "4 std" arm does not say which distribution fed s: both are shown.
ABLATION_NAMES = {"gmm+gamma": ("GMM + gamma", "GMM + gamma"), "normal+gamma": ("Normal + gamma", "Normal + gamma"),
                  "gmm+chi2": ("GMM + chi2", "GMM + chi2"), "normal+chi2": ("Normal + chi2", "Normal + chi"),
                  "gmm+std4": ("4 std (GMM)", "4 std"), "normal+std4": ("4 std (Normal)", "4 std")}


def _f(tp, fp, fn, beta=1.0):
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * fn + fp
    return np.where(den > 0, (1 + b2) * tp / np.where(den > 0, den, 1), 0.0)


def load_results(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        from madbench.tracking.collect import collect

        df, _ = collect(path)
        return df
    if not path.exists():
        raise SystemExit(f"madbench-tables: error: {path} does not exist; expected a collected CSV or a run directory")
    return pd.read_csv(path)


def per_seed(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per (by..., seed): tp/fp/fn summed over entities, then P, R, F1, F0.5."""
    ent = df[(df["protocol"] == "m2ad") & (df["entity"] != "ALL") & (df["status"] == "ok")]
    if ent.empty:
        raise SystemExit("madbench-tables: error: no ok protocol=m2ad rows in RESULTS; the M2AD tables need runs with "
                         "scoring=m2ad protocol=[m2ad,...] (e.g. experiment=m2ad_table2 or m2ad_ablation)")
    if "detected_fraction" not in ent:  # results written before the column existed
        ent = ent.assign(detected_fraction=np.nan)
    g = ent.groupby(by + ["seed"]).agg(event_tp=("event_tp", "sum"), event_fp=("event_fp", "sum"),
                                       event_fn=("event_fn", "sum"), n_entities=("entity", "nunique"),
                                       detected_fraction=("detected_fraction", "mean"),
                                       entities=("entity", lambda s: tuple(sorted(set(s))))).reset_index()
    tp, fp, fn = g.event_tp.to_numpy(float), g.event_fp.to_numpy(float), g.event_fn.to_numpy(float)
    g["precision"] = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    g["recall"] = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    g["f1"], g["f05"] = _f(tp, fp, fn), _f(tp, fp, fn, 0.5)
    return g


def summarise(g: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    return g.groupby(by).agg(
        seeds=("seed", "nunique"), n_entities=("n_entities", "max"), entities=("entities", "first"),
        events=("event_tp", lambda s: int(s.iloc[0] + g.loc[s.index[0], "event_fn"])),
        precision_mean=("precision", "mean"), recall_mean=("recall", "mean"),
        detected_fraction=("detected_fraction", "mean"),
        f1_mean=("f1", "mean"), f1_std=("f1", sd), f05_mean=("f05", "mean"), f05_std=("f05", sd)).reset_index()


@functools.lru_cache(maxsize=1)
def _paper_m2ad_signals() -> pd.DataFrame:
    """M2AD's rows of the authors' per-signal results (read once per process)."""
    d = pd.read_csv(PAPER_DIR / "m2ad_benchmark_per_signal.csv")
    return d[d.pipeline == "M2AD"]


def _paper_iterations(dataset: str, entities: tuple) -> tuple[pd.DataFrame, int]:
    """M2AD's published tp/fp/fn per iteration, summed over ``entities``, and how many of
    them the per-signal file has."""
    d = _paper_m2ad_signals()
    d = d[(d.dataset.str.upper() == dataset.upper()) & d.signal.isin(entities)]
    return d.groupby("iteration")[["tp", "fp", "fn"]].sum(), d.signal.nunique()


def paper_on_entities(dataset: str, entities: tuple) -> tuple[float, float, float, float, int]:
    """M2AD's published per-signal results restricted to ``entities``: (f1, std, f05, std, n)."""
    it, n = _paper_iterations(dataset, entities)
    if it.empty:
        return (np.nan,) * 4 + (0,)
    f1 = _f(it.tp.to_numpy(float), it.fp.to_numpy(float), it.fn.to_numpy(float))
    f05 = _f(it.tp.to_numpy(float), it.fp.to_numpy(float), it.fn.to_numpy(float), 0.5)
    return f1.mean(), f1.std(ddof=1), f05.mean(), f05.std(ddof=1), n


def m2ad_table2(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["scoring"] == "m2ad"]
    if df.empty:
        raise SystemExit("madbench-tables: error: no scoring=m2ad results with protocol m2ad in RESULTS")
    # one row per dataset and run name: a directory may also hold other configs (e.g. the
    # ablation's re-scored variants), which must not be pooled into the same counts
    s = summarise(per_seed(df, ["dataset", "name"]), ["dataset", "name"])
    names_per_ds = s.groupby("dataset")["name"].transform("nunique")
    paper = pd.read_csv(PAPER_DIR / "m2ad_table2.csv")
    paper = paper[paper.pipeline == "M2AD"].set_index(paper[paper.pipeline == "M2AD"].dataset.str.lower())
    rows = []
    for (_, r), n_names in zip(s.iterrows(), names_per_ds):
        ds = str(r.dataset).lower()
        p = paper.loc[ds] if ds in paper.index else None
        pf1, pf1s, pf05, pf05s, n_paper = paper_on_entities(ds, r.entities)
        paper_signals = _paper_m2ad_signals()
        full = p is not None and n_paper == paper_signals[paper_signals.dataset == ds.upper()].signal.nunique()
        rows.append({
            "dataset": ds.upper() + ("" if full else f" ({r.n_entities} entities)") + (f" · {r['name']}" if n_names > 1 else ""),
            "seeds": r.seeds, "entities": r.n_entities, "events": r.events, "detected_fraction": r.detected_fraction,
            "ours_f1": r.f1_mean, "ours_f1_std": r.f1_std, "ours_f05": r.f05_mean, "ours_f05_std": r.f05_std,
            "paper_f1": p.f1_mean if p is not None else np.nan, "paper_f1_std": p.f1_std if p is not None else np.nan,
            "paper_f05": p.f05_mean if p is not None else np.nan,
            "paper_f05_std": p.f05_std if p is not None else np.nan,
            "paper_same_entities_f1": pf1, "paper_same_entities_f1_std": pf1s,
            "paper_same_entities_f05": pf05, "paper_same_entities_f05_std": pf05s,
        })
    out = pd.DataFrame(rows)
    out["delta_f1"] = out.ours_f1 - out.paper_same_entities_f1
    return out


def m2ad_ablation(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["scoring"] == "m2ad"].copy()
    if df.empty:
        raise SystemExit("madbench-tables: error: no scoring=m2ad results in RESULTS")
    s = summarise(per_seed(df, ["dataset", "name"]), ["dataset", "name"])
    arm = s["name"].map(lambda n: str(n).split("-")[-1] in ABLATION_NAMES)
    if arm.any():  # e.g. the trained run the arms were re-scored from, under its own name
        s = s[arm]
    paper = pd.read_csv(PAPER_DIR / "m2ad_ablation.csv").set_index("pipeline")
    known = s["name"].map(lambda n: ABLATION_NAMES.get(str(n).split("-")[-1], (str(n), None)))
    s["variant"] = known.map(lambda k: k[0])
    for c in ("f1_mean", "f1_std", "f05_mean", "f05_std"):
        s[f"paper_{c}"] = known.map(lambda k: paper[c].get(k[1], np.nan) if k[1] else np.nan)
    # the paper's ablation covers all 28 SMD machines and has no per-machine results; its
    # method arm (GMM + gamma) is recomputed on our machines from the per-signal file
    same = [paper_on_entities(str(ds), ents) if k[1] == "GMM + gamma" else (np.nan,) * 4 + (0,)
            for ds, ents, k in zip(s["dataset"], s["entities"], known)]
    s["paper_same_entities_f1"] = [x[0] for x in same]
    s["paper_same_entities_f1_std"] = [x[1] for x in same]
    s["dataset"] = [f"{str(ds).upper()} ({n} entities)" for ds, n in zip(s["dataset"], s["n_entities"])]
    order = {label: i for i, (label, _) in enumerate(ABLATION_NAMES.values())}
    s = s.sort_values(["dataset", "variant"], key=lambda col: col.map(lambda v: order.get(v, len(order)))
                      if col.name == "variant" else col, kind="stable")
    return s[["dataset", "variant", "seeds", "n_entities", "events", "detected_fraction", "precision_mean", "recall_mean",
              "f1_mean", "f1_std",
              "f05_mean", "f05_std", "paper_f1_mean", "paper_f1_std", "paper_f05_mean", "paper_f05_std",
              "paper_same_entities_f1", "paper_same_entities_f1_std"]].reset_index(drop=True)


#: the interval constructions in table order, and the config keys that identify a row
GROUPING_ORDER = {"padding": 0, "forward": 1, "none": 2}
SEARCH_KEYS = ["grouping", "steps", "sided", "error", "distribution", "calibration", "alpha"]


@functools.lru_cache(maxsize=None)
def construction(run_dir: str) -> tuple:
    """The interval construction and scoring settings of one run dir, from its config.yaml:
    (grouping, steps, sided, error, distribution, calibration, alpha). ``steps`` is the
    padding or the bridge (None for ``grouping=none``); a config written before
    ``protocol.m2ad.grouping`` existed used padding. ``sided`` is what the scorer applied
    (``scoring.two_sided``; null: two-sided for area errors only); ``alpha`` the effective one."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise SystemExit(f"madbench-tables: error: {path} is missing; m2ad_search reads each run dir's config")
    cfg = OmegaConf.load(path)
    p, sc = cfg.protocol.get("m2ad") or {}, cfg.scoring
    grouping = p.get("grouping", "padding")
    steps = {"padding": p.get("padding", 50), "forward": p.get("bridge", 360)}.get(grouping)
    two = sc.get("two_sided")
    two = sc.get("error", "point") == "area" if two is None else bool(two)
    alpha = p.get("alpha") if p.get("alpha") is not None else sc.get("alpha")
    return (grouping, steps, "two" if two else "one", sc.get("error"), sc.get("distribution"), sc.get("calibration"),
            alpha)


def m2ad_search(df: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × interval construction × sidedness: tp/fp/fn (mean over seeds
    of the sums over entities), F1, F0.5, the flagged share, and the paper beside it."""
    df = df[(df["scoring"] == "m2ad") & (df["protocol"] == "m2ad") & (df["entity"] != "ALL") & (df["status"] == "ok")]
    if df.empty:
        raise SystemExit("madbench-tables: error: no scoring=m2ad results with protocol m2ad in RESULTS")
    if "run_dir" not in df:
        raise SystemExit("madbench-tables: error: m2ad_search needs the run_dir column (give it a directory, "
                         "or a CSV from madbench-collect)")
    df = df.copy()
    df[SEARCH_KEYS] = pd.DataFrame([construction(str(d)) for d in df["run_dir"]], index=df.index)
    df["steps"] = df["steps"].astype("Int64")
    df["alpha"] = df["alpha"].astype(float)
    key = ["dataset", "name"] + SEARCH_KEYS
    # a run and its variant can describe the same construction (e.g. two_sided null vs false
    # on point errors): one row per entity, the newest
    df = df.sort_values("finished_at", ascending=False, kind="stable")
    df = df.drop_duplicates(key + ["seed", "entity"], keep="first")
    if "n_test" not in df:
        df["n_test"] = np.nan
    df["flagged_steps"] = df["detected_fraction"] * df["n_test"]
    g = df.groupby(key + ["seed"], dropna=False).agg(
        event_tp=("event_tp", "sum"), event_fp=("event_fp", "sum"), event_fn=("event_fn", "sum"),
        n_entities=("entity", "nunique"), flagged_steps=("flagged_steps", "sum"), n_test=("n_test", "sum"),
        flagged_mean=("detected_fraction", "mean"),
        entities=("entity", lambda s: tuple(sorted(set(s))))).reset_index()
    g["flagged"] = np.where(g.n_test > 0, g.flagged_steps / g.n_test.where(g.n_test > 0), g.flagged_mean)
    tp, fp, fn = g.event_tp.to_numpy(float), g.event_fp.to_numpy(float), g.event_fn.to_numpy(float)
    g["f1"], g["f05"] = _f(tp, fp, fn), _f(tp, fp, fn, 0.5)

    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    s = g.groupby(key, dropna=False).agg(
        seeds=("seed", "nunique"), entities=("entities", "first"), n_entities=("n_entities", "max"),
        tp=("event_tp", "mean"), fp=("event_fp", "mean"), fn=("event_fn", "mean"),
        f1=("f1", "mean"), f1_std=("f1", sd), f05=("f05", "mean"), f05_std=("f05", sd),
        flagged=("flagged", "mean")).reset_index()
    paper = pd.read_csv(PAPER_DIR / "m2ad_table2.csv")
    paper = paper[paper.pipeline == "M2AD"].set_index(paper[paper.pipeline == "M2AD"].dataset.str.lower())
    rows = []
    for _, r in s.iterrows():
        ds = str(r.dataset).lower()
        it, n_paper = _paper_iterations(ds, r.entities)
        same = paper_on_entities(ds, r.entities)
        rows.append({
            "dataset": ds.upper(), "name": r["name"], **{k: r[k] for k in SEARCH_KEYS}, "seeds": r.seeds,
            "entities": r.n_entities, "events": r.tp + r.fn, "tp": r.tp, "fp": r.fp, "fn": r.fn,
            "f1": r.f1, "f1_std": r.f1_std, "f05": r.f05, "f05_std": r.f05_std, "flagged": r.flagged,
            "paper_f1": paper.f1_mean.get(ds, np.nan), "paper_f05": paper.f05_mean.get(ds, np.nan),
            "paper_same_entities_f1": same[0], "paper_same_entities_f05": same[2], "paper_entities": n_paper,
            "paper_tp": it.tp.mean() if len(it) else np.nan, "paper_fp": it.fp.mean() if len(it) else np.nan,
            "paper_fn": it.fn.mean() if len(it) else np.nan})
    out = pd.DataFrame(rows)
    out["delta_f1"] = out.f1 - out.paper_same_entities_f1
    order = out.grouping.map(lambda v: GROUPING_ORDER.get(v, len(GROUPING_ORDER)))
    out = out.assign(_o=order).sort_values(["dataset", "name", "error", "distribution", "calibration", "alpha", "_o",
                                            "steps", "sided"], kind="stable", na_position="first")
    return out.drop(columns="_o").reset_index(drop=True)


#: head → the method name of MADCluster's appendix Table 3
T3_ARMS = {"none": None, "distance_only": "DeepSVDD", "clustering_only": "Clustering", "madcluster": "MADCluster"}
MC_METRICS = ("f1", "aff_precision", "aff_recall", "vus_roc", "vus_pr")


def _entity_weighted(rows: pd.DataFrame, metrics) -> pd.Series:
    """ALL rows of one config and seed (one per shard run) → the entity count summed and
    each metric's mean over all their entities (the runs' means weighted by entity count)."""
    n = rows["n_entities"].fillna(1).astype(float)
    out = {"n_entities": int(n.sum())}
    for m in metrics:
        v = rows[m].astype(float)
        keep = v.notna()
        out[m] = float((v[keep] * n[keep]).sum() / n[keep].sum()) if keep.any() else float("nan")
    return pd.Series(out)


def madcluster_per_seed(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per (by..., seed): the ``madcluster`` protocol's entity-mean row (the reference
    averages its metrics over entities), and the ``strict`` protocol's macro F1 beside it."""
    ok = df[(df["entity"] == "ALL") & (df["status"] == "ok")]
    mc = ok[ok["protocol"] == "madcluster"]
    if mc.empty:
        raise SystemExit("madbench-tables: error: no protocol=madcluster results in RESULTS; the MADCluster "
                         "tables need runs with protocol=[madcluster,...] (e.g. experiment=madcluster_t3)")
    # a config split into runs by dataset.shard has one ALL row per run: the entity mean of the
    # whole set is their mean weighted by each run's entity count
    g = mc.groupby(by + ["seed"]).apply(_entity_weighted, MC_METRICS, include_groups=False).reset_index()
    g["n_entities"] = g["n_entities"].astype(int)
    strict = ok[(ok["protocol"] == "strict") & (ok["aggregate"] == "macro")]
    if len(strict):
        sf = strict.groupby(by + ["seed"]).apply(_entity_weighted, ("f1",), include_groups=False).reset_index()
        g = g.merge(sf[by + ["seed", "f1"]].rename(columns={"f1": "strict_f1"}), how="left")
    else:
        g["strict_f1"] = np.nan
    return g


def madcluster_summary(g: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by``: the seeds, entities, and mean and std (ddof=1) over seeds of each metric
    of ``madcluster_per_seed``."""
    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    aggs = {"seeds": ("seed", "nunique"), "entities": ("n_entities", "max")}
    for m in MC_METRICS + ("strict_f1",):
        aggs[f"{m}_mean"], aggs[f"{m}_std"] = (m, "mean"), (m, sd)
    return g.groupby(by).agg(**aggs).reset_index()


def madcluster_t3(df: pd.DataFrame) -> pd.DataFrame:
    s = madcluster_summary(madcluster_per_seed(df, ["dataset", "backbone", "head"]), ["dataset", "backbone", "head"])
    paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t3.csv")
    paper = paper.set_index([paper.method, paper.dataset.str.upper()])
    s["arm"] = [f"{b} alone (head=none)" if h == "none" else f"{T3_ARMS.get(h) or h} (head={h})"
                for h, b in zip(s["head"], s["backbone"])]
    for m in ("f1", "aff_precision", "aff_recall"):
        s[f"paper_{m}"] = [paper[m].get((T3_ARMS.get(h), str(ds).upper()), np.nan) if T3_ARMS.get(h) else np.nan
                           for h, ds in zip(s["head"], s["dataset"])]
    # the direction the paper claims: each arm against distance mapping alone (its "DeepSVDD")
    base = s[s["head"] == "distance_only"].set_index(["dataset", "backbone"])
    key = list(zip(s["dataset"], s["backbone"]))
    s["delta_f1_vs_distance_only"] = [r - base["f1_mean"].get(k, np.nan) for r, k in zip(s["f1_mean"], key)]
    pbase = {str(ds).upper(): paper["f1"].get(("DeepSVDD", str(ds).upper()), np.nan) for ds in s["dataset"]}
    s["paper_delta_f1_vs_distance_only"] = [p - pbase[str(ds).upper()] for p, ds in zip(s["paper_f1"], s["dataset"])]
    order = {h: i for i, h in enumerate(T3_ARMS)}
    s = s.sort_values(["dataset", "backbone", "head"], key=lambda c: c.map(order) if c.name == "head" else c)
    return s.reset_index(drop=True)


# -- paired comparisons (issue 13) ---------------------------------------------------------------
#: config keys that never change what a run computes (madbench.config.HASH_EXCLUDE) plus the
#: run's own labels; everything else must match between the two runs of a pair
PAIR_IGNORE = ("paths", "logger", "hydra", "skip_done", "name", "optimize_metric", "rescore", "rescored_from",
               "experiment_name", "tags", "trainer.progress", "trainer.eval_batch_size", "trainer.device",
               "trainer.eval_batch_bytes", "trainer.allocator")


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


@functools.lru_cache(maxsize=None)
def _run_config(run_dir: str) -> dict:
    """A run dir's config.yaml, resolved and flattened (read once per process)."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise SystemExit(f"madbench-tables: error: {path} is missing; this table reads each run dir's config")
    return _flat(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def run_configs(df: pd.DataFrame) -> dict[str, dict]:
    """run_id → its flattened, resolved config (from the run dir's config.yaml)."""
    if "run_dir" not in df:
        raise SystemExit("madbench-tables: error: --paired needs the run dirs' configs; give a sweep directory or "
                         "a CSV written by madbench-collect (it has a run_dir column)")
    return {run_id: _run_config(str(run_dir)) for run_id, run_dir in df.groupby("run_id")["run_dir"].first().items()}


def _ignored(key: str, paired: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in PAIR_IGNORE + (paired,))


def pair_runs(df: pd.DataFrame, key: str, a: str, b: str) -> list[tuple[str, str]]:
    """(run_id in arm a, run_id in arm b) pairs whose configs are equal but for ``key``
    (and labels); a run of arm a without such a partner is a SystemExit naming the first
    key its closest candidate differs in."""
    ok = df[df["status"] == "ok"]
    configs = run_configs(ok)
    arm = {rid: str(c.get(key, c.get(f"{key}.name"))) for rid, c in configs.items()}
    runs_a = [r for r in configs if arm[r] == a]
    runs_b = [r for r in configs if arm[r] == b]
    if not runs_a or not runs_b:
        raise SystemExit(f"madbench-tables: error: --paired {key}={a},{b}: found {len(runs_a)} run(s) with {key}={a} "
                         f"and {len(runs_b)} with {key}={b}; expected both arms in RESULTS")

    def rest(rid):
        return {k: v for k, v in configs[rid].items() if not _ignored(k, key)}

    index = {}
    for rid in runs_b:
        index.setdefault(json_key(rest(rid)), rid)
    pairs = []
    for rid in runs_a:
        partner = index.get(json_key(rest(rid)))
        if partner is None:
            ra = rest(rid)
            diffs = [sorted(k for k in set(ra) | set(rest(o)) if ra.get(k) != rest(o).get(k)) for o in runs_b]
            first = min(diffs, key=len)
            raise SystemExit(f"madbench-tables: error: --paired {key}={a},{b}: run {rid} has no partner whose config "
                             f"differs only in {key}; the closest differs in {first[0]!r}")
        pairs.append((rid, partner))
    return pairs


def json_key(d: dict) -> str:
    import json

    return json.dumps(d, sort_keys=True, default=str)


def paired_table(df: pd.DataFrame, key: str, a: str, b: str, by: str | list[str] = "backbone", metric: str = "f1",
                 protocol: str = "madcluster") -> pd.DataFrame:
    """Per ``by`` group (one result column, or several: ``"backbone,scoring"`` on the grid,
    whose backbones have a raw and an m2ad arm): per-entity ``metric`` under ``protocol``,
    averaged over seeds, arm b minus arm a on the same entities; mean gain, bootstrap 95%
    CI, Wilcoxon p."""
    from madbench.paired import paired_gain

    by = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in df]
    if missing:
        raise SystemExit(f"madbench-tables: error: --by {missing[0]}: not a result column; expected e.g. backbone, "
                         "scoring, dataset")
    pairs = pair_runs(df, key, a, b)
    ent = df[(df["status"] == "ok") & (df["entity"] != "ALL") & (df["protocol"] == protocol)]
    if ent.empty:
        raise SystemExit(f"madbench-tables: error: no per-entity rows of protocol {protocol} in RESULTS")
    val = ent.set_index(["run_id", "entity"])[metric]
    rows = []
    records = []
    for ra, rb in pairs:
        ga = ent[ent.run_id == ra]
        if ga.empty:
            continue
        for e in ga["entity"].unique():
            if (rb, e) in val.index:
                records.append({**{c: ga[c].iloc[0] for c in by}, "seed": ga["seed"].iloc[0], "entity": e,
                                "a": float(val.loc[(ra, e)]), "b": float(val.loc[(rb, e)])})
    rec = pd.DataFrame(records)
    if rec.empty:
        raise SystemExit(f"madbench-tables: error: the paired runs share no entity with protocol {protocol} rows")
    for group, g in rec.groupby(by):
        per_entity = g.groupby("entity")[["a", "b"]].mean()  # averaged over seeds
        gain = paired_gain(per_entity["a"].to_numpy(), per_entity["b"].to_numpy())
        rows.append({**dict(zip(by, group if isinstance(group, tuple) else (group,))), "seeds": g["seed"].nunique(), "entities": gain.n,
                     f"{metric}_{a}": gain.mean_a,
                     f"{metric}_{b}": gain.mean_b, "mean_gain": gain.mean_gain, "ci_low": gain.ci_low,
                     "ci_high": gain.ci_high, "wilcoxon_p": gain.wilcoxon_p, "verdict": gain.verdict()})
    return pd.DataFrame(rows)


def madcluster_t2(df: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Appendix Table 2: per backbone, head=none vs head=madcluster under the madcluster
    protocol (mean ± std over seeds of the entity mean), the paper beside, and the paired
    per-entity gain with its CI and Wilcoxon p."""
    g = madcluster_per_seed(df, ["dataset", "backbone", "head"])

    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    s = g.groupby(["dataset", "backbone", "head"]).agg(
        seeds=("seed", "nunique"), entities=("n_entities", "max"), f1_mean=("f1", "mean"), f1_std=("f1", sd),
        vus_roc_mean=("vus_roc", "mean"), vus_pr_mean=("vus_pr", "mean"),
        strict_f1_mean=("strict_f1", "mean")).reset_index()
    paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t2_msl.csv")
    paper["key"] = paper.backbone.str.lower().str.replace("anomalytransformer", "anomaly_transformer")
    paper = paper.set_index(["key", paper.madcluster.astype(str).str.lower()])
    gains = paired_table(df, "head", "none", "madcluster", "backbone", metric).set_index("backbone")
    rows = []
    for (ds, bb), grp in s.groupby(["dataset", "backbone"]):
        arms = grp.set_index("head")
        none = arms.loc["none"] if "none" in arms.index else None
        mc = arms.loc["madcluster"] if "madcluster" in arms.index else None
        p0 = paper["f1"].get((bb, "false"), np.nan)
        p1 = paper["f1"].get((bb, "true"), np.nan)
        gain = gains.loc[bb] if bb in gains.index else None
        ours = (mc.f1_mean - none.f1_mean) if none is not None and mc is not None else np.nan
        rows.append({
            "dataset": ds, "backbone": bb, "seeds": int(max(arms.seeds)), "entities": int(max(arms.entities)),
            "f1_none": none.f1_mean if none is not None else np.nan, "f1_none_std": none.f1_std if none is not None else np.nan,
            "f1_madcluster": mc.f1_mean if mc is not None else np.nan,
            "f1_madcluster_std": mc.f1_std if mc is not None else np.nan,
            "paper_f1_none": p0, "paper_f1_madcluster": p1, "delta_ours": ours, "delta_paper": p1 - p0,
            "direction_matches": _same_direction(ours, p1 - p0),
            "vus_roc_none": none.vus_roc_mean if none is not None else np.nan,
            "vus_roc_madcluster": mc.vus_roc_mean if mc is not None else np.nan,
            "paper_vus_roc_none": paper["vus_roc"].get((bb, "false"), np.nan),
            "paper_vus_roc_madcluster": paper["vus_roc"].get((bb, "true"), np.nan),
            "strict_f1_none": none.strict_f1_mean if none is not None else np.nan,
            "strict_f1_madcluster": mc.strict_f1_mean if mc is not None else np.nan,
            "paired_gain": gain.mean_gain if gain is not None else np.nan,
            "ci_low": gain.ci_low if gain is not None else np.nan, "ci_high": gain.ci_high if gain is not None else np.nan,
            "wilcoxon_p": gain.wilcoxon_p if gain is not None else np.nan,
            "verdict": gain.verdict if gain is not None else "not paired"})
    return pd.DataFrame(rows)


def _same_direction(ours: float, paper: float, tol: float = 0.005) -> str:
    if ours != ours or paper != paper:
        return "—"
    sign = lambda x: 0 if abs(x) <= tol else (1 if x > 0 else -1)
    return "yes" if sign(ours) == sign(paper) else "no"


def with_config_column(df: pd.DataFrame, key: str, column: str, table: str) -> pd.DataFrame:
    """``df`` with ``column`` = the config value ``key`` of each row's run (from run_dir)."""
    if "run_dir" not in df:
        raise SystemExit(f"madbench-tables: error: {table} needs the run_dir column to read {key} (give it a "
                         "directory, or a CSV from madbench-collect)")
    df = df[df["status"] == "ok"]
    return df.assign(**{column: [_run_config(str(d)).get(key) for d in df["run_dir"]]})


def madcluster_t1(df: pd.DataFrame) -> pd.DataFrame:
    """Appendix Table 1: per dataset × backbone × number of clusters k (``head.k``, read
    from each run's config), the madcluster protocol's F1 / Aff-P / Aff-R (mean ± std over
    seeds of the entity mean) and strict macro F1, the paper's figure for that k beside, and
    each k against k = 1 (the paper's claim: one cluster is as good or better)."""
    ok = df[(df["status"] == "ok") & (df["head"] == "madcluster")]
    if ok.empty:
        raise SystemExit("madbench-tables: error: no ok head=madcluster results in RESULTS; madcluster_t1 needs "
                         "experiment=madcluster_t1 runs")
    by = ["dataset", "backbone", "k"]
    s = madcluster_summary(madcluster_per_seed(with_config_column(ok, "head.k", "k", "madcluster_t1"), by), by)
    s["k"] = s["k"].astype(int)
    paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t1_clusters.csv")
    paper = paper.set_index([paper.k.astype(int), paper.dataset.str.upper()])
    for m in ("f1", "aff_precision", "aff_recall"):
        s[f"paper_{m}"] = [paper[m].get((int(k), str(ds).upper()), np.nan) for k, ds in zip(s["k"], s["dataset"])]
    k1 = s[s["k"] == 1].set_index(["dataset", "backbone"])["f1_mean"]
    s["delta_f1_vs_k1"] = [f - k1.get((ds, bb), np.nan) for f, ds, bb in zip(s["f1_mean"], s["dataset"], s["backbone"])]
    pk1 = {str(ds).upper(): paper["f1"].get((1, str(ds).upper()), np.nan) for ds in s["dataset"]}
    s["paper_delta_f1_vs_k1"] = [p - pk1[str(ds).upper()] for p, ds in zip(s["paper_f1"], s["dataset"])]
    return s.sort_values(["dataset", "backbone", "k"]).reset_index(drop=True)


#: protocol → (the aggregate row read, its headline metric) for the grid table: each
#: protocol's own F1 (strict: point F1 at the train/validation threshold, mean over
#: entities; madcluster: best window F1, mean over entities; m2ad: event F1 from tp/fp/fn
#: summed over entities; tslib: point-adjusted F1, mean over entities)
GRID_METRICS = {"strict": ("macro", "f1"), "madcluster": ("mean", "f1"), "m2ad": ("sum", "event_f1"),
                "tslib": ("mean", "pa_f1")}
GRID_BY = ["dataset", "backbone", "head", "scoring"]
HEAD_ORDER = {"none": 0, "madcluster": 1}
SCORING_ORDER = {"raw": 0, "m2ad": 1}


def grid(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """One row per dataset × backbone × head × scoring; per protocol, its headline F1
    (``GRID_METRICS``), or ``metric`` from every protocol's aggregate row: mean ± std over
    seeds. ``m2ad_flagged`` is the m2ad protocol's share of test steps inside detected
    intervals (read its event F1 next to it). Cells whose runs all failed keep a row with
    the count and the first error."""
    need = [c for c in GRID_BY + ["protocol", "entity", "status", "seed"] if c not in df]
    if need:
        raise SystemExit(f"madbench-tables: error: RESULTS has no {need[0]!r} column; expected madbench result rows")
    ok = df[(df["status"] == "ok") & (df["entity"] == "ALL")]
    ok = ok[[GRID_METRICS.get(p, ("", ""))[0] == a for p, a in zip(ok["protocol"], ok["aggregate"].fillna(""))]]
    if ok.empty:
        raise SystemExit("madbench-tables: error: no ok aggregate rows of the strict, madcluster, m2ad or tslib "
                         "protocol in RESULTS (e.g. experiment=grid)")
    # a config re-run (or a skip_done target collected twice) counts once per seed: the newest row
    ok = ok.sort_values("finished_at", ascending=False, kind="stable") if "finished_at" in ok else ok
    ok = ok.drop_duplicates(GRID_BY + ["protocol", "seed"], keep="first")

    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    rows = {}
    for key, g in ok.groupby(GRID_BY):
        r = rows.setdefault(key, dict(zip(GRID_BY, key)))
        r["seeds"] = max(r.get("seeds", 0), g["seed"].nunique())
        if "n_entities" in g:
            r["entities"] = max(r.get("entities", 0), int(g["n_entities"].max()))
        for proto, pg in g.groupby("protocol"):
            col = metric or GRID_METRICS[proto][1]
            v = pg[col].astype(float) if col in pg else pd.Series(np.nan, index=pg.index)
            r[f"{proto}_{col if metric else 'f1'}"], r[f"{proto}_{col if metric else 'f1'}_std"] = v.mean(), sd(v)
            if proto == "m2ad" and "detected_fraction" in pg:
                r["m2ad_flagged"] = float(pg["detected_fraction"].mean())
    failed = df[df["status"] == "failed"]
    for key, g in failed.groupby(GRID_BY) if len(failed) else []:
        r = rows.setdefault(key, dict(zip(GRID_BY, key)) | {"seeds": 0})
        r["failed_runs"] = g["run_id"].nunique() if "run_id" in g else len(g)
        r["error"] = str(g["error"].dropna().iloc[0]) if "error" in g and g["error"].notna().any() else ""
    out = pd.DataFrame(list(rows.values()))
    if "failed_runs" not in out:
        out["failed_runs"] = 0
    out["failed_runs"] = out["failed_runs"].fillna(0).astype(int)
    if "error" not in out:
        out["error"] = ""
    out["error"] = out["error"].fillna("")
    cols = GRID_BY + ["seeds"] + (["entities"] if "entities" in out else [])
    name = metric or "f1"
    for proto in GRID_METRICS:
        cols += [f"{proto}_{name}", f"{proto}_{name}_std"]
        for c in cols[-2:]:
            if c not in out:
                out[c] = np.nan
    out["m2ad_flagged"] = out["m2ad_flagged"] if "m2ad_flagged" in out else np.nan
    out = out[cols + ["m2ad_flagged", "failed_runs", "error"]]
    out = out.sort_values(GRID_BY, key=lambda c: c.map(HEAD_ORDER) if c.name == "head" else
                          c.map(SCORING_ORDER) if c.name == "scoring" else c, kind="stable")
    return out.reset_index(drop=True)


#: protocols whose threshold is on the per-step score (the plotted trace); madcluster's is on
#: window scores and m2ad's on p-values
TRACE_PROTOCOLS = ("strict", "tslib")


def traces(df: pd.DataFrame, key: str, a: str, b: str, out: Path, by: str | list[str] = "backbone",
           entity: str | None = None, seed: int | None = None, protocol: str = "strict", loggers=()) -> pd.DataFrame:
    """Per ``by`` group, one pair of runs that differ only in ``key`` (``pair_runs``; at
    ``seed``, default the group's smallest): one entity's test score under each arm, each
    with its ``protocol`` threshold and the labelled events, stacked in one PNG
    (``<out>/traces/<group>-<entity>-seed<seed>.png``) read from the two run dirs'
    scores.npz; each PNG is also given to ``loggers`` (``log_image``). ``entity`` defaults
    to the first (sorted) one with a labelled event. Returns one row per PNG."""
    from madbench.rescoring import load_scores
    from madbench.tracking.plots import plot_traces

    if protocol not in TRACE_PROTOCOLS:
        raise SystemExit(f"madbench-tables: error: traces --protocol {protocol}: its threshold is not on the step "
                         f"score; expected one of {', '.join(TRACE_PROTOCOLS)}")
    by = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by)
    ok = df[df["status"] == "ok"]
    info = ok.groupby("run_id").first()
    groups: dict[tuple, list] = {}
    for ra, rb in pair_runs(df, key, a, b):
        r = info.loc[ra]
        groups.setdefault(tuple(r[c] for c in by), []).append((int(r["seed"]), ra, rb))
    rows = []
    for group, cands in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
        cands = sorted(c for c in cands if seed is None or c[0] == int(seed))
        if not cands:
            raise SystemExit(f"madbench-tables: error: traces --seed {seed}: no pair of runs of {dict(zip(by, group))} "
                             "has that seed")
        s, ra, rb = cands[0]
        scores = [{e.name: e for e in load_scores(Path(str(info.loc[r, "run_dir"])))} for r in (ra, rb)]
        common = sorted(set(scores[0]) & set(scores[1]))
        if entity is not None and entity not in common:
            raise SystemExit(f"madbench-tables: error: traces --entity {entity}: not scored in both runs of "
                             f"{dict(zip(by, group))}; they have {', '.join(common[:10])}")
        ent = entity or next((n for n in common if scores[0][n].labels.any()), common[0] if common else None)
        if ent is None:
            raise SystemExit(f"madbench-tables: error: the runs {ra} and {rb} share no scored entity")
        arms = []
        for arm, run, sc in ((a, ra, scores[0]), (b, rb, scores[1])):
            thr = df[(df["run_id"] == run) & (df["entity"] == ent) & (df["protocol"] == protocol)]["threshold"]
            arms.append((f"{key}={arm}", sc[ent].score, float(thr.iloc[0]) if len(thr) else None))
        label = "-".join(str(v) for v in group)
        stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{label}-{ent}-seed{s}")
        path = plot_traces(Path(out) / "traces" / f"{stem}.png", f"{label} · {ent} · seed {s}", scores[0][ent].labels,
                           arms, protocol)
        for lg in loggers:
            lg.log_image(f"traces/{stem}", path)
        rows.append({**dict(zip(by, group)), "seed": s, "entity": ent, "run_a": ra, "run_b": rb,
                     f"threshold_{a}": arms[0][2], f"threshold_{b}": arms[1][2], "png": str(path)})
    return pd.DataFrame(rows)


# -- sensor attribution (issue 15) -----------------------------------------------------------------
ATTRIBUTION_BY = ["dataset", "backbone", "objective", "head", "scoring", "attribution"]
ATTRIBUTION_METRICS = ("hit_100", "hit_150", "ndcg_100")


def attribution_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × backbone × objective × head × scoring × attribution kind: the
    interpretation metrics over the entities that have ground-truth sensors (e.g. the SMD
    machines present). Per seed, steps are pooled over entities (each entity's step mean
    weighted by its step count) and events likewise; ``*_macro`` is the plain mean over
    entities. Then the mean (and std, ddof=1) over seeds. The values are the same under
    every protocol; the rows of one protocol are read (strict when present)."""
    if "hit_100" not in df:
        raise SystemExit("madbench-tables: error: RESULTS has no attribution columns (hit_100, ...); they come "
                         "from runs on a dataset with ground-truth sensors (SMD interpretation_label)")
    ent = df[(df["entity"] != "ALL") & (df["status"] == "ok") & df["hit_100"].notna()]
    if ent.empty:
        raise SystemExit("madbench-tables: error: no entity row with attribution metrics in RESULTS")
    protos = list(ent["protocol"].unique())
    ent = ent[ent["protocol"] == ("strict" if "strict" in protos else protos[0])]
    rows = []
    for key, g in ent.groupby(ATTRIBUTION_BY + ["seed"], dropna=False):
        r = dict(zip(ATTRIBUTION_BY + ["seed"], key))
        w_steps, w_events = g["interp_steps"].to_numpy(float), g["interp_events"].to_numpy(float)
        for m in ATTRIBUTION_METRICS:
            r[m] = float(np.average(g[m], weights=w_steps)) if w_steps.sum() else np.nan
            ev = g[f"{m}_event"].to_numpy(float)
            ok = np.isfinite(ev) & (w_events > 0)
            r[f"{m}_event"] = float(np.average(ev[ok], weights=w_events[ok])) if ok.any() else np.nan
            r[f"{m}_macro"] = float(g[m].mean())
        r.update(entities=g["entity"].nunique(), steps=int(w_steps.sum()), events=int(w_events.sum()),
                 events_skipped=int(g["interp_events_skipped"].sum()))
        rows.append(r)
    per_seed = pd.DataFrame(rows)

    def sd(x):
        return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")

    cols = [f"{m}{sfx}" for m in ATTRIBUTION_METRICS for sfx in ("", "_event", "_macro")]
    aggs = {"seeds": ("seed", "nunique"), "entities": ("entities", "max"), "steps": ("steps", "max"),
            "events": ("events", "max"), "events_skipped": ("events_skipped", "max")}
    aggs.update({c: (c, "mean") for c in cols})
    aggs.update({f"{m}_std": (m, sd) for m in ATTRIBUTION_METRICS})
    return per_seed.groupby(ATTRIBUTION_BY, dropna=False).agg(**aggs).reset_index()


TABLES = {"m2ad_table2": m2ad_table2, "m2ad_ablation": m2ad_ablation, "madcluster_t3": madcluster_t3,
          "madcluster_t2": madcluster_t2, "madcluster_t1": madcluster_t1, "grid": grid,
          "attribution": attribution_table, "m2ad_search": m2ad_search}


def _pm(m, s) -> str:
    if m != m:
        return "—"
    return f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f}"


def _delta(d) -> str:
    return f"{d:+.3f}" if d == d else "—"


def _render_search(t: pd.DataFrame) -> pd.DataFrame:
    def num(v, fmt="{:.3f}"):
        return "—" if v != v or v is None or v is pd.NA else fmt.format(v)

    cols = {"dataset": t.dataset}
    # settings that are the same in every row say nothing: shown only where they vary
    for c in ("name", "error", "distribution", "calibration", "alpha"):
        if t[c].astype(str).nunique() > 1:
            cols[c] = t[c]
    cols.update({
        "grouping": t.grouping, "padding / bridge": [num(v, "{:d}") if v is not pd.NA else "—" for v in t.steps],
        "sided": t.sided, "seeds": t.seeds,
        "tp": [num(v, "{:g}") for v in t.tp], "fp": [num(v, "{:g}") for v in t.fp], "fn": [num(v, "{:g}") for v in t.fn],
        "F1": [_pm(a, b) for a, b in zip(t.f1, t.f1_std)], "F0.5": [_pm(a, b) for a, b in zip(t.f05, t.f05_std)],
        "flagged": [num(f, "{:.1%}") for f in t.flagged],
        "F1 paper": [num(v) for v in t.paper_f1], "F0.5 paper": [num(v) for v in t.paper_f05],
        "F1 paper (same entities)": [num(v) for v in t.paper_same_entities_f1],
        "tp/fp/fn paper (same entities)": [f"{a:.1f}/{b:.1f}/{c:.1f}" if a == a else "—"
                                           for a, b, c in zip(t.paper_tp, t.paper_fp, t.paper_fn)],
        "ΔF1": [_delta(d) for d in t.delta_f1]})
    return pd.DataFrame(cols)


def _mc_render(t: pd.DataFrame, lead: dict, versus: str, delta_ours, delta_paper) -> pd.DataFrame:
    """The MADCluster appendix tables' columns (T1, T3): ours (mean ± std) beside the paper
    for F1, Aff-P and Aff-R, each row's F1 against the reference arm ``versus``, strict F1."""
    return pd.DataFrame({
        **lead,
        "F1 ours": [_pm(a, b) for a, b in zip(t.f1_mean, t.f1_std)],
        "F1 paper": [_pm(a, np.nan) for a in t.paper_f1],
        f"ΔF1 vs {versus} ours": [_delta(d) for d in delta_ours],
        "ΔF1 paper": [_delta(d) for d in delta_paper],
        "Aff-P ours": [_pm(a, b) for a, b in zip(t.aff_precision_mean, t.aff_precision_std)],
        "Aff-P paper": [_pm(a, np.nan) for a in t.paper_aff_precision],
        "Aff-R ours": [_pm(a, b) for a, b in zip(t.aff_recall_mean, t.aff_recall_std)],
        "Aff-R paper": [_pm(a, np.nan) for a in t.paper_aff_recall],
        "strict F1 (macro)": [_pm(a, b) for a, b in zip(t.strict_f1_mean, t.strict_f1_std)]})


def render(name: str, t: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: 'mean ± std' strings."""
    if name == "m2ad_search":
        return _render_search(t)
    if name == "madcluster_t2":
        return pd.DataFrame({
            "backbone": t.backbone, "seeds": t.seeds, "entities": t.entities,
            "F1 none": [_pm(a, b) for a, b in zip(t.f1_none, t.f1_none_std)],
            "F1 +MADCluster": [_pm(a, b) for a, b in zip(t.f1_madcluster, t.f1_madcluster_std)],
            "paper": [f"{a:.2f} → {b:.2f}" if a == a else "—" for a, b in zip(t.paper_f1_none, t.paper_f1_madcluster)],
            "ΔF1 ours": [_delta(d) for d in t.delta_ours], "ΔF1 paper": [_delta(d) for d in t.delta_paper],
            "same direction": t.direction_matches,
            "paired gain [95% CI]": [f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]" if g == g else "—"
                                     for g, lo, hi in zip(t.paired_gain, t.ci_low, t.ci_high)],
            "Wilcoxon p": [f"{p:.3g}" if p == p else "—" for p in t.wilcoxon_p], "verdict": t.verdict,
            "strict F1 none → +MC": [f"{a:.3f} → {b:.3f}" if a == a else "—"
                                     for a, b in zip(t.strict_f1_none, t.strict_f1_madcluster)]})
    if name == "attribution":
        return pd.DataFrame({
            "dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "head": t["head"],
            "scoring": t.scoring, "attribution": t.attribution, "seeds": t.seeds, "entities": t.entities,
            "steps": t.steps, "events (skipped)": [f"{e} ({s})" for e, s in zip(t.events, t.events_skipped)],
            "HitRate@100%": [_pm(a, b) for a, b in zip(t.hit_100, t.hit_100_std)],
            "HitRate@150%": [_pm(a, b) for a, b in zip(t.hit_150, t.hit_150_std)],
            "NDCG@100%": [_pm(a, b) for a, b in zip(t.ndcg_100, t.ndcg_100_std)],
            "per event H@100/H@150/N@100": [f"{a:.3f} / {b:.3f} / {c:.3f}" for a, b, c in
                                           zip(t.hit_100_event, t.hit_150_event, t.ndcg_100_event)],
            "machine mean H@100": [f"{a:.3f}" for a in t.hit_100_macro]})
    if name == "paired":
        return t.assign(**{c: t[c].map(lambda v: f"{v:.3g}") for c in t.columns if t[c].dtype.kind == "f"})
    if name == "madcluster_t1":
        return _mc_render(t, {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "k": t.k,
                              "seeds": t.seeds}, "k=1", t.delta_f1_vs_k1, t.paper_delta_f1_vs_k1)
    if name == "grid":
        metric = [c for c in t.columns if c.startswith("strict_") and not c.endswith("_std")][0][len("strict_"):]
        heads = {"strict": "F1 (macro)", "madcluster": "best F1 (mean)", "m2ad": "event F1", "tslib": "PA-F1 (mean)"}
        cols = {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "head": t["head"],
                "scoring": t.scoring, "seeds": t.seeds}
        for proto in GRID_METRICS:
            title = f"{proto} {heads[proto] if metric == 'f1' else metric}"
            cols[title] = [_pm(a, b) for a, b in zip(t[f"{proto}_{metric}"], t[f"{proto}_{metric}_std"])]
        cols["m2ad flagged"] = [f"{f:.1%}" if f == f else "—" for f in t.m2ad_flagged]
        if (t.failed_runs > 0).any():
            cols["failed"] = [f"{n}: {e[:60]}" if n else "" for n, e in zip(t.failed_runs, t.error)]
        return pd.DataFrame(cols)
    if name == "madcluster_t3":
        return _mc_render(t, {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "arm": t.arm,
                              "seeds": t.seeds, "entities": t.entities},
                          "distance-only", t.delta_f1_vs_distance_only, t.paper_delta_f1_vs_distance_only)
    if name == "m2ad_table2":
        return pd.DataFrame({
            "dataset": t.dataset, "seeds": t.seeds, "events": t.events,
            "F1 ours": [_pm(a, b) for a, b in zip(t.ours_f1, t.ours_f1_std)],
            "F1 paper": [_pm(a, b) for a, b in zip(t.paper_f1, t.paper_f1_std)],
            "F1 paper (same entities)": [_pm(a, b) for a, b in zip(t.paper_same_entities_f1, t.paper_same_entities_f1_std)],
            "F0.5 ours": [_pm(a, b) for a, b in zip(t.ours_f05, t.ours_f05_std)],
            "F0.5 paper": [_pm(a, b) for a, b in zip(t.paper_f05, t.paper_f05_std)],
            "ΔF1": [f"{d:+.3f}" if d == d else "—" for d in t.delta_f1],
            "flagged": [f"{f:.1%}" if f == f else "—" for f in t.detected_fraction]})
    return pd.DataFrame({
        "dataset": t.dataset, "variant": t.variant, "seeds": t.seeds,
        "F1 ours": [_pm(a, b) for a, b in zip(t.f1_mean, t.f1_std)],
        "F1 paper (28 machines)": [_pm(a, b) for a, b in zip(t.paper_f1_mean, t.paper_f1_std)],
        "F1 paper M2AD (same entities)": [_pm(a, b) for a, b in zip(t.paper_same_entities_f1,
                                                                     t.paper_same_entities_f1_std)],
        "F0.5 ours": [_pm(a, b) for a, b in zip(t.f05_mean, t.f05_std)],
        "F0.5 paper (28 machines)": [_pm(a, b) for a, b in zip(t.paper_f05_mean, t.paper_f05_std)],
        "flagged": [f"{f:.1%}" if f == f else "—" for f in t.detected_fraction]})


def _paired_arg(a, table: str) -> tuple[str, str, str]:
    if not a.paired or "=" not in a.paired or len(a.paired.split("=", 1)[1].split(",")) != 2:
        raise SystemExit(f"madbench-tables: error: {table} needs --paired KEY=A,B (e.g. head=none,madcluster)")
    key, arms = a.paired.split("=", 1)
    arm_a, arm_b = arms.split(",")
    return key, arm_a, arm_b


def _print(title: str, shown: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    rt = Table(title=title)
    for c in shown.columns:
        rt.add_column(str(c))
    for _, r in shown.iterrows():
        rt.add_row(*[str(v) for v in r])
    Console(width=None if sys.stdout.isatty() else 160).print(rt)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="madbench-tables", description=__doc__.split("\n\n")[0])
    ap.add_argument("table", choices=sorted(TABLES) + ["paired", "traces"])
    ap.add_argument("results", type=Path, help="collected CSV or a directory of run dirs")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: beside RESULTS)")
    ap.add_argument("--paired", default=None, metavar="KEY=A,B",
                    help="paired comparison of two arms that differ only in KEY (e.g. head=none,madcluster)")
    ap.add_argument("--by", default="backbone",
                    help="group the paired comparison by this result column (or several, comma-separated)")
    ap.add_argument("--metric", default=None,
                    help="paired / madcluster_t2: the per-entity metric compared (default f1); grid: this column "
                         "under every protocol instead of each protocol's own F1")
    ap.add_argument("--protocol", default=None,
                    help="paired: the protocol whose per-entity rows are paired (default madcluster); traces: the "
                         "protocol whose threshold is drawn (default strict)")
    ap.add_argument("--entity", default=None, help="traces: the entity (channel) plotted (default: the first with "
                    "a labelled event)")
    ap.add_argument("--seed", type=int, default=None, help="traces: the seed plotted (default: the smallest)")
    ap.add_argument("--wandb", action="store_true", help="traces: also log the PNGs to one W&B run (job_type "
                    "traces; offline unless logged in)")
    a = ap.parse_args(argv)
    df = load_results(a.results)
    out = a.out or (a.results if a.results.is_dir() else a.results.parent)
    if a.table == "traces":
        key, arm_a, arm_b = _paired_arg(a, a.table)
        loggers = []
        if a.wandb:
            import uuid

            from madbench.tracking.wandb import WandbLogger

            out.mkdir(parents=True, exist_ok=True)
            loggers.append(WandbLogger(job_type="traces").start(
                {"paired": a.paired, "by": a.by, "protocol": a.protocol or "strict", "results": str(a.results)}, out,
                f"traces-{key}", None, [], f"traces-{uuid.uuid4().hex[:8]}"))
        try:
            t = traces(df, key, arm_a, arm_b, out, a.by, a.entity, a.seed, a.protocol or "strict", loggers)
        finally:
            for lg in loggers:
                lg.finish()
        t.to_csv(out / "traces.csv", index=False)
        _print("traces", t.drop(columns=["run_a", "run_b"]))
        print(f"wrote {len(t)} PNG(s) under {out / 'traces'} and {out / 'traces.csv'}")
        return
    if a.table == "paired":
        key, arm_a, arm_b = _paired_arg(a, a.table)
        t = paired_table(df, key, arm_a, arm_b, a.by, a.metric or "f1", a.protocol or "madcluster")
    elif a.table == "madcluster_t2":
        t = madcluster_t2(df, a.metric or "f1")
    elif a.table == "grid":
        t = grid(df, a.metric)
    else:
        t = TABLES[a.table](df)
    shown = render(a.table, t)
    out.mkdir(parents=True, exist_ok=True)
    t.to_csv(out / f"{a.table}.csv", index=False)
    (out / f"{a.table}.md").write_text(shown.to_markdown(index=False) + "\n")
    (out / f"{a.table}.tex").write_text(shown.to_latex(index=False).replace("±", r"$\pm$").replace("Δ", r"$\Delta$"))
    _print(a.table, shown)
    print(f"wrote {out / a.table}.csv, .md, .tex")
    if a.table in ("paired", "madcluster_t2"):
        arms = ([f"{a.metric or 'f1'}_{x}" for x in a.paired.split("=", 1)[1].split(",")] if a.table == "paired"
                else ["f1_none", "f1_madcluster"])
        write_cd_diagram(t, arms, out / f"{a.table}_cd.png", title=f"{a.table}: mean rank over {a.by}s")


def write_cd_diagram(t: pd.DataFrame, arm_columns: list[str], path: Path, title: str = "") -> None:
    """Mean ranks of the arms over the table's rows (blocks), Friedman test, CD diagram PNG."""
    from madbench.paired import cd_diagram, friedman

    scores = t[arm_columns].to_numpy(dtype=float)
    result = friedman(scores, [c.split("_", 1)[-1] for c in arm_columns])
    cd_diagram(result, path, title=title)
    ranks = ", ".join(f"{n} {r:.2f}" for n, r in zip(result.arms, result.mean_ranks))
    print(f"mean ranks over {result.n_blocks} blocks: {ranks}; p = {result.p:.3g} -> {path}")


if __name__ == "__main__":
    main()
