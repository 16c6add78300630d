"""The backbone × head × scoring grid (no paper has it): one row per dataset × backbone ×
head × scoring, one column per protocol, each protocol's own headline F1, and each row
against the trivial floor under the madcluster protocol."""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from madbench.errors import DataError
from madbench.reports import floors as F
from madbench.reports.base import Report, pm, sd

#: protocol → (the aggregate row read, its headline metric): strict point F1 at the
#: train/validation threshold, mean over entities; madcluster best window F1, mean over
#: entities; m2ad event F1 from tp/fp/fn summed over entities; tslib point-adjusted F1
GRID_METRICS = {"strict": ("macro", "f1"), "madcluster": ("mean", "f1"), "m2ad": ("sum", "event_f1"),
                "tslib": ("mean", "pa_f1")}
GRID_BY = ["dataset", "backbone", "head", "scoring"]
HEAD_ORDER = {"none": 0, "madcluster": 1}
SCORING_ORDER = {"raw": 0, "m2ad": 1}


class Grid(Report):
    name = "grid"
    help = "backbone × head × scoring under every protocol (each protocol's own F1, or --metric), the floor beside"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--metric", default=None, help="this column under every protocol instead of each protocol's F1")

    def compute(self, df, args=None):
        metric = getattr(args, "metric", None)
        need = [c for c in GRID_BY + ["protocol", "entity", "status", "seed"] if c not in df]
        if need:
            raise DataError(f"RESULTS has no {need[0]!r} column; expected madbench result rows")
        ok = df[(df["status"] == "ok") & (df["entity"] == "ALL")]
        ok = ok[[GRID_METRICS.get(p, ("", ""))[0] == a for p, a in zip(ok["protocol"], ok["aggregate"].fillna(""))]]
        if ok.empty:
            raise DataError("no ok aggregate rows of the strict, madcluster, m2ad or tslib protocol in RESULTS "
                            "(e.g. experiment=grid)")
        # a config re-run (or a skip_done target collected twice) counts once per seed: the newest row
        ok = ok.sort_values("finished_at", ascending=False, kind="stable") if "finished_at" in ok else ok
        ok = ok.drop_duplicates(GRID_BY + ["protocol", "seed"], keep="first")
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
        ent = df[(df["status"] == "ok") & (df["protocol"] == "madcluster") & (df["entity"] != "ALL")]
        base = F.is_baseline(ent)
        floors = []
        for _, r in out.iterrows():
            mine = ent[(ent.dataset == r.dataset) & (ent.backbone == r.backbone) & (ent["head"] == r["head"])
                       & (ent.scoring == r.scoring)]
            if mine.empty:
                floors.append(F.against_floor(pd.Series(dtype=float), None) | {"clears_floor": "—"})
            elif F.is_baseline(mine).all():
                floors.append(F.against_floor(pd.Series(dtype=float), None) | {"clears_floor": "(a floor)"})
            else:
                vals = F.entity_values(mine, "f1")
                floors.append(F.against_floor(vals, F.best_floor(ent[base], r.dataset, "madcluster", vals.index,
                                                                 "f1")))
        out = out.assign(**pd.DataFrame(floors, index=out.index))
        out = out.sort_values(GRID_BY, key=lambda c: c.map(HEAD_ORDER) if c.name == "head" else
                              c.map(SCORING_ORDER) if c.name == "scoring" else c, kind="stable")
        return out.reset_index(drop=True)

    def render(self, t, args=None):
        metric = [c for c in t.columns if c.startswith("strict_") and not c.endswith("_std")][0][len("strict_"):]
        heads = {"strict": "F1 (macro)", "madcluster": "best F1 (mean)", "m2ad": "event F1", "tslib": "PA-F1 (mean)"}
        cols = {"dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "head": t["head"],
                "scoring": t.scoring, "seeds": t.seeds}
        for proto in GRID_METRICS:
            title = f"{proto} {heads[proto] if metric == 'f1' else metric}"
            cols[title] = [pm(a, b) for a, b in zip(t[f"{proto}_{metric}"], t[f"{proto}_{metric}_std"])]
        cols["m2ad flagged"] = [f"{f:.1%}" if f == f else "—" for f in t.m2ad_flagged]
        cols["madcluster floor (per-entity Δ, clears?)"] = [F.floor_text(r) if r.floor != "—" else r.clears_floor
                                                             for _, r in t.iterrows()]
        if (t.failed_runs > 0).any():
            cols["failed"] = [f"{n}: {e[:60]}" if n else "" for n, e in zip(t.failed_runs, t.error)]
        return pd.DataFrame(cols)

    def notes(self, t, args=None):
        return [F.FLOOR_RULE]
