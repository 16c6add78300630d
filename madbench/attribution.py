"""Which sensors drove the score at a step: one attribution contract for every backbone.

An attribution is ``A[t, s]`` over the test steps and the entity's sensors, higher = more
responsible. ``attribution`` (config) picks where it comes from:

- ``residual``: ``|r[t, s]|``, the placed per-sensor residual of any residual objective
  (forecast, reconstruct; sensors are scaled on train, so magnitudes compare);
- ``pvalue``: ``-2 ln p[t, s]``, M2AD's per-sensor Fisher term (``scoring=m2ad``), from
  the unclipped ``ln p`` (``M2ADScorer.sensor_log_pvalues``): the Fisher sum clips p at
  1e-16, and on SMD about half the labelled steps have two or more sensors at that clip,
  which would leave their order to the tie-break. Runs written before it fall back to the
  clipped ``sensor_p``;
- ``gradient``: for backbones with neither. Per test window, the L1 norm over the window's
  time steps of the gradient of its summed step score (``Detector.score``, head factor
  included) with respect to the sensor columns of everything the score reads from the
  series: the input window and the targets (a reconstruction's targets are the window
  itself, so the two gradients are added before the norm). It is placed on the steps the
  window scores and averaged over the windows that cover a step, like the scores.
  It needs the trained Detector, so the job computes it right after the score stage, and
  only for the windows that score a step inside a labelled event: cheap;
- ``auto`` (default): ``pvalue`` with ``scoring=m2ad``, else ``residual`` when the
  objective has residuals, else ``gradient`` when the entity has ground-truth sensors;
  ``none``: no attribution.

Ground truth comes from the loader: SMD's ``interpretation_label`` (``meta["interpretation"]``:
spans and 0-based columns, the file's dims being 1-based) or, for datasets whose events name
their sensors (synthetic, multisystem), ``meta["events"][i]["sensors"]``. It is kept as
``spans`` [E, 2] (inclusive) and ``sets`` bool [E, S] over the entity's ``sensors``.
The attribution is kept (and written to ``scores.npz``) only for the test steps the
metrics use: labelled steps inside a span. Residual and p-value attributions are rebuilt
from ``scores.npz`` when re-scoring; a gradient one is read back from it.
"""
from __future__ import annotations

import numpy as np

from madbench.config import objective_class
from madbench.errors import ConfigError, DataError

KINDS = ("auto", "residual", "pvalue", "gradient", "none")


# -- the config key -------------------------------------------------------------------------
def configured(cfg) -> str:
    """``attribution`` of a config (``auto`` when the key is absent: runs written before it)."""
    kind = cfg.get("attribution") or "auto"
    return str(kind)


def check(cfg, has_residuals: bool) -> None:
    """One-line ConfigError for a bad or impossible ``attribution``."""
    kind = configured(cfg)
    if kind not in KINDS:
        raise ConfigError(f"attribution={kind!r}; expected one of {list(KINDS)}")
    if kind == "pvalue" and cfg.scoring.name != "m2ad":
        raise ConfigError(f"attribution=pvalue needs the per-sensor p-values of scoring=m2ad, not "
                          f"scoring={cfg.scoring.name}; use attribution=residual or auto")
    if kind == "residual" and not has_residuals:
        raise ConfigError(f"attribution=residual needs per-sensor residuals, which objective={cfg.objective.name} "
                          "does not give; use attribution=gradient or auto")


def resolve(cfg) -> str:
    """The kind ``auto`` stands for under this config (``gradient`` applies only to
    entities with ground-truth sensors)."""
    kind = configured(cfg)
    if kind != "auto":
        return kind
    if cfg.scoring.name == "m2ad":
        return "pvalue"
    return "residual" if objective_class(cfg).has_residuals else "gradient"


# -- ground truth ---------------------------------------------------------------------------
def truth(entity) -> tuple[np.ndarray, np.ndarray] | None:
    """``(spans [E, 2] inclusive, sets bool [E, S])`` over ``entity.sensors``, or None when
    the entity names no ground-truth sensors. A named sensor that is not modelled (a
    covariate) is left out of the set; a set left empty is kept (the metrics skip and count
    it)."""
    meta = entity.meta or {}
    events = meta.get("interpretation")
    if events is None:
        events = [ev for ev in meta.get("events") or [] if isinstance(ev, dict) and ev.get("sensors") is not None]
        if not events:
            return None
    pos = {name: j for j, name in enumerate(entity.sensors)}
    spans = np.array([[int(ev["start"]), int(ev["end"])] for ev in events], dtype=np.int64).reshape(-1, 2)
    sets = np.zeros((len(events), len(entity.sensors)), dtype=bool)
    for i, ev in enumerate(events):
        for name in ev["sensors"]:
            if name in pos:
                sets[i, pos[name]] = True
    return spans, sets


def needed_steps(labels: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """bool [T]: labelled test steps inside a ground-truth span (the steps the metrics use)."""
    labels = np.asarray(labels)
    inside = np.zeros(len(labels), dtype=bool)
    for s, e in np.asarray(spans).reshape(-1, 2):
        inside[max(int(s), 0):int(e) + 1] = True
    return inside & (labels == 1)


# -- attributions from what the score and scoring stages keep ---------------------------------
def from_residuals(residuals: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(residuals, dtype=np.float64))


def from_pvalues(sensor_p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.0 * np.log(np.asarray(sensor_p, dtype=np.float64))


def compute(kind: str, residuals, sensor_p, gradient, sensor_logp=None) -> np.ndarray | None:
    """The full [T, S] attribution of one kind from the test split's residuals, the
    scorer's per-sensor p-values (unclipped ``ln p`` when given) or the job's gradient
    attribution (None: not available)."""
    if kind == "residual":
        return None if residuals is None else from_residuals(residuals)
    if kind == "pvalue":
        if sensor_logp is not None:
            return -2.0 * np.asarray(sensor_logp, dtype=np.float64)
        return None if sensor_p is None else from_pvalues(sensor_p)
    if kind == "gradient":
        return None if gradient is None else np.asarray(gradient, dtype=np.float64)
    return None


def keep(cfg, name: str, labels, interpretation, residuals, sensor_p, gradient, sensor_logp=None) -> dict:
    """What an entity keeps for the interpretation metrics (``EntityScores.extras``):
    ``interp_spans``, ``interp_sensors`` and, when an attribution is available,
    ``attribution`` [N, S] at ``attribution_steps`` [N] and ``attribution_kind``."""
    if interpretation is None:
        return {}
    spans, sets = interpretation
    out = {"interp_spans": spans, "interp_sensors": sets}
    kind = resolve(cfg)
    if kind == "none":
        return out
    full = compute(kind, residuals, sensor_p, gradient, sensor_logp)
    if full is None:
        if configured(cfg) == "gradient":
            raise DataError(f"entity {name}: attribution=gradient needs the trained model; this run's scores.npz "
                            "holds no gradient attribution (run the job with attribution=gradient)")
        return out
    steps = np.flatnonzero(needed_steps(labels, spans))
    out.update(attribution=full[steps].astype(np.float32), attribution_steps=steps, attribution_kind=kind)
    return out


ARRAYS = ("interp_spans", "interp_sensors", "attribution", "attribution_steps")


def to_arrays(extras: dict) -> dict[str, np.ndarray]:
    """``extras`` → the arrays the run dir keeps for one entity (``madbench.rundir``)."""
    out = {k: np.asarray(extras[k]) for k in ARRAYS if k in extras}
    if "attribution_kind" in extras:
        out["attribution_kind"] = np.array(extras["attribution_kind"])
    return out


def from_arrays(arrays: dict) -> dict:
    """The inverse of :func:`to_arrays` (the run dir's arrays of one entity)."""
    out = {k: arrays[k] for k in ARRAYS if k in arrays}
    if "attribution_kind" in arrays:
        out["attribution_kind"] = str(arrays["attribution_kind"])
    if "interp_sensors" in out:
        out["interp_sensors"] = out["interp_sensors"].astype(bool)
    return out


def interpretation_of(extras: dict) -> tuple[np.ndarray, np.ndarray] | None:
    return (extras["interp_spans"], extras["interp_sensors"]) if "interp_spans" in extras else None


def stored_gradient(extras: dict, n_test: int) -> np.ndarray | None:
    """A gradient attribution read back from ``scores.npz``, as a full [T, S] array (NaN
    where not kept), so re-scoring keeps it."""
    if extras.get("attribution_kind") != "gradient" or "attribution" not in extras:
        return None
    a = extras["attribution"]
    full = np.full((n_test, a.shape[1]), np.nan)
    full[extras["attribution_steps"]] = a
    return full


# -- the gradient attribution (needs the trained Detector) ------------------------------------
def gradients(cfg, detector, trainer, windows, input_cols, sensor_cols, entities, batch_size: int = 256):
    """Per entity of ``entities`` (the series of ``windows``, a test Windows at stride 1):
    its [T, S] gradient attribution, NaN outside the needed steps; None for every entity
    when the configured attribution is not ``gradient``, and None for an entity without
    ground-truth sensors."""
    if resolve(cfg) != "gradient":
        return [None] * len(entities)
    truths = [truth(e) for e in entities]
    needed = np.concatenate([needed_steps(e.labels, t[0]) if t is not None else np.zeros(len(e.test), dtype=bool)
                             for e, t in zip(entities, truths)])
    full = window_gradients(detector, trainer, windows, input_cols, sensor_cols, needed, batch_size)
    out = []
    for off, n, t in zip(windows.offsets, windows.lengths, truths):
        out.append(None if t is None else full[off:off + n])
    return out


def window_gradients(detector, trainer, windows, input_cols, sensor_cols, needed: np.ndarray,
                     batch_size: int = 256) -> np.ndarray:
    """[T_total, S] gradient attribution (module docstring) at the ``needed`` steps of the
    concatenated series of ``windows``; NaN elsewhere. Only the windows that score a needed
    step are run."""
    import torch

    dev = trainer.device
    n_s = len(sensor_cols)
    total = int(windows.lengths.sum())
    acc = np.zeros((total, n_s))
    cnt = np.zeros(total)
    offsets = windows.spec.score_offsets()
    pos = windows.starts[:, None] + offsets[None, :]
    run = np.flatnonzero(needed[pos].any(1)) if len(pos) else np.zeros(0, dtype=np.int64)
    in_cols = torch.as_tensor(input_cols, device=dev)
    s_cols = torch.as_tensor(sensor_cols, device=dev)
    separate_targets = bool(windows.spec.horizon)
    was = detector.training
    detector.to(dev).eval()
    detector.autocast = trainer._autocast_spec()
    try:
        # cuDNN's RNN backward refuses eval mode; the gradient needs no cuDNN speed
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            for b in range(0, len(run), batch_size):
                j = run[b:b + batch_size]
                batch = trainer.batch(windows, j, in_cols, s_cols)
                x = batch["x"].detach().clone().requires_grad_(True)
                y = batch["y"].detach().clone().requires_grad_(True)
                step, _, _ = detector.score({"x": x, "y": y}, detector(x))
                # a score that reads no input (the random and constant baselines) has no gradient
                gx, gy = (torch.autograd.grad(step.float().sum(), [x, y], allow_unused=True) if step.requires_grad
                          else (None, None))
                gx = torch.zeros_like(x) if gx is None else gx
                gy = torch.zeros_like(y) if gy is None else gy
                if separate_targets:
                    sal = gx[..., :n_s].abs().sum(1) + gy.abs().sum(1)
                else:
                    sal = (gx[..., :n_s] + gy).abs().sum(1)
                sal = sal.detach().double().cpu().numpy()
                p = pos[j]
                m = needed[p]
                rows = np.broadcast_to(np.arange(len(j))[:, None], p.shape)[m]
                np.add.at(acc, p[m], sal[rows])
                np.add.at(cnt, p[m], 1.0)
    finally:
        detector.train(was)
    out = np.full((total, n_s), np.nan)
    got = cnt > 0
    out[got] = acc[got] / cnt[got, None]
    return out


# -- one event, for a plot ------------------------------------------------------------------
def event_profile(extras: dict, labels: np.ndarray, event: int | None = None):
    """``(event index, (start, end), mean attribution [S] over the event's kept steps,
    truth mask [S])`` for one event (default: the one with the most kept steps), or None
    when there is nothing to show."""
    if "attribution" not in extras:
        return None
    spans, sets = extras["interp_spans"], extras["interp_sensors"]
    steps, a = extras["attribution_steps"], np.asarray(extras["attribution"], dtype=np.float64)
    ok = np.isfinite(a).any(1)

    def inside(i):
        s, e = spans[i]
        return ok & (steps >= s) & (steps <= e)

    if event is None:
        counts = [int(inside(i).sum()) if sets[i].any() else 0 for i in range(len(spans))]
        if not counts or max(counts) == 0:
            return None
        event = int(np.argmax(counts))
    if not 0 <= event < len(spans):
        raise DataError(f"event {event}: the entity has {len(spans)} ground-truth events (0..{len(spans) - 1})")
    m = inside(event)
    if not m.any():
        return None
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(a[m], axis=0)
    return event, (int(spans[event][0]), int(spans[event][1])), mean, sets[event]
