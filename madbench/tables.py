"""Results → paper tables: ours (mean ± std over seeds) next to the published numbers.

    madbench-tables m2ad_table2 RESULTS [--out DIR]
    madbench-tables m2ad_ablation RESULTS [--out DIR]
    madbench-tables m2ad_search RESULTS [--out DIR]

RESULTS is a collected CSV (``madbench-collect``) or a directory of run dirs (collected
on the fly). Prints the table and writes it as CSV, Markdown and LaTeX (default: beside
RESULTS). Event F1/F0.5 are recomputed from tp/fp/fn summed over the entities of one seed,
then averaged over seeds (std with ddof=1, as the paper's figures are). ``flagged`` is the
mean share of test steps inside detected intervals: event overlap rewards wide intervals
(one over a whole split scores tp = all events, fp = 0), so read F1 next to it. Where our entity
set differs from the paper's (e.g. the 19 SMD machines available here), the paper's
figure is also recomputed on the same entities from the authors' per-signal results.

``m2ad_search`` has one row per dataset and interval construction (``protocol.m2ad``
grouping and padding / bridge, ``scoring.two_sided``), read from each row's run dir
``config.yaml``: a run and its re-scored variants (``madbench-eval --variants``). Its
``flagged`` is the share of all test steps inside detected intervals (pooled over entities).
"""
from __future__ import annotations

import argparse
import functools
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


TABLES = {"m2ad_table2": m2ad_table2, "m2ad_ablation": m2ad_ablation, "m2ad_search": m2ad_search}


def _pm(m, s) -> str:
    if m != m:
        return "—"
    return f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f}"


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
        "ΔF1": [f"{d:+.3f}" if d == d else "—" for d in t.delta_f1]})
    return pd.DataFrame(cols)


def render(name: str, t: pd.DataFrame) -> pd.DataFrame:
    """Human-readable columns: 'mean ± std' strings."""
    if name == "m2ad_search":
        return _render_search(t)
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="madbench-tables", description=__doc__.split("\n\n")[0])
    ap.add_argument("table", choices=sorted(TABLES))
    ap.add_argument("results", type=Path, help="collected CSV or a directory of run dirs")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: beside RESULTS)")
    a = ap.parse_args(argv)
    df = load_results(a.results)
    t = TABLES[a.table](df)
    shown = render(a.table, t)
    out = a.out or (a.results if a.results.is_dir() else a.results.parent)
    out.mkdir(parents=True, exist_ok=True)
    t.to_csv(out / f"{a.table}.csv", index=False)
    (out / f"{a.table}.md").write_text(shown.to_markdown(index=False) + "\n")
    (out / f"{a.table}.tex").write_text(shown.to_latex(index=False).replace("±", r"$\pm$").replace("Δ", r"$\Delta$"))
    from rich.console import Console
    from rich.table import Table

    rt = Table(title=a.table)
    for c in shown.columns:
        rt.add_column(str(c))
    for _, r in shown.iterrows():
        rt.add_row(*[str(v) for v in r])
    Console(width=None if sys.stdout.isatty() else 160).print(rt)
    print(f"wrote {out / a.table}.csv, .md, .tex")


if __name__ == "__main__":
    main()
