#!/usr/bin/env python
"""madbench benchmarks: speed and memory as ratios against the reference, in one run.

    python scripts/bench.py metrics [--sizes ...]      # madbench.metrics vs vus
    python scripts/bench.py m2ad [--authors CHECKOUT]  # M2AD scoring vs the authors' code (a clone of
                                                       # sarahmish/M2AD) and vs a re-implementation
    python scripts/bench.py memory [--root DIR]        # peak RSS of a pooled SMD run
    python scripts/bench.py madcluster [--backbones ...] # the MADCluster head's overhead per epoch
    python scripts/bench.py zoo [--backbones usad,beatgan] [--head none,madcluster] [--reference usad=CHECKOUT]
                                                       # zoo backbones' training throughput and peak memory
                                                       # at the papers' sizes on MSL C-1, vs the authors' code
    python scripts/bench.py dcdetector [--authors CHECKOUT]  # DCdetector + MADCluster vs the MADCluster
                                                       # reference's code (a clone of SYLee1996/MADCluster)
    python scripts/bench.py dynamic_threshold --orion DIR --telemanom DIR  # LSTM-DT's thresholding vs
                                                       # Orion's find_anomalies and telemanom's Errors
    python scripts/bench.py threads [--jobs 1,4]       # epoch time at 1, 2, all CPU threads, alone and
                                                       # beside concurrent jobs (trainer.num_threads=auto)
    python scripts/bench.py speed [--what score,job]   # issue 27's speed-ups vs the code they replaced
                                                       # (AT, DCdetector, Deep SVDD; eval batches by memory)
    python scripts/bench.py all                        # metrics + m2ad (re-implementation only)

Exits non-zero when a suite does (m2ad: when madbench and a reference disagree).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SUITES = {"metrics": "bench_metrics", "m2ad": "bench_m2ad", "memory": "bench_memory", "madcluster": "bench_madcluster",
          "zoo": "bench_zoo", "dcdetector": "bench_dcdetector", "threads": "bench_threads",
          "dynamic_threshold": "bench_dynamic_threshold", "speed": "bench_speed"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*SUITES, "all"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    which, rest = argv[0], argv[1:]
    status = 0
    for name in (["metrics", "m2ad"] if which == "all" else [which]):
        mod = importlib.import_module(SUITES[name])
        rc = mod.main(rest if which != "all" else [])
        # Suites that check agreement return an exit status; others return their rows.
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
