"""The terminal summary printed at the end of a run (rich): per protocol, the columns that
protocol is read by, its ``ALL`` rows, and what failed or needs a warning."""
from __future__ import annotations

import math
import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

#: per protocol: how it decides (the table's title) and the columns it is read by (header,
#: result column). An M2AD event F1 means little without the share of test steps flagged
#: (one interval over the whole split has F1 1), so m2ad shows both.
READ_BY = {
    "strict": ("threshold from validation scores, point labels",
               [("P", "precision"), ("R", "recall"), ("F1", "f1"), ("F0.5", "f05"), ("AUC-ROC", "auc_roc"),
                ("AUC-PR", "auc_pr")]),
    "madcluster": ("best F1 over thresholds on the test labels, window labels",
                   [("best F1", "f1"), ("Aff-P", "aff_precision"), ("Aff-R", "aff_recall"), ("VUS-ROC", "vus_roc"),
                    ("VUS-PR", "vus_pr")]),
    "m2ad": ("calibrated p < alpha, intervals, event overlap",
             [("tp", "event_tp"), ("fp", "event_fp"), ("fn", "event_fn"), ("event F1", "event_f1"),
              ("event F0.5", "event_f05"), ("flagged", "detected_fraction")]),
    "tslib": ("percentile of train+test scores, point adjustment",
              [("PA-F1", "pa_f1"), ("F1 without PA", "f1")]),
}
#: a protocol this table does not know: the columns every protocol fills
OTHER = ("", [("P", "precision"), ("R", "recall"), ("F1", "f1"), ("AUC-ROC", "auc_roc")])
COUNTS = ("event_tp", "event_fp", "event_fn")
SHARES = ("detected_fraction",)


def _fmt(v, column: str = "") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "—"
    if column in COUNTS:
        return f"{f:.0f}"
    if column in SHARES:
        return f"{100 * f:.1f}%"
    return f"{f:.3f}" if abs(f) < 1e4 else f"{f:.3g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word[:-1] + 'ies' if word.endswith('y') else word + 's'}"


def protocol_title(rows: pd.DataFrame, protocol: str) -> str:
    """What the protocol decides by, and whether that saw the test labels."""
    how, _ = READ_BY.get(protocol, OTHER)
    labels = "yes" if rows["threshold_uses_test_labels"].astype(str).str.lower().eq("true").any() else "no"
    return f"{protocol}: {how}" + (" · " if how else "") + f"threshold uses test labels: {labels}"


def protocol_table(rows: pd.DataFrame, protocol: str) -> Table:
    """One protocol's ``ALL`` rows under the columns it is read by."""
    _, cols = READ_BY.get(protocol, OTHER)
    t = Table(show_lines=False)
    t.add_column("aggregate")
    for header, _ in cols:
        t.add_column(header, justify="right")
    for _, r in rows.iterrows():
        t.add_row(str(r.get("aggregate") or ""), *[_fmt(r.get(c, float("nan")), c) for _, c in cols])
    return t


def print_summary(df: pd.DataFrame, run_dir=None, console: Console | None = None, note: str | None = None) -> None:
    """Per protocol, its ``ALL`` rows under the columns it is read by; a protocol that failed
    on its own says why; the warnings the rows carry; then the run dir whose
    ``results.csv`` holds them (with ``note`` when that is not the job's own dir, e.g. a
    job skip_done skipped)."""
    # wide enough for every column when the output is a file or a CI log
    console = console or Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    first = df.iloc[0]
    entities = df.loc[df["entity"] != "ALL", "entity"].nunique()
    console.print(f"madbench · {first['dataset']} · {first['backbone']}/{first['objective']} · "
                  f"scoring={first['scoring']} · seed={first['seed']} · {_plural(entities, 'entity')}",
                  markup=False, highlight=False)
    failed = df[df["status"] != "ok"]
    if len(failed) == len(df):  # the job failed as a whole
        console.print(f"[bold red]failed[/]: {df['error'].dropna().iloc[0] if df['error'].notna().any() else ''}")
        return
    for protocol in dict.fromkeys(df["protocol"]):
        rows = df[(df["protocol"] == protocol) & (df["entity"] == "ALL")]
        bad = rows[rows["status"] != "ok"]
        if len(bad):
            console.print(f"[bold red]{protocol}: failed[/]: {bad['error'].iloc[0]}", soft_wrap=True)
            continue
        console.print(protocol_title(rows, str(protocol)), soft_wrap=True, markup=False, highlight=False)
        console.print(protocol_table(rows, str(protocol)))
    if "warning" in df:
        per_entity = df[(df["entity"] != "ALL") & df["warning"].notna() & (df["warning"] != "")]
        for warning, n in per_entity.groupby("warning")["entity"].nunique().items():
            console.print(f"[yellow]warning[/] ({_plural(int(n), 'entity')}): {warning}", soft_wrap=True)
    if run_dir is not None:
        # never wrapped: the path must stay copyable (and greppable in a log)
        console.print(f"results: {run_dir}/results.csv" + (f" ({note})" if note else ""),
                      soft_wrap=True, markup=False, highlight=False)
