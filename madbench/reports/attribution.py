"""Which sensors drove an alarm: the interpretation metrics (HitRate@P%, NDCG) per
dataset × backbone × objective × head × scoring × attribution kind."""
from __future__ import annotations

import numpy as np
import pandas as pd

from madbench.errors import DataError
from madbench.reports.base import Report, pm, sd

ATTRIBUTION_BY = ["dataset", "backbone", "objective", "head", "scoring", "attribution"]
ATTRIBUTION_METRICS = ("hit_100", "hit_150", "ndcg_100")


class Attribution(Report):
    name = "attribution"
    help = "sensor attribution against the dataset's ground-truth sensors (HitRate@100/150%, NDCG@100%)"

    def compute(self, df, args=None):
        """One row per group: the metrics over the entities that have ground-truth sensors.
        Per seed, steps are pooled over entities (each entity's step mean weighted by its
        step count) and events likewise; ``*_macro`` is the plain mean over entities. Then
        the mean (and std, ddof=1) over seeds. The values are the same under every
        protocol; the rows of one protocol are read (strict when present)."""
        if "hit_100" not in df:
            raise DataError("RESULTS has no attribution columns (hit_100, ...); they come from runs on a dataset "
                            "with ground-truth sensors (SMD interpretation_label)")
        ent = df[(df["entity"] != "ALL") & (df["status"] == "ok") & df["hit_100"].notna()]
        if ent.empty:
            raise DataError("no entity row with attribution metrics in RESULTS")
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
        cols = [f"{m}{sfx}" for m in ATTRIBUTION_METRICS for sfx in ("", "_event", "_macro")]
        aggs = {"seeds": ("seed", "nunique"), "entities": ("entities", "max"), "steps": ("steps", "max"),
                "events": ("events", "max"), "events_skipped": ("events_skipped", "max")}
        aggs.update({c: (c, "mean") for c in cols})
        aggs.update({f"{m}_std": (m, sd) for m in ATTRIBUTION_METRICS})
        return per_seed.groupby(ATTRIBUTION_BY, dropna=False).agg(**aggs).reset_index()

    def render(self, t, args=None):
        return pd.DataFrame({
            "dataset": [str(d).upper() for d in t.dataset], "backbone": t.backbone, "head": t["head"],
            "scoring": t.scoring, "attribution": t.attribution, "seeds": t.seeds, "entities": t.entities,
            "steps": t.steps, "events (skipped)": [f"{e} ({s})" for e, s in zip(t.events, t.events_skipped)],
            "HitRate@100%": [pm(a, b) for a, b in zip(t.hit_100, t.hit_100_std)],
            "HitRate@150%": [pm(a, b) for a, b in zip(t.hit_150, t.hit_150_std)],
            "NDCG@100%": [pm(a, b) for a, b in zip(t.ndcg_100, t.ndcg_100_std)],
            "per event H@100/H@150/N@100": [f"{a:.3f} / {b:.3f} / {c:.3f}" for a, b, c in
                                           zip(t.hit_100_event, t.hit_150_event, t.ndcg_100_event)],
            "machine mean H@100": [f"{a:.3f}" for a in t.hit_100_macro]})
