"""Results → the papers' tables, each a :class:`madbench.reports.base.Report` (compute,
render, its own arguments), one module per paper:

    madbench-tables m2ad_table2 RESULTS [--out DIR]      M2AD Table 2: every pipeline, the floor
    madbench-tables m2ad_ablation RESULTS                M2AD's SMD scoring ablation
    madbench-tables m2ad_search RESULTS                  M2AD interval constructions
    madbench-tables madcluster_t1 RESULTS                MADCluster appendix Table 1 (head.k)
    madbench-tables madcluster_t2 RESULTS [--metric f1]  MADCluster appendix Table 2 (paired)
    madbench-tables madcluster_t3 RESULTS                MADCluster appendix Table 3 (arms × score parts)
    madbench-tables grid RESULTS [--metric COLUMN]       backbone × head × scoring × protocol
    madbench-tables attribution RESULTS                  which sensors drove an alarm
    madbench-tables paired RESULTS --paired KEY=A,B [--by backbone[,scoring]] [--metric f1] [--protocol P]
    madbench-tables traces RESULTS --paired KEY=A,B [--entity C-1] [--seed 0] [--wandb]

RESULTS is a collected CSV (``madbench-collect``: it carries the config columns the tables
read) or a directory of run dirs (collected in memory; nothing is written there). Each
table is printed and written as CSV (numbers), Markdown and LaTeX into ``--out`` (default:
beside RESULTS). Every method row is read against the trivial floor of the same dataset,
protocol and entities where RESULTS holds baseline runs (``madbench.reports.floors``).
"""
from __future__ import annotations

import argparse
import sys

from madbench.errors import MadbenchError
from madbench.reports.attribution import Attribution
from madbench.reports.base import Report
from madbench.reports.grid import Grid
from madbench.reports.m2ad import Ablation, Search, Table2
from madbench.reports.madcluster import T1, T2, T3
from madbench.reports.pairs import Paired, Traces

REPORTS: dict[str, Report] = {r.name: r for r in (Table2(), Ablation(), Search(), T1(), T2(), T3(), Grid(),
                                                  Attribution(), Paired(), Traces())}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="madbench-tables", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="table", required=True, metavar="TABLE")
    for name, report in REPORTS.items():
        p = sub.add_parser(name, help=report.help.replace("%", "%%"), description=report.help)  # argparse %-formats help
        p.add_argument("results", help="a collected CSV or a directory of run dirs")
        p.add_argument("--out", default=None, help="output directory (default: beside RESULTS)")
        report.add_arguments(p)
    return ap


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    try:
        REPORTS[args.table].run(args)
    except MadbenchError as e:
        print(f"madbench-tables: error: {e}", file=sys.stderr)
        sys.exit(1)
