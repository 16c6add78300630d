"""The random-ranking floor of the attribution metrics (HitRate, NDCG) on the steps and sensor
sets of finished run dirs: uniform random attributions, 5 draws (seeds 0-4), scored with
madbench.metrics.interpretation exactly as a run's own attribution is.

    python scripts/attribution_random_baseline.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from madbench import attribution as A
from madbench import rescoring as R
from madbench.metrics import interpretation as I

COLUMNS = ("hit_100", "hit_150", "ndcg_100", "hit_100_event", "hit_150_event", "ndcg_100_event")


def random_floor(runs: list[Path], draws: int = 5) -> np.ndarray:
    """[draws, 6]: the COLUMNS of a uniform random attribution, pooled over the runs' entities."""
    out = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        parts = []
        for run in runs:
            for es in R.load_scores(run):
                truth = A.interpretation_of(es.extras)
                if truth is None:
                    continue
                spans, sets = truth
                steps = np.flatnonzero(A.needed_steps(es.labels, spans))
                parts.append(I.event_parts(rng.random((len(steps), sets.shape[1])), steps, es.labels, spans, sets))
        if not parts:
            raise SystemExit("attribution_random_baseline: error: no entity with ground-truth sensors in the run dirs")
        s = I.summarise(parts)
        out.append([s[c] for c in COLUMNS])
        print(f"draw {seed}: {s['interp_steps']} steps, {s['interp_events']} events:",
              " ".join(f"{c} {v:.4f}" for c, v in zip(COLUMNS, out[-1])))
    return np.asarray(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    m = random_floor([Path(p) for p in sys.argv[1:]]).mean(axis=0)
    print("mean:", " ".join(f"{c} {v:.3f}" for c, v in zip(COLUMNS, m)))
