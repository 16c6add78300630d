"""Per-entity PNGs: the test score with each protocol's decision (its threshold or its
intervals, and the points it predicted) and the true anomaly spans; the same for
several arms of one entity stacked (e.g. a backbone without and with a head); and, for one
ground-truth event, the sensors ranked by attribution with the true ones marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from madbench.data.entity import label_events


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def _trace(ax, score: np.ndarray, labels: np.ndarray, threshold: float | None, protocol: str,
           label: str = "score", legend: bool = True) -> None:
    """One test score on ``ax``: the trace, the labelled anomaly spans (red), the threshold
    (dashed), and a log axis when the positive scores span more than three decades."""
    score = np.asarray(score, dtype=np.float64)
    ax.plot(np.arange(len(score)), score, lw=0.7, color="tab:blue", label=label)
    for s, e in label_events(labels):
        ax.axvspan(s, e + 1, color="tab:red", alpha=0.18, lw=0)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label=f"{protocol} threshold")
    finite = score[np.isfinite(score)]
    if len(finite) and finite.min() > 0 and finite.max() / max(finite.min(), 1e-12) > 1e3:
        ax.set_yscale("log")
    if legend:
        ax.legend(loc="upper left", fontsize=7)


#: how each protocol's decision is drawn: the series its rule reads, and what "predicted" means there
_READS = {"madcluster": "window score (at the last step it describes)"}


def _decision(ax, score: np.ndarray, labels: np.ndarray, d) -> None:
    """One protocol's decision on one entity (``madbench.protocols.Decision``): the series
    its rule reads, the labelled spans, its threshold line or its detected intervals
    (green), and the points it predicted anomalous (orange)."""
    series = np.asarray(d.series, dtype=np.float64)
    x = np.asarray(d.x)
    pred = np.asarray(d.predicted, dtype=bool)
    if d.protocol in _READS:
        ax.plot(x, series, lw=0.7, color="tab:blue", label=_READS[d.protocol])
        for s, e in label_events(labels):
            ax.axvspan(s, e + 1, color="tab:red", alpha=0.18, lw=0)
        if d.threshold is not None and np.isfinite(d.threshold):
            ax.axhline(d.threshold, color="black", ls="--", lw=0.8, label=f"{d.protocol} threshold")
    else:
        _trace(ax, score, labels, d.threshold, d.protocol, legend=False)
    for i, (a, b) in enumerate(d.intervals):
        ax.axvspan(a, b + 1, color="tab:green", alpha=0.22, lw=0, label=f"{d.protocol} intervals" if i == 0 else None)
    n = int(pred.sum())
    ax.scatter(x[pred], series[pred], s=6, color="tab:orange", zorder=3, label=f"predicted ({n})")
    ax.set_ylabel(d.protocol, fontsize=8)
    ax.legend(loc="upper left", fontsize=7)


def entity_figure(name: str, score: np.ndarray, labels: np.ndarray, decisions: list | None = None,
                  threshold: float | None = None, protocol: str = "strict"):
    """One entity's test score with each requested protocol's decision, one panel per
    protocol on a shared step axis (``decisions``: ``madbench.protocols.Decision``s); with
    none (every protocol refused), the score alone with ``threshold`` if given."""
    plt = _pyplot()
    decisions = list(decisions or [])
    n = max(len(decisions), 1)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.4 * n + 0.8), dpi=90, sharex=True, squeeze=False)
    if decisions:
        for ax, d in zip(axes[:, 0], decisions):
            _decision(ax, score, labels, d)
    else:
        _trace(axes[0, 0], score, labels, threshold, protocol)
    axes[0, 0].set_title(f"{name}: test score per protocol (red spans: labelled anomalies; orange: predicted; "
                         f"green: detected intervals)", fontsize=9)
    axes[-1, 0].set_xlabel("test step")
    return fig


def plot_entity(path: Path, name: str, score: np.ndarray, labels: np.ndarray, decisions: list | None = None,
                threshold: float | None = None, protocol: str = "strict") -> Path:
    return _save(entity_figure(name, score, labels, decisions, threshold, protocol), path)


def plot_traces(path: Path, title: str, labels: np.ndarray, arms: list[tuple[str, np.ndarray, float | None]],
                protocol: str = "strict") -> Path:
    """One entity's test score under each arm (e.g. without and with a head), one panel
    per arm on a shared step axis, each with its own threshold and the labelled anomaly
    spans: the arms' scores live on different scales (the head multiplies the backbone's
    score by its factor), so they are stacked, not overlaid. ``arms``: (label, score,
    threshold or None)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(arms), 1, figsize=(12, 2.4 * len(arms) + 0.6), dpi=90, sharex=True, squeeze=False)
    for ax, (label, score, thr) in zip(axes[:, 0], arms):
        if len(score) != len(labels):
            raise ValueError(f"{label}: {len(score)} scores for {len(labels)} labels")
        _trace(ax, score, labels, thr, protocol, label=label)
        ax.set_ylabel("score", fontsize=8)
    axes[0, 0].set_title(f"{title} (red spans: labelled anomalies)", fontsize=9)
    axes[-1, 0].set_xlabel("test step")
    return _save(fig, path)


def plot_attribution(path: Path, name: str, span: tuple[int, int], values: np.ndarray, sensors: list[str],
                     truth: np.ndarray, kind: str = "", top: int = 20) -> Path:
    """One event: its sensors ranked by attribution (mean over the event's labelled steps),
    the ground-truth sensors in red, the rest grey; the ``top`` highest (and every
    ground-truth sensor) are shown."""
    plt = _pyplot()
    from madbench.metrics.interpretation import rank_sensors

    values = np.asarray(values, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    order = rank_sensors(values)
    rank_of = np.empty(len(order), dtype=int)
    rank_of[order] = np.arange(len(order))
    shown = [i for i in order if rank_of[i] < top or truth[i]]
    fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(shown) + 1.4), dpi=90)
    y = np.arange(len(shown))[::-1]
    ax.barh(y, np.nan_to_num(values[shown]), color=["tab:red" if truth[i] else "0.65" for i in shown])
    ax.set_yticks(y, [f"{rank_of[i] + 1}. {sensors[i]}" + (" ★" if truth[i] else "") for i in shown], fontsize=7)
    k = int(truth.sum())
    hits = int(truth[order[:k]].sum())
    ax.set_title(f"{name} event {span[0]}-{span[1]}: {kind} attribution, red = ground truth "
                 f"({hits}/{k} in the top {k})", fontsize=8)
    ax.set_xlabel("mean attribution over the event's labelled steps", fontsize=8)
    return _save(fig, path)
