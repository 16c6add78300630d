"""Paired comparisons: two arms of runs that differ in one config key only (e.g.
``head=none`` vs ``head=madcluster``), compared entity by entity (``madbench.paired``), and
the traces of such pairs.

Two runs pair when every key that changes a number (``madbench.keys``: training and
post-score keys) but the paired one is equal; labels and runtime settings (names, threads,
devices asked for, paths) may differ. The keys are read from the table's ``config.<key>``
columns, so a committed CSV pairs without its run dirs.

**The verdict rule** (one rule for every paired row, written under each paired table): the
arm B is a *gain* (or a *loss*) when the 95% bootstrap CI of the mean per-entity difference
B − A excludes 0 **and** the two-sided Wilcoxon signed-rank p is below 0.05; otherwise *no
difference shown*.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from madbench import keys
from madbench.errors import ConfigError, DataError
from madbench.reports.base import Report, config_frame, need_columns, ok_rows, split_arms
from madbench.tracking.collect import CONFIG_PREFIX

#: the significance level of both tests of the verdict
ALPHA = 0.05
VERDICT_RULE = ("verdict: gain (loss) when the 95% bootstrap CI of the mean per-entity difference excludes 0 and "
                f"the Wilcoxon signed-rank p < {ALPHA}; otherwise 'no difference shown'")


def verdict(gain) -> str:
    """The one verdict rule (module doc) for a ``madbench.paired.Gain``."""
    if gain.n == 0:
        return "no paired entities"
    if gain.significant and gain.wilcoxon_p == gain.wilcoxon_p and gain.wilcoxon_p < ALPHA:
        return "gain" if gain.mean_gain > 0 else "loss"
    return "no difference shown"


def _arm_value(v) -> str:
    # an integer key reads back as a float where some runs lack it (a CSV column with empty cells): 1.0 is arm 1
    return str(v).lower() if isinstance(v, bool) else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (``run_id``) with its config columns (bare keys as column names)."""
    ok = ok_rows(df)
    first = ok.groupby("run_id", sort=False).head(1).set_index("run_id")
    cfg = config_frame(first)
    cfg.columns = [c[len(CONFIG_PREFIX):] for c in cfg.columns]
    return cfg


def pair_runs(df: pd.DataFrame, key: str, a: str, b: str) -> list[tuple[str, str]]:
    """(run_id in arm a, run_id in arm b) pairs whose configs are equal but for ``key``; a
    run of arm a without such a partner is a DataError naming the first key its closest
    candidate differs in."""
    runs = run_table(df)
    if key not in runs and f"{key}.name" in runs:
        key_col = f"{key}.name"
    elif key in runs:
        key_col = key
    else:
        raise DataError(f"--paired {key}={a},{b}: RESULTS has no config column for {key} (its runs do not differ in "
                        f"it, or it is not a key that changes a number)")
    arm = runs[key_col].map(_arm_value)
    runs_a, runs_b = list(runs.index[arm == a]), list(runs.index[arm == b])
    if not runs_a or not runs_b:
        raise DataError(f"--paired {key}={a},{b}: found {len(runs_a)} run(s) with {key}={a} and {len(runs_b)} with "
                        f"{key}={b}; expected both arms in RESULTS")
    compared = [c for c in runs.columns if keys.compared(c) and not keys.covers(c, key)]

    def rest(rid) -> dict:
        return {c: runs.at[rid, c] for c in compared if not _missing(runs.at[rid, c])}

    index = {}
    for rid in runs_b:
        index.setdefault(json.dumps(rest(rid), sort_keys=True, default=str), rid)
    pairs = []
    for rid in runs_a:
        partner = index.get(json.dumps(rest(rid), sort_keys=True, default=str))
        if partner is None:
            ra = rest(rid)
            diffs = [sorted(c for c in set(ra) | set(rest(o)) if ra.get(c) != rest(o).get(c)) for o in runs_b]
            first = min(diffs, key=len)
            raise DataError(f"--paired {key}={a},{b}: run {rid} has no partner whose config differs only in {key}; "
                            f"the closest differs in {first[0]!r}")
        pairs.append((rid, partner))
    return pairs


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def paired_table(df: pd.DataFrame, key: str, a: str, b: str, by: str | list[str] = "backbone", metric: str = "f1",
                 protocol: str = "madcluster") -> pd.DataFrame:
    """Per ``by`` group (one result column, or several: ``"backbone,scoring"`` on the grid,
    whose backbones have a raw and an m2ad arm): per-entity ``metric`` under ``protocol``,
    averaged over seeds, arm b minus arm a on the same entities; mean gain, bootstrap 95%
    CI, Wilcoxon p, and the verdict (module doc)."""
    from madbench.paired import paired_gain

    by = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in df]
    if missing:
        raise ConfigError(f"--by {missing[0]}: not a result column; expected e.g. backbone, scoring, dataset")
    pairs = pair_runs(df, key, a, b)
    ent = df[(df["status"] == "ok") & (df["entity"] != "ALL") & (df["protocol"] == protocol)]
    if ent.empty:
        have = sorted(df.loc[(df["status"] == "ok") & (df["entity"] != "ALL"), "protocol"].dropna().unique())
        hint = f"choose one with --protocol {have[0]}" if have else "no protocol has ok per-entity rows"
        raise DataError(f"no per-entity rows of protocol {protocol} in RESULTS (it has {', '.join(have) or 'none'}); "
                        f"{hint}")
    if metric not in ent:
        raise ConfigError(f"--metric {metric}: not a result column")
    val = ent.set_index(["run_id", "entity"])[metric]
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
        raise DataError(f"the paired runs share no entity with protocol {protocol} rows")
    rows = []
    for group, g in rec.groupby(by):
        per_entity = g.groupby("entity")[["a", "b"]].mean()  # averaged over seeds
        gain = paired_gain(per_entity["a"].to_numpy(), per_entity["b"].to_numpy())
        rows.append({**dict(zip(by, group if isinstance(group, tuple) else (group,))), "seeds": g["seed"].nunique(),
                     "entities": gain.n, f"{metric}_{a}": gain.mean_a, f"{metric}_{b}": gain.mean_b,
                     "mean_gain": gain.mean_gain, "ci_low": gain.ci_low, "ci_high": gain.ci_high,
                     "wilcoxon_p": gain.wilcoxon_p, "verdict": verdict(gain)})
    return pd.DataFrame(rows)


def write_cd_diagram(t: pd.DataFrame, arm_columns: list[str], path: Path, title: str = "") -> None:
    """Mean ranks of the arms over the table's rows (blocks), Friedman test, CD diagram PNG."""
    from madbench.paired import cd_diagram, friedman

    scores = t[arm_columns].to_numpy(dtype=float)
    result = friedman(scores, [c.split("_", 1)[-1] for c in arm_columns])
    cd_diagram(result, path, title=title)
    ranks = ", ".join(f"{n} {r:.2f}" for n, r in zip(result.arms, result.mean_ranks))
    print(f"mean ranks over {result.n_blocks} blocks: {ranks}; p = {result.p:.3g} -> {path}")


class Paired(Report):
    name = "paired"
    help = "two arms that differ in one config key, entity by entity (gain, bootstrap CI, Wilcoxon, verdict)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--paired", required=True, metavar="KEY=A,B",
                       help="the two arms, equal in every other key that changes a number (e.g. head=none,madcluster)")
        p.add_argument("--by", default="backbone", help="group by this result column (or several, comma-separated)")
        p.add_argument("--metric", default="f1", help="the per-entity metric compared (default f1)")
        p.add_argument("--protocol", default="madcluster", help="the protocol whose per-entity rows are paired")

    def compute(self, df, args):
        key, a, b = split_arms(args.paired, "--paired", self.name)
        return paired_table(df, key, a, b, args.by, args.metric, args.protocol)

    def notes(self, table, args):
        return [VERDICT_RULE]

    def after(self, table, args, out):
        arms = [f"{args.metric}_{x}" for x in args.paired.split("=", 1)[1].split(",")]
        write_cd_diagram(table, arms, out / "paired_cd.png", title=f"paired: mean rank over {args.by}s")


#: protocols whose threshold is on the per-step score (the plotted trace); madcluster's is on
#: window scores and m2ad's on p-values
TRACE_PROTOCOLS = ("strict", "tslib")


def traces(df: pd.DataFrame, key: str, a: str, b: str, out: Path, by: str | list[str] = "backbone",
           entity: str | None = None, seed: int | None = None, protocol: str = "strict", loggers=()) -> pd.DataFrame:
    """Per ``by`` group, one pair of runs that differ only in ``key`` (``pair_runs``; at
    ``seed``, default the group's smallest): one entity's test score under each arm, each
    with its ``protocol`` threshold and the labelled events, stacked in one PNG
    (``<out>/traces/<group>-<entity>-seed<seed>.png``) read from the two run dirs'
    scores.npz (they must be here); each PNG is also given to ``loggers``
    (``log_image``). ``entity`` defaults to the first (sorted) one with a labelled event.
    Returns one row per PNG."""
    from madbench.rundir import read_scores
    from madbench.tracking.plots import plot_traces

    if protocol not in TRACE_PROTOCOLS:
        raise ConfigError(f"traces --protocol {protocol}: its threshold is not on the step score; expected one of "
                          f"{', '.join(TRACE_PROTOCOLS)}")
    need_columns(df, ["run_dir"], "traces")
    by = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by)
    ok = ok_rows(df)
    info = ok.groupby("run_id").first()
    groups: dict[tuple, list] = {}
    for ra, rb in pair_runs(df, key, a, b):
        r = info.loc[ra]
        groups.setdefault(tuple(r[c] for c in by), []).append((int(r["seed"]), ra, rb))
    rows = []
    for group, cands in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
        cands = sorted(c for c in cands if seed is None or c[0] == int(seed))
        if not cands:
            raise DataError(f"traces --seed {seed}: no pair of runs of {dict(zip(by, group))} has that seed")
        s, ra, rb = cands[0]
        scores = []
        for r in (ra, rb):
            d = Path(str(info.loc[r, "run_dir"]))
            if not (d / "scores.npz").exists():
                raise DataError(f"traces reads each run's scores.npz; {d / 'scores.npz'} is not here (traces render "
                                "only where the run dirs are)")
            scores.append({e.name: e for e in read_scores(d).entity_scores()})
        common = sorted(set(scores[0]) & set(scores[1]))
        if entity is not None and entity not in common:
            raise DataError(f"traces --entity {entity}: not scored in both runs of {dict(zip(by, group))}; they have "
                            f"{', '.join(common[:10])}")
        ent = entity or next((n for n in common if scores[0][n].labels.any()), common[0] if common else None)
        if ent is None:
            raise DataError(f"the runs {ra} and {rb} share no scored entity")
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


class Traces(Report):
    name = "traces"
    help = "one entity's test score under each arm of a pair, with thresholds and labelled events (PNG per group)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--paired", required=True, metavar="KEY=A,B", help="the two arms (e.g. head=none,madcluster)")
        p.add_argument("--by", default="backbone", help="one PNG per value of this result column (or several)")
        p.add_argument("--protocol", default="strict", help="the protocol whose threshold is drawn (strict or tslib)")
        p.add_argument("--entity", default=None, help="the entity plotted (default: the first with a labelled event)")
        p.add_argument("--seed", type=int, default=None, help="the seed plotted (default: the smallest)")
        p.add_argument("--wandb", action="store_true", help="also log the PNGs to one W&B run (job_type traces)")

    def run(self, args):
        import uuid

        from madbench.reports.base import load_results, print_table
        from madbench.rundir import atomic_write

        key, a, b = split_arms(args.paired, "--paired", self.name)
        df = load_results(args.results)
        out = Path(args.out) if args.out else (Path(args.results) if Path(args.results).is_dir()
                                               else Path(args.results).parent)
        loggers = []
        if args.wandb:
            from madbench.tracking.wandb import WandbLogger

            out.mkdir(parents=True, exist_ok=True)
            loggers.append(WandbLogger(job_type="traces").start(
                {"paired": args.paired, "by": args.by, "protocol": args.protocol, "results": str(args.results)}, out,
                f"traces-{key}", None, [], f"traces-{uuid.uuid4().hex[:8]}"))
        try:
            t = traces(df, key, a, b, out, args.by, args.entity, args.seed, args.protocol, loggers)
        finally:
            for lg in loggers:
                lg.finish()
        atomic_write(out / "traces.csv", lambda p: t.to_csv(p, index=False))
        print_table("traces", t.drop(columns=["run_a", "run_b"]))
        print(f"wrote {len(t)} PNG(s) under {out / 'traces'} and {out / 'traces.csv'}")
        return t
