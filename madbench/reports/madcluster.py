"""The MADCluster paper's appendix tables (Lee et al., 2025): Table 1 (number of clusters),
Table 2 (each backbone without and with the head) and Table 3 (the ablation arms).

Every number is the ``madcluster`` protocol's (window scores, best F1 over thresholds on
the test labels, per entity, averaged over entities; ``threshold_uses_test_labels``), as
the paper's: mean ± std over seeds of the entity mean. A config split into runs by
``dataset.shard`` has one ALL row per run; the entity mean of the whole set is their mean
weighted by each run's entity count. Each row is read against the trivial floor
(``madbench.reports.floors``) on the same entities.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from madbench.errors import DataError
from madbench.reports import floors as F
from madbench.reports.base import PAPER_DIR, Report, config_values, delta, pm, sd
from madbench.reports.pairs import VERDICT_RULE, paired_table, write_cd_diagram

MC_METRICS = ("f1", "aff_precision", "aff_recall", "vus_roc", "vus_pr")
#: Table 3's arms: the ``arm`` choice → the paper's method name (appendix Table 3)
T3_ARMS = {"deepsvdd": "DeepSVDD", "clustering": "Clustering", "madcluster": "MADCluster"}
#: runs from before the arm group: the head each arm used then
T3_HEADS = {"distance_only": "DeepSVDD", "clustering_only": "Clustering", "madcluster": "MADCluster"}


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
        raise DataError("no protocol=madcluster results in RESULTS; the MADCluster tables need runs with "
                        "protocol=[madcluster,...] (e.g. experiment=madcluster_t3)")
    g = mc.groupby(by + ["seed"], dropna=False).apply(_entity_weighted, MC_METRICS, include_groups=False)
    g = g.reset_index()
    g["n_entities"] = g["n_entities"].astype(int)
    strict = ok[(ok["protocol"] == "strict") & (ok["aggregate"] == "macro")]
    if len(strict):
        sf = strict.groupby(by + ["seed"], dropna=False).apply(_entity_weighted, ("f1",),
                                                               include_groups=False).reset_index()
        g = g.merge(sf[by + ["seed", "f1"]].rename(columns={"f1": "strict_f1"}), how="left")
    else:
        g["strict_f1"] = np.nan
    return g


def madcluster_summary(g: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by``: the seeds, entities, and mean and std (ddof=1) over seeds of each metric
    of ``madcluster_per_seed``."""
    aggs = {"seeds": ("seed", "nunique"), "entities": ("n_entities", "max")}
    for m in MC_METRICS + ("strict_f1",):
        aggs[f"{m}_mean"], aggs[f"{m}_std"] = (m, "mean"), (m, sd)
    return g.groupby(by, dropna=False).agg(**aggs).reset_index()


def with_floors(s: pd.DataFrame, df: pd.DataFrame, by: list[str], select) -> pd.DataFrame:
    """``s`` (one row per ``by`` group) with each group's comparison against the best floor
    on its entities under the madcluster protocol (per-entity F1). ``select(df, row)`` gives
    the result rows of a group."""
    ent = df[(df["status"] == "ok") & (df["protocol"] == "madcluster") & (df["entity"] != "ALL")]
    base = F.is_baseline(ent)
    out = []
    for _, r in s.iterrows():
        rows = select(ent, r)
        if F.is_baseline(rows).all() and len(rows):
            out.append(F.against_floor(pd.Series(dtype=float), None) | {"clears_floor": "(a floor)"})
            continue
        vals = F.entity_values(rows, "f1")
        floor = F.best_floor(ent[base], r["dataset"], "madcluster", vals.index, "f1") if len(vals) else None
        out.append(F.against_floor(vals, floor))
    return s.assign(**pd.DataFrame(out, index=s.index))


def _mc_render(t: pd.DataFrame, lead: dict, versus: str | None = None, versus_ours=None, delta_paper=None
               ) -> pd.DataFrame:
    """The MADCluster appendix tables' columns (T1, T3): ours (mean ± std) beside the paper
    for F1, Aff-P and Aff-R, each row's F1 against the reference arm ``versus`` (ours: the
    caller's rendered cells; the paper's: differences), the floor, strict F1."""
    cols = {**lead,
            "F1 ours": [pm(a, b) for a, b in zip(t.f1_mean, t.f1_std)],
            "F1 paper": [pm(a) for a in t.paper_f1]}
    if versus is not None:
        cols[f"ΔF1 vs {versus} ours"] = list(versus_ours)
        cols["ΔF1 paper"] = [delta(d) for d in delta_paper]
    cols.update({
        "Aff-P ours": [pm(a, b) for a, b in zip(t.aff_precision_mean, t.aff_precision_std)],
        "Aff-P paper": [pm(a) for a in t.paper_aff_precision],
        "Aff-R ours": [pm(a, b) for a, b in zip(t.aff_recall_mean, t.aff_recall_std)],
        "Aff-R paper": [pm(a) for a in t.paper_aff_recall],
        "floor (F1; per-entity Δ, clears?)": [F.floor_text(r) if r.floor != "—" else r.clears_floor
                                              for _, r in t.iterrows()],
        "strict F1 (macro)": [pm(a, b) for a, b in zip(t.strict_f1_mean, t.strict_f1_std)]})
    return pd.DataFrame(cols)


def _arm(r: pd.Series) -> str:
    """A result row's Table 3 arm: its ``arm`` (experiment=madcluster_t3); runs from before
    the arm group are named by their head (``head=distance_only``, ...)."""
    arm = r.get("arm")
    if isinstance(arm, str) and arm:
        return arm
    return f"head={r.get('head')}"


def _method(arm: str) -> str | None:
    """The paper's method name of an arm (appendix Table 3), or None."""
    if arm in T3_ARMS:
        return T3_ARMS[arm]
    return T3_HEADS.get(arm[len("head="):]) if arm.startswith("head=") else None


class T3(Report):
    name = "madcluster_t3"
    help = ("MADCluster appendix Table 3: the arms (Deep SVDD, Clustering, MADCluster) per final score part "
            "(head.score), the paper beside, the floor")

    def compute(self, df, args=None):
        df = df[df["status"] == "ok"]
        base = F.is_baseline(df)
        names = F.baseline_names(df)
        df = df.assign(arm=[f"floor: {names[i]}" if is_b else _arm(r)
                            for (i, r), is_b in zip(df.iterrows(), base)],
                       score=[str(v) if v is not None else "default"
                              for v in _score_parts(df)])
        by = ["dataset", "backbone", "arm", "score"]
        s = madcluster_summary(madcluster_per_seed(df, by), by)
        paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t3.csv")
        paper = paper.set_index([paper.method, paper.dataset.str.upper()])
        method = s["arm"].map(_method)
        # the paper's row is each arm scored as the paper scores it (its own final score)
        own = {"deepsvdd": ("backbone", "default"), "clustering": ("head", "default"),
               "madcluster": ("product", "default")}
        is_own = np.array([sc in own.get(a, ("default", "product", "backbone")) for a, sc in zip(s["arm"], s["score"])],
                          dtype=bool)
        for m in ("f1", "aff_precision", "aff_recall"):
            s[f"paper_{m}"] = [paper[m].get((meth, str(ds).upper()), np.nan) if meth and o else np.nan
                               for meth, ds, o in zip(method, s["dataset"], is_own)]
        ref = s[(method == "DeepSVDD").to_numpy() & is_own].set_index(["dataset", "backbone"])["f1_mean"]
        s["delta_f1_vs_deepsvdd"] = [f - ref.get((ds, bb), np.nan) for f, ds, bb in
                                     zip(s["f1_mean"], s["dataset"], s["backbone"])]
        pref = {str(ds).upper(): paper["f1"].get(("DeepSVDD", str(ds).upper()), np.nan) for ds in s["dataset"]}
        s["paper_delta_f1_vs_deepsvdd"] = [p - pref[str(ds).upper()] for p, ds in zip(s["paper_f1"], s["dataset"])]
        def select(ent, r):
            return ent[(ent.dataset == r.dataset) & (ent.backbone == r.backbone) & (df.loc[ent.index, "arm"] == r.arm)
                       & (df.loc[ent.index, "score"] == r["score"])]

        s = with_floors(s, df, by, select)
        s = _versus_deepsvdd(s, df, (method == "DeepSVDD").to_numpy() & is_own, select)
        order = {a: i for i, a in enumerate(list(T3_ARMS) + ["head=none"] + [f"head={h}" for h in T3_HEADS])}
        s["_o"] = [order.get(a, len(order) + (1 if str(a).startswith("floor") else 0)) for a in s["arm"]]
        s = s.sort_values(["dataset", "_o", "backbone", "arm", "score"], kind="stable").drop(columns="_o")
        return s.reset_index(drop=True)

    def render(self, t, args=None):
        return _mc_render(t, {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "arm": t.arm,
                              "score": t["score"], "seeds": t.seeds, "entities": t.entities},
                          "Deep SVDD", [_versus_text(r) for _, r in t.iterrows()], t.paper_delta_f1_vs_deepsvdd)

    def notes(self, t, args=None):
        return ["score: the final score part (head.score): backbone = the objective's score (Deep SVDD: distance "
                "to the fixed centre), head = the head's factor (f, the mean cluster loss, where it clusters), "
                "product = backbone × head, d = distance to the head's learnt centre, f, df = d × f; the paper's "
                "figure stands beside each arm's own score.",
                "ΔF1 vs Deep SVDD ours: the row's per-entity F1 (seeds averaged) minus the Deep SVDD arm's (its own "
                "score) on the entities both have, mean [95% bootstrap CI], Wilcoxon p and the verdict: "
                "gain (loss) when the CI excludes 0 and p < 0.05, else 'no difference shown'.", F.FLOOR_RULE]


def _versus_deepsvdd(s: pd.DataFrame, df: pd.DataFrame, is_ref: np.ndarray, select) -> pd.DataFrame:
    """``s`` with each trained row's paired comparison against the Deep SVDD arm (its own
    score) of the same dataset and backbone, entity by entity under the madcluster protocol
    (F1, seeds averaged per entity): ``vs_deepsvdd`` (mean per-entity B − A), its CI,
    Wilcoxon p, entity count and verdict (``madbench.reports.pairs.verdict``). The
    reference row itself says so; floors and rows without a reference get NaN and "—"."""
    from madbench.paired import paired_gain
    from madbench.reports.pairs import verdict

    ent = df[(df["status"] == "ok") & (df["protocol"] == "madcluster") & (df["entity"] != "ALL")]
    refs = {(r.dataset, r.backbone): F.entity_values(select(ent, r), "f1") for _, r in s[is_ref].iterrows()}
    cols = {c: [] for c in ("vs_deepsvdd", "vs_deepsvdd_ci_low", "vs_deepsvdd_ci_high", "vs_deepsvdd_p",
                            "vs_deepsvdd_entities", "vs_deepsvdd_verdict")}
    for ref_row, (_, r) in zip(is_ref, s.iterrows()):
        rows = select(ent, r)
        ref = refs.get((r.dataset, r.backbone))
        if ref_row or ref is None or not len(rows) or F.is_baseline(rows).all():
            gain, text = None, "(the reference)" if ref_row else "—"
        else:
            vals = F.entity_values(rows, "f1")
            common = sorted(set(vals.index) & set(ref.index))
            gain = paired_gain(ref.loc[common].to_numpy(), vals.loc[common].to_numpy())
            text = verdict(gain)
        for c, v in zip(cols, (gain.mean_gain, gain.ci_low, gain.ci_high, gain.wilcoxon_p, gain.n) if gain
                        else (np.nan,) * 5):
            cols[c].append(v)
        cols["vs_deepsvdd_verdict"].append(text)
    return s.assign(**cols)


def _versus_text(r) -> str:
    """The rendered ``ΔF1 vs Deep SVDD ours`` cell: 'Δ [lo, hi], p: verdict'."""
    if r["vs_deepsvdd"] != r["vs_deepsvdd"]:
        return r["vs_deepsvdd_verdict"]
    return (f"{r['vs_deepsvdd']:+.3f} [{r['vs_deepsvdd_ci_low']:+.3f}, {r['vs_deepsvdd_ci_high']:+.3f}], "
            f"p {r['vs_deepsvdd_p']:.2g}: {r['vs_deepsvdd_verdict']}")


def _score_parts(df: pd.DataFrame) -> list:
    """Each row's ``head.score`` (None where the run's config has no such key)."""
    try:
        return list(config_values(df, "head.score", "madcluster_t3"))
    except DataError:
        return [None] * len(df)


def _floor_rows(df: pd.DataFrame, ent: pd.DataFrame, entities: dict) -> list[dict]:
    """One row per baseline config (``floors.baseline_names``) and dataset: its F1 under the
    madcluster protocol on the entities the method rows cover (seeds averaged per entity),
    in the ``f1_none`` column, so the floor stands in the table as a row of its own."""
    names = F.baseline_names(df)
    rows = []
    for ds, ents in entities.items():
        base = ent[(ent.dataset == ds) & F.is_baseline(ent)]
        named = names.reindex(base.index)
        for name in sorted(set(named.dropna())):
            rows_b = base[named == name]
            vals = F.entity_values(rows_b, "f1")
            if not ents or not set(ents) <= set(vals.index):
                continue
            rows.append({"dataset": ds, "backbone": f"floor: {name}", "entities": len(ents),
                         "seeds": int(rows_b["seed"].nunique()),
                         "f1_none": float(vals.loc[ents].mean()), "verdict": "(a floor)", "floor": "—", "direction_matches": "—",
                         "clears_floor_none": "(a floor)", "clears_floor_madcluster": "—"})
    return rows


class T2(Report):
    name = "madcluster_t2"
    help = ("MADCluster appendix Table 2: per backbone, head=none vs head=madcluster, the paired per-entity gain, "
            "the paper beside, the floor")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--metric", default="f1", help="the per-entity metric of the paired test (default f1)")

    def compute(self, df, args=None):
        metric = getattr(args, "metric", "f1") or "f1"
        base = F.is_baseline(df[df["status"] == "ok"])
        df = df[df["status"] == "ok"]
        methods = df[~base]
        g = madcluster_per_seed(methods, ["dataset", "backbone", "head"])
        s = g.groupby(["dataset", "backbone", "head"]).agg(
            seeds=("seed", "nunique"), entities=("n_entities", "max"), f1_mean=("f1", "mean"), f1_std=("f1", sd),
            vus_roc_mean=("vus_roc", "mean"), vus_pr_mean=("vus_pr", "mean"),
            strict_f1_mean=("strict_f1", "mean")).reset_index()
        paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t2_msl.csv")
        paper["key"] = paper.backbone.str.lower().str.replace("anomalytransformer", "anomaly_transformer")
        paper = paper.set_index(["key", paper.madcluster.astype(str).str.lower()])
        gains = paired_table(methods, "head", "none", "madcluster", "backbone", metric).set_index("backbone")
        ent = df[(df["protocol"] == "madcluster") & (df["entity"] != "ALL")]
        rows = []
        for (ds, bb), grp in s.groupby(["dataset", "backbone"]):
            arms = grp.set_index("head")
            none = arms.loc["none"] if "none" in arms.index else None
            mc = arms.loc["madcluster"] if "madcluster" in arms.index else None
            p0 = paper["f1"].get((bb, "false"), np.nan)
            p1 = paper["f1"].get((bb, "true"), np.nan)
            gain = gains.loc[bb] if bb in gains.index else None
            ours = (mc.f1_mean - none.f1_mean) if none is not None and mc is not None else np.nan
            row = {
                "dataset": ds, "backbone": bb, "seeds": int(max(arms.seeds)), "entities": int(max(arms.entities)),
                "f1_none": none.f1_mean if none is not None else np.nan,
                "f1_none_std": none.f1_std if none is not None else np.nan,
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
                "ci_low": gain.ci_low if gain is not None else np.nan,
                "ci_high": gain.ci_high if gain is not None else np.nan,
                "wilcoxon_p": gain.wilcoxon_p if gain is not None else np.nan,
                "verdict": gain.verdict if gain is not None else "not paired"}
            for arm in ("none", "madcluster"):
                rows_arm = ent[(ent.dataset == ds) & (ent.backbone == bb) & (ent["head"] == arm) & ~F.is_baseline(ent)]
                vals = F.entity_values(rows_arm, "f1")
                floor = F.best_floor(ent, ds, "madcluster", vals.index, "f1") if len(vals) else None
                res = F.against_floor(vals, floor)
                row.update({f"{k}_{arm}": v for k, v in res.items() if k != "floor" and k != "floor_value"})
                row["floor"], row["floor_value"] = res["floor"], res["floor_value"]
            rows.append(row)
        rows += _floor_rows(df, ent, {ds: sorted(set(ent[(ent.dataset == ds) & ~F.is_baseline(ent)].entity))
                                      for ds in s["dataset"].unique()})
        return pd.DataFrame(rows)

    def render(self, t, args=None):
        return pd.DataFrame({
            "backbone": t.backbone, "seeds": t.seeds, "entities": t.entities,
            "F1 none": [pm(a, b) for a, b in zip(t.f1_none, t.f1_none_std)],
            "F1 +MADCluster": [pm(a, b) for a, b in zip(t.f1_madcluster, t.f1_madcluster_std)],
            "paper": [f"{a:.2f} → {b:.2f}" if a == a else "—" for a, b in zip(t.paper_f1_none, t.paper_f1_madcluster)],
            "ΔF1 ours": [delta(d) for d in t.delta_ours], "ΔF1 paper": [delta(d) for d in t.delta_paper],
            "same direction": t.direction_matches,
            "paired gain [95% CI]": [f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]" if g == g else "—"
                                     for g, lo, hi in zip(t.paired_gain, t.ci_low, t.ci_high)],
            "Wilcoxon p": [f"{p:.3g}" if p == p else "—" for p in t.wilcoxon_p], "verdict": t.verdict,
            "floor F1": [f"{n} {v:.3f}" if v == v else "—" for n, v in zip(t.floor, t.floor_value)],
            "clears floor: none / +MC": [f"{a} / {b}" for a, b in zip(t.clears_floor_none, t.clears_floor_madcluster)],
            "strict F1 none → +MC": [f"{a:.3f} → {b:.3f}" if a == a else "—"
                                     for a, b in zip(t.strict_f1_none, t.strict_f1_madcluster)]})

    def notes(self, t, args=None):
        return [VERDICT_RULE, F.FLOOR_RULE]

    def after(self, table, args, out):
        write_cd_diagram(table, ["f1_none", "f1_madcluster"], out / "madcluster_t2_cd.png",
                         title="madcluster_t2: mean rank over backbones")


def _same_direction(ours: float, paper: float, tol: float = 0.005) -> str:
    if ours != ours or paper != paper:
        return "—"

    def sign(x):
        return 0 if abs(x) <= tol else (1 if x > 0 else -1)

    return "yes" if sign(ours) == sign(paper) else "no"


class T1(Report):
    name = "madcluster_t1"
    help = "MADCluster appendix Table 1: per number of clusters k (head.k), each k against k = 1, the floor"

    def compute(self, df, args=None):
        ok = df[(df["status"] == "ok") & (df["head"] == "madcluster")]
        if ok.empty:
            raise DataError("no ok head=madcluster results in RESULTS; madcluster_t1 needs experiment=madcluster_t1 "
                            "runs")
        ok = ok.assign(k=config_values(ok, "head.k", self.name))
        by = ["dataset", "backbone", "k"]
        s = madcluster_summary(madcluster_per_seed(ok, by), by)
        s["k"] = s["k"].astype(int)
        paper = pd.read_csv(PAPER_DIR / "madcluster_appendix_t1_clusters.csv")
        paper = paper.set_index([paper.k.astype(int), paper.dataset.str.upper()])
        for m in ("f1", "aff_precision", "aff_recall"):
            s[f"paper_{m}"] = [paper[m].get((int(k), str(ds).upper()), np.nan) for k, ds in zip(s["k"], s["dataset"])]
        k1 = s[s["k"] == 1].set_index(["dataset", "backbone"])["f1_mean"]
        s["delta_f1_vs_k1"] = [f - k1.get((ds, bb), np.nan)
                               for f, ds, bb in zip(s["f1_mean"], s["dataset"], s["backbone"])]
        pk1 = {str(ds).upper(): paper["f1"].get((1, str(ds).upper()), np.nan) for ds in s["dataset"]}
        s["paper_delta_f1_vs_k1"] = [p - pk1[str(ds).upper()] for p, ds in zip(s["paper_f1"], s["dataset"])]
        s = with_floors(s, df[df["status"] == "ok"], by,
                        lambda ent, r: ent[(ent.dataset == r.dataset) & (ent.backbone == r.backbone)
                                           & ent.run_id.isin(ok.loc[ok.k.astype(int) == int(r.k), "run_id"])])
        return s.sort_values(["dataset", "backbone", "k"]).reset_index(drop=True)

    def render(self, t, args=None):
        return _mc_render(t, {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "k": t.k,
                              "seeds": t.seeds}, "k=1", [delta(d) for d in t.delta_f1_vs_k1], t.paper_delta_f1_vs_k1)

    def notes(self, t, args=None):
        return [F.FLOOR_RULE]
