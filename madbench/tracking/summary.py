"""The terminal summary table printed at the end of a run (rich)."""
from __future__ import annotations

import math
import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

SHOWN = ["precision", "recall", "f1", "pa_f1", "event_f1", "aff_f1", "auc_roc", "auc_pr", "vus_roc", "vus_pr"]


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "—" if math.isnan(f) else (f"{f:.3f}" if abs(f) < 1e4 else f"{f:.3g}")


def print_summary(df: pd.DataFrame, run_dir=None, console: Console | None = None, note: str | None = None) -> None:
    """The ALL rows as a table, then the run dir whose ``results.csv`` holds them (with
    ``note`` when that is not the job's own dir, e.g. a job skip_done skipped)."""
    # wide enough for every column when the output is a file or a CI log
    console = console or Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    first = df.iloc[0]
    title = f"madbench · {first['dataset']} · {first['backbone']}/{first['objective']} · scoring={first['scoring']} · seed={first['seed']}"
    if (df["status"] != "ok").any():
        console.print(f"[bold red]failed[/]: {df['error'].dropna().iloc[0] if df['error'].notna().any() else ''}")
        return
    t = Table(title=title, show_lines=False)
    t.add_column("protocol")
    t.add_column("aggregate")
    t.add_column("test labels?", justify="center")
    for c in SHOWN:
        t.add_column(c, justify="right")
    for _, r in df[df["entity"] == "ALL"].iterrows():
        t.add_row(str(r["protocol"]), str(r["aggregate"]), "yes" if bool(r["threshold_uses_test_labels"]) else "no",
                  *[_fmt(r[c]) for c in SHOWN])
    console.print(t)
    n = int((df["entity"] != "ALL").sum() / max(df["protocol"].nunique(), 1))
    if run_dir is not None:
        # never wrapped: the path must stay copyable (and greppable in a log)
        console.print(f"{n} entities · results: {run_dir}/results.csv" + (f" ({note})" if note else ""),
                      soft_wrap=True, markup=False, highlight=False)
