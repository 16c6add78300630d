"""What every report shares: reading results, the config columns, number formatting, and
writing a table's files.

A report (:class:`Report`) is an object with a name, its own command-line arguments, a
``compute`` (result rows → a table of numbers) and a ``render`` (the table → display
strings). ``madbench-tables NAME RESULTS`` reads RESULTS (a collected CSV, or a directory
of run dirs collected in memory: nothing is written there), computes, renders, prints, and
writes ``NAME.csv`` (the numbers), ``NAME.md`` and ``NAME.tex`` (the display) into
``--out`` (default: beside RESULTS). Every refusal is a ``MadbenchError`` (one line).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from madbench.errors import ConfigError, DataError
from madbench.rundir import atomic_write, read_results_csv
from madbench.tracking.collect import CONFIG_PREFIX, collect_frame, config_columns

PAPER_DIR = Path(__file__).resolve().parents[1] / "paper"


# -- reading results -----------------------------------------------------------------------------
def load_results(path: Path | str) -> pd.DataFrame:
    """A collected CSV, or a directory of run dirs collected in memory (with their config
    columns; nothing is written)."""
    path = Path(path)
    if path.is_dir():
        return collect_frame(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; expected a collected CSV or a directory of run dirs")
    try:
        return read_results_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None


def _parse(v):
    """A config cell back to its value (lists and nulls were written as JSON)."""
    if isinstance(v, str) and v[:1] in "[{n" and v not in ("nan",):
        try:
            return json.loads(v)
        except ValueError:
            return v
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def config_values(df: pd.DataFrame, key: str, table: str) -> pd.Series:
    """The config value ``key`` of each row's run: its ``config.<key>`` column (a collected
    table carries it), else read from the run dirs when they are still there."""
    col = CONFIG_PREFIX + key
    if col in df:
        return df[col].map(_parse)
    if "run_dir" in df and len(df) and all(Path(str(d), "config.yaml").exists() for d in df["run_dir"].unique()):
        cols = config_columns(df["run_dir"].unique())
        if col in cols:
            return df["run_dir"].astype(str).map(cols[col]).map(_parse)
        return pd.Series([None] * len(df), index=df.index)
    raise DataError(f"{table} needs the config key {key}: RESULTS has no {col} column and its run dirs are not "
                    "here; collect them with madbench-collect (it writes the config columns)")


def config_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every ``config.<key>`` column of ``df`` (run dirs read where a CSV has none)."""
    cols = [c for c in df.columns if c.startswith(CONFIG_PREFIX)]
    if cols:
        return df[cols].apply(lambda s: s.map(_parse))
    if "run_dir" in df and len(df) and all(Path(str(d), "config.yaml").exists() for d in df["run_dir"].unique()):
        cfg = config_columns(df["run_dir"].unique())
        return df[["run_dir"]].astype(str).join(cfg, on="run_dir").drop(columns="run_dir").apply(
            lambda s: s.map(_parse))
    raise DataError("RESULTS carries no config columns (config.<key>) and its run dirs are not here; collect the "
                    "run dirs with madbench-collect, which writes them")


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


# -- numbers ----------------------------------------------------------------------------------------
def sd(x) -> float:
    """The sample standard deviation (ddof=1, as the papers' figures), NaN for one value."""
    return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")


def f_beta(tp, fp, fn, beta: float = 1.0):
    b2 = beta * beta
    den = (1 + b2) * np.asarray(tp, float) + b2 * np.asarray(fn, float) + np.asarray(fp, float)
    return np.where(den > 0, (1 + b2) * np.asarray(tp, float) / np.where(den > 0, den, 1), 0.0)


def pm(m, s=float("nan")) -> str:
    """'mean ± std' (or the mean alone, or — when there is none)."""
    if m is None or m != m:
        return "—"
    return f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f}"


def delta(d) -> str:
    return f"{d:+.3f}" if d == d else "—"


def num(v, fmt: str = "{:.3f}") -> str:
    return "—" if v is None or v is pd.NA or v != v else fmt.format(v)


def pct(v) -> str:
    return num(v, "{:.1%}")


# -- a report -----------------------------------------------------------------------------------------
class Report:
    """One table (or plot) of results: ``compute`` numbers, ``render`` them for people."""

    name = ""
    help = ""
    #: what the table's files are named (default: the report's name)
    stem = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The report's own command-line options (beyond RESULTS and --out)."""

    def compute(self, df: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
        raise NotImplementedError

    def render(self, table: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
        """Display columns (strings); by default the numbers at 3 significant digits."""
        return table.assign(**{c: table[c].map(lambda v: f"{v:.3g}" if v == v else "—")
                               for c in table.columns if table[c].dtype.kind == "f"})

    def notes(self, table: pd.DataFrame, args: argparse.Namespace) -> list[str]:
        """Lines printed and written under the table (its reading rules)."""
        return []

    def after(self, table: pd.DataFrame, args: argparse.Namespace, out: Path) -> None:
        """Outputs beyond the table's files (a CD diagram, plots)."""

    # -- the command ---------------------------------------------------------------------
    def run(self, args: argparse.Namespace) -> pd.DataFrame:
        df = load_results(args.results)
        out = Path(args.out) if args.out else (Path(args.results) if Path(args.results).is_dir()
                                               else Path(args.results).parent)
        table = self.compute(df, args)
        shown = self.render(table, args)
        notes = self.notes(table, args)
        self.write(table, shown, notes, out)
        print_table(self.name, shown, notes)
        stem = self.stem or self.name
        print(f"wrote {out / stem}.csv, .md, .tex")
        self.after(table, args, out)
        return table

    def write(self, table: pd.DataFrame, shown: pd.DataFrame, notes: list[str], out: Path) -> None:
        stem = self.stem or self.name
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / f"{stem}.csv", lambda p: table.to_csv(p, index=False))
        md = shown.to_markdown(index=False) + "\n" + "".join(f"\n{n}\n" for n in notes)
        atomic_write(out / f"{stem}.md", lambda p: Path(p).write_text(md))
        tex = shown.to_latex(index=False).replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("→", r"$\to$")
        atomic_write(out / f"{stem}.tex", lambda p: Path(p).write_text(tex))


def print_table(title: str, shown: pd.DataFrame, notes: list[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    rt = Table(title=title)
    for c in shown.columns:
        rt.add_column(str(c))
    for _, r in shown.iterrows():
        rt.add_row(*[str(v) for v in r])
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(rt)
    for n in notes:
        console.print(n, soft_wrap=True, markup=False, highlight=False)


def need_columns(df: pd.DataFrame, columns, table: str) -> None:
    missing = [c for c in columns if c not in df]
    if missing:
        raise DataError(f"{table}: RESULTS has no {missing[0]!r} column; expected madbench result rows")


def split_arms(value: str | None, option: str, table: str) -> tuple[str, str, str]:
    """``KEY=A,B`` → (key, a, b); anything else is a one-line ConfigError."""
    if not value or "=" not in value or len(value.split("=", 1)[1].split(",")) != 2:
        raise ConfigError(f"{table} needs {option} KEY=A,B (e.g. head=none,madcluster)")
    key, arms = value.split("=", 1)
    a, b = arms.split(",")
    return key, a, b
