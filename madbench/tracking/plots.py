"""Per-entity PNG: the test score, the threshold and the true anomaly spans."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from madbench.data.entity import label_events


def plot_entity(path: Path, name: str, score: np.ndarray, labels: np.ndarray, threshold: float | None,
                protocol: str = "strict") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 3.2), dpi=90)
    t = np.arange(len(score))
    ax.plot(t, score, lw=0.7, color="tab:blue", label="score")
    for s, e in label_events(labels):
        ax.axvspan(s, e + 1, color="tab:red", alpha=0.18, lw=0)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label=f"{protocol} threshold")
    ax.set_title(f"{name}: test score (red spans: labelled anomalies)", fontsize=9)
    ax.set_xlabel("test step")
    finite = score[np.isfinite(score)]
    if len(finite) and finite.min() > 0 and finite.max() / max(finite.min(), 1e-12) > 1e3:
        ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
