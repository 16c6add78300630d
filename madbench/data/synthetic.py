"""The embedded default dataset: synthetic multi-sensor systems with labelled anomaly events.

Generative model (one *system* = one :class:`~madbench.data.entity.Entity`)
---------------------------------------------------------------------------
Every system draws its own parameters from ``np.random.default_rng([seed, k])`` (``k`` is
the system index), so ``sys1`` is the same whether 2 or 10 systems are asked for. Train
and test are one continuous series of ``train_len + test_len`` steps, cut in two. The
normal series is drawn first and the anomalies last, so ``anomaly_ratio=0`` returns the
same series with no anomalies.

1. **Latent factors** ``f[t, F]`` (``F = min(3, n_sensors)``), each scaled to unit std:
   ``f0`` a fast seasonal wave (period 30-90 steps, a sine plus a random 2nd harmonic),
   ``f1`` a slow seasonal wave (period 180-480), ``f2`` a smooth AR(1) process
   (phi 0.95-0.99). Periods differ between systems.
2. **Covariates** ``c[t, C]`` are binary on/off commands, piecewise constant: each one
   stays in a state for a geometric time (mean 120-400 steps) and then flips. Each
   covariate acts on 1-3 sensors with gain ``±0.8-1.8``. The response is a first-order
   lag (time constant 3-10 steps) of the command, delayed one step. The cause therefore
   lies in the model's input window. The switches occur in train as well as in test,
   and the model receives them as inputs, so these level changes are normal behaviour.
3. **Sensors** (normalised units): ``z = f @ W.T + r @ B.T + noise``. ``W[S, F]`` is a
   loading matrix: each sensor has one dominant factor (loading ``±0.8-1.2``, which gives
   the M2AD group in ``meta["groups"]``, weight 1) and small loadings ``N(0, 0.25²)`` on
   the others. Sensors that share factors are therefore correlated. ``r`` is the lagged
   covariate response and ``B[S, C]`` holds the gains. The noise is white, with a
   per-sensor std of ``base * U(0.7, 1.4)``, where ``base ~ U(0.05, 0.15)`` is drawn per
   system. The raw values are ``offset + scale * z``: the scale is log-uniform on
   [0.1, 100], the offset is ``scale * U(-5, 5)``.
4. **Anomaly events**, in test only. ``round(anomaly_ratio * test_len)`` points are
   labelled, so the realised ratio equals the target up to rounding. They are split into
   about one event per 25 points, which gives 6 events per system by default, one of
   each kind. Events start no earlier than step 150 (the model window is 100, and a
   test shorter than 450 steps gets a third of its length instead). They never overlap
   and keep normal gaps between them (≥ 100 steps when the test length allows).
   ``labels`` is 1 exactly on the event spans. Magnitudes are in units of ``sigma_s``,
   the train std of sensor ``s`` in normalised units:

   - ``spike``: 1-3 steps; 1-2 sensors, ``±3-6 sigma`` each step.
   - ``level_shift``: a step of ``±1.5-3 sigma`` on 1-3 sensors.
   - ``drift``: a linear ramp from 0 to ``±2.5-3.5 sigma`` on 1-2 sensors.
   - ``frequency``: the fast seasonal wave's period is multiplied by 1.5-2.5, or divided
     by it (even odds), phase-continuous at the onset. The change reaches the 2-4 sensors
     that load most on that wave.
   - ``correlation``: 1-2 sensors follow an independent draw of the latent factors
     (same kinds and periods, new phases and AR path, so the same marginal scale). The
     draw cross-fades in over 8 steps and decouples the sensors from their group.
   - ``stuck``: 1-2 sensors of the fast seasonal group (they move, so a held value is
     abnormal) hold their last value before the event, with no noise.

   The easy kinds (level shift, drift) get about twice the span of the hard ones
   (frequency, correlation, stuck). A one-step forecaster barely notices the hard ones at
   first, because the deviation grows during the event. Each event is saved in
   ``meta["events"]`` as ``{"start", "end" (inclusive), "kind", "sensors"}`` (sensor
   names). When the budget is too small for all six kinds, the kinds rotate with the
   system index, so that a multi-system dataset still covers them all.

Calibration, seeds 0-3 on the default sizes, AUC-ROC of the squared one-step error
averaged over sensors, per timestamp:

- a ridge forecaster on 100-step lagged windows of sensors and covariates: 0.90;
- an LSTM forecaster (2 x 80, Adam 1e-3, batch 64): 0.76 after 3 epochs, 0.84 after 5,
  0.87 after 10.

Random scores give 0.5.

The loader returns raw values. The runner fits its scaler on train. ``meta["generator"]``
holds every drawn parameter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import lfilter

from madbench.data.entity import Entity
from madbench.errors import ConfigError

KINDS = ("spike", "level_shift", "drift", "frequency", "correlation", "stuck")


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator that are not part of ``load``'s signature (ranges are [lo, hi])."""

    fast_period: tuple[float, float] = (30.0, 90.0)
    slow_period: tuple[float, float] = (180.0, 480.0)
    ar_phi: tuple[float, float] = (0.95, 0.99)
    dominant_loading: tuple[float, float] = (0.8, 1.2)
    cross_loading_std: float = 0.25
    noise_base: tuple[float, float] = (0.05, 0.15)
    noise_rel: tuple[float, float] = (0.7, 1.4)
    cov_dwell: tuple[float, float] = (120.0, 400.0)
    cov_gain: tuple[float, float] = (0.8, 1.8)
    cov_tau: tuple[float, float] = (3.0, 10.0)
    log10_scale: tuple[float, float] = (-1.0, 2.0)
    offset_rel: tuple[float, float] = (-5.0, 5.0)
    # events
    warmup: int = 150
    min_gap: int = 100
    points_per_event: float = 25.0
    spike_len: tuple[int, int] = (1, 3)
    min_event_len: int = 5
    spike_sigma: tuple[float, float] = (3.0, 6.0)
    shift_sigma: tuple[float, float] = (1.5, 3.0)
    drift_sigma: tuple[float, float] = (2.5, 3.5)
    freq_factor: tuple[float, float] = (1.5, 2.5)
    freq_speedup_prob: float = 0.5
    corr_fade: int = 8
    # how many sensors each kind touches
    n_hit: dict = field(default_factory=lambda: {
        "spike": (1, 2), "level_shift": (1, 3), "drift": (1, 2),
        "frequency": (2, 4), "correlation": (1, 2), "stuck": (1, 2),
    })
    # relative length of each kind's events (spikes have their own fixed length range)
    length_weight: dict = field(default_factory=lambda: {
        "level_shift": 2.0, "drift": 2.0, "frequency": 1.0, "correlation": 0.8, "stuck": 0.7})


def _plain(x):
    """Tuples to lists, recursively, so the meta dumps with yaml.safe_dump / json."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _uniform(rng: np.random.Generator, lohi) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def _waveform(phase: np.ndarray, harmonic: float, harmonic_phase: float) -> np.ndarray:
    """Periodic wave in phase (radians), scaled to unit std over a full cycle."""
    norm = np.sqrt(0.5 * (1.0 + harmonic**2))
    return (np.sin(phase) + harmonic * np.sin(2.0 * phase + harmonic_phase)) / norm


class _Factors:
    """The latent factors of one system: their parameters and a way to (re)draw paths."""

    def __init__(self, rng: np.random.Generator, cfg: SyntheticConfig, n_factors: int):
        self.n = n_factors
        self.periods = [_uniform(rng, cfg.fast_period), _uniform(rng, cfg.slow_period)][: min(2, n_factors)]
        self.harmonics = [float(rng.uniform(0.2, 0.5)) for _ in self.periods]
        self.harmonic_phases = [float(rng.uniform(0, 2 * np.pi)) for _ in self.periods]
        self.phi = _uniform(rng, cfg.ar_phi) if n_factors > 2 else None

    def kinds(self) -> list[str]:
        return ["fast_seasonal", "slow_seasonal", "ar1"][: self.n]

    def phase(self, i: int, t: np.ndarray, phase0: float) -> np.ndarray:
        return 2.0 * np.pi * t / self.periods[i] + phase0

    def wave(self, i: int, phase: np.ndarray) -> np.ndarray:
        return _waveform(phase, self.harmonics[i], self.harmonic_phases[i])

    def draw(self, rng: np.random.Generator, n_steps: int) -> tuple[np.ndarray, list[float]]:
        """A path ``f[n_steps, n]`` (unit std) and the random initial phases of the waves."""
        t = np.arange(n_steps, dtype=np.float64)
        f = np.empty((n_steps, self.n))
        phases = [float(rng.uniform(0, 2 * np.pi)) for _ in self.periods]
        for i, p0 in enumerate(phases):
            f[:, i] = self.wave(i, self.phase(i, t, p0))
        if self.phi is not None:
            e = rng.standard_normal(n_steps) * np.sqrt(1.0 - self.phi**2)
            e[0] = rng.standard_normal()  # stationary start
            f[:, 2] = lfilter([1.0], [1.0, -self.phi], e)
        return f, phases


def _covariates(rng: np.random.Generator, cfg: SyntheticConfig, n_steps: int, n_cov: int):
    """Binary piecewise-constant commands with geometric dwell times."""
    c = np.zeros((n_steps, n_cov))
    dwells = []
    for j in range(n_cov):
        dwell = _uniform(rng, cfg.cov_dwell)
        dwells.append(dwell)
        state = float(rng.integers(0, 2))
        # the first segment is truncated at random so covariates don't all start switching at 0
        t = 0
        n = int(rng.integers(1, int(dwell) + 1))
        while t < n_steps:
            c[t : t + n, j] = state
            t += n
            state = 1.0 - state
            n = int(rng.geometric(1.0 / dwell))
    return c, dwells


def _lagged_response(c: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """First-order lag of each command, delayed by one step (so the cause is in the input window)."""
    r = np.empty_like(c)
    for j, tau in enumerate(taus):
        alpha = 1.0 / tau
        u = np.concatenate([c[:1, j], c[:-1, j]])  # r[t] = (1 - alpha) r[t-1] + alpha c[t-1], r[0] = c[0]
        r[:, j], _ = lfilter([alpha], [1.0, alpha - 1.0], u, zi=[(1.0 - alpha) * c[0, j]])
    return r


def _event_lengths(rng: np.random.Generator, cfg: SyntheticConfig, budget: int, system_index: int):
    """Kinds and lengths of the events of one system; lengths sum exactly to ``budget``."""
    if budget <= 0:
        return []
    n_events = max(1, int(round(budget / cfg.points_per_event)))
    # every non-spike event needs min_event_len points
    while n_events > 1 and (n_events - 1) * cfg.min_event_len + 1 > budget:
        n_events -= 1
    if n_events >= len(KINDS):
        order = list(KINDS)
        rng.shuffle(order)
        kinds = order + [KINDS[i] for i in rng.integers(0, len(KINDS), n_events - len(KINDS))]
    else:
        # rotate so that a few systems together still show every kind
        start = (system_index * n_events) % len(KINDS)
        kinds = [KINDS[(start + i) % len(KINDS)] for i in range(n_events)]
    if budget < cfg.min_event_len and "spike" not in kinds:
        kinds = ["spike"]
    lengths = {}
    for i, k in enumerate(kinds):
        if k == "spike":
            lengths[i] = int(rng.integers(cfg.spike_len[0], cfg.spike_len[1] + 1))
    long_idx = [i for i, k in enumerate(kinds) if k != "spike"]
    rest = budget - sum(lengths.values())
    if not long_idx:
        # only spikes: give them the whole budget
        share = np.full(len(kinds), budget // len(kinds))
        share[: budget - share.sum()] += 1
        return [(k, int(n)) for k, n in zip(kinds, share)]
    if rest < len(long_idx):
        # tiny budget: spikes shrink to 1 step
        for i in lengths:
            lengths[i] = 1
        rest = budget - len(lengths)
    w = np.array([cfg.length_weight[kinds[i]] * rng.uniform(0.7, 1.3) for i in long_idx])
    base_min = min(cfg.min_event_len, rest // len(long_idx))
    extra = rest - base_min * len(long_idx)
    raw = w / w.sum() * extra
    alloc = np.floor(raw).astype(int)
    leftover = extra - alloc.sum()
    alloc[np.argsort(raw - alloc)[::-1][:leftover]] += 1
    for i, n in zip(long_idx, alloc):
        lengths[i] = base_min + int(n)
    return [(k, lengths[i]) for i, k in enumerate(kinds)]


def _place(rng: np.random.Generator, cfg: SyntheticConfig, lengths: list[int], test_len: int) -> list[int]:
    """Start indices (in the given order) with warm-up, gaps ≥ min_gap when possible, no overlap."""
    n = len(lengths)
    if n == 0:
        return []
    total = sum(lengths)
    warmup = min(cfg.warmup, test_len // 3)  # short test series (unit tests) get a shorter warm-up
    room = test_len - warmup - total
    if room < n:  # need at least a 1-step gap between events and one at the end
        raise ConfigError(
            f"synthetic: anomaly_ratio too high for test_len={test_len}: {total} labelled points "
            f"after a warm-up of {warmup} steps leave no normal gaps; lower anomaly_ratio or raise test_len"
        )
    gap = min(cfg.min_gap, room // n)
    slack = room - gap * n  # n gaps: between events, and one after the last
    cuts = np.sort(rng.integers(0, slack + 1, n))  # n+1 random parts of the slack
    parts = np.diff(np.concatenate([[0], cuts, [slack]]))
    starts, t = [], warmup + int(parts[0])
    for i, length in enumerate(lengths):
        starts.append(t)
        t += length + gap + int(parts[i + 1])
    return starts


def generate_system(
    rng: np.random.Generator,
    *,
    name: str,
    n_sensors: int = 8,
    n_covariates: int = 4,
    train_len: int = 3000,
    test_len: int = 3000,
    anomaly_ratio: float = 0.05,
    system_index: int = 0,
    cfg: SyntheticConfig = SyntheticConfig(),
) -> Entity:
    """One synthetic system (see the module docstring for the model)."""
    S, C = n_sensors, n_covariates
    n_steps = train_len + test_len
    F = min(3, S)
    factors = _Factors(rng, cfg, F)

    # loading matrix: one dominant factor per sensor, every factor dominates at least one sensor
    dominant = rng.permutation(np.arange(S) % F)
    W = rng.normal(0.0, cfg.cross_loading_std, (S, F))
    sign = rng.choice([-1.0, 1.0], S)
    W[np.arange(S), dominant] = sign * rng.uniform(*cfg.dominant_loading, S)

    # covariates and their gains on 1-3 sensors each
    cov, dwells = _covariates(rng, cfg, n_steps, C)
    B = np.zeros((S, C))
    for j in range(C):
        hit = rng.choice(S, size=min(S, int(rng.integers(1, 4))), replace=False)
        B[hit, j] = rng.choice([-1.0, 1.0], len(hit)) * rng.uniform(*cfg.cov_gain, len(hit))
    taus = rng.uniform(*cfg.cov_tau, C) if C else np.zeros(0)
    resp = _lagged_response(cov, taus) if C else np.zeros((n_steps, 0))

    noise_base = _uniform(rng, cfg.noise_base)
    noise_std = noise_base * rng.uniform(*cfg.noise_rel, S)
    scale = 10.0 ** rng.uniform(*cfg.log10_scale, S)
    offset = scale * rng.uniform(*cfg.offset_rel, S)

    f, phases = factors.draw(rng, n_steps)
    noise = rng.standard_normal((n_steps, S)) * noise_std
    clean = f @ W.T + resp @ B.T
    z = clean + noise
    sigma = z[:train_len].std(axis=0)

    # ---- anomaly events (test only), applied in normalised units ----
    budget = int(round(anomaly_ratio * test_len))
    plan = _event_lengths(rng, cfg, budget, system_index)
    starts = _place(rng, cfg, [n for _, n in plan], test_len)
    events = []
    alt_f, _ = factors.draw(rng, n_steps)  # independent latent path for correlation breaks
    stuck_after = []
    fast_first = np.argsort(-np.abs(W[:, 0]), kind="stable")  # sensors by their loading on the fast wave
    for (kind, length), s0 in zip(plan, starts):
        a, b = train_len + s0, train_len + s0 + length  # absolute [a, b)
        lo, hi = cfg.n_hit[kind]
        k = int(min(S, rng.integers(lo, hi + 1)))
        sign = rng.choice([-1.0, 1.0], k)
        if kind == "spike":
            hit = rng.choice(S, size=k, replace=False)
            mag = rng.uniform(*cfg.spike_sigma, (length, k)) * rng.choice([-1.0, 1.0], (length, k))
            z[a:b, hit] += mag * sigma[hit]
        elif kind == "level_shift":
            hit = rng.choice(S, size=k, replace=False)
            z[a:b, hit] += rng.uniform(*cfg.shift_sigma, k) * sign * sigma[hit]
        elif kind == "drift":
            hit = rng.choice(S, size=k, replace=False)
            ramp = (np.arange(1, length + 1) / length)[:, None]
            z[a:b, hit] += ramp * rng.uniform(*cfg.drift_sigma, k) * sign * sigma[hit]
        elif kind == "frequency":
            hit = fast_first[:k]
            m = _uniform(rng, cfg.freq_factor)
            if rng.random() < cfg.freq_speedup_prob:
                m = 1.0 / m
            # phase-continuous: the wave keeps its phase at onset, then its period is multiplied by m
            ph0 = factors.phase(0, np.float64(a), phases[0])
            ph = ph0 + 2.0 * np.pi * np.arange(length) / (factors.periods[0] * m)
            delta = factors.wave(0, ph) - f[a:b, 0]
            z[a:b, hit] += delta[:, None] * W[hit, 0][None, :]
        elif kind == "correlation":
            hit = rng.choice(S, size=k, replace=False)
            fade = np.minimum(1.0, np.arange(1, length + 1) / cfg.corr_fade)[:, None]
            z[a:b, hit] += fade * ((alt_f[a:b] - f[a:b]) @ W[hit].T)
        elif kind == "stuck":
            # sensors that move (fast wave first), else holding a value would look normal
            hit = fast_first[rng.permutation(min(S, max(k, int((dominant == 0).sum()))))[:k]]
            stuck_after.append((a, b, hit))  # applied on raw values, after everything else
        else:  # pragma: no cover - KINDS is closed
            raise AssertionError(kind)
        names = [f"s{i}" for i in sorted(hit)]
        events.append({"start": int(s0), "end": int(s0 + length - 1), "kind": kind, "sensors": names})

    x = offset + scale * z
    for a, b, hit in stuck_after:
        x[a:b, hit] = x[a - 1, hit]

    labels = np.zeros(test_len, dtype=np.int8)
    for e in events:
        labels[e["start"] : e["end"] + 1] = 1

    sensors = [f"s{i}" for i in range(S)]
    covariates = [f"c{j}" for j in range(C)]
    data = np.concatenate([x, cov], axis=1).astype(np.float32)
    factor_kinds = factors.kinds()
    groups = {
        f"f{i}_{factor_kinds[i]}": {"weight": 1.0, "sensors": [sensors[s] for s in range(S) if dominant[s] == i]}
        for i in range(F)
    }
    generator = {
        "config": _plain(asdict(cfg)),
        "anomaly_ratio": float(anomaly_ratio),
        "factor_kinds": factor_kinds,
        "seasonal_periods": [float(p) for p in factors.periods],
        "ar_phi": factors.phi,
        "loadings": W.tolist(),
        "dominant_factor": dominant.tolist(),
        "noise_std": noise_std.tolist(),
        "sigma": sigma.tolist(),
        "scale": scale.tolist(),
        "offset": offset.tolist(),
        "covariate_gain": B.tolist(),
        "covariate_tau": taus.tolist(),
        "covariate_mean_dwell": dwells,
    }
    return Entity(
        name=name,
        system=name,
        train=data[:train_len],
        test=data[train_len:],
        labels=labels,
        columns=sensors + covariates,
        sensors=sensors,
        covariates=covariates,
        meta={"events": events, "groups": groups, "generator": generator, "source": f"synthetic:{name}"},
    )


def _check(n_systems, n_sensors, n_covariates, train_len, test_len, anomaly_ratio, seed) -> None:
    sizes = [("dataset.n_systems", n_systems, 1), ("dataset.n_sensors", n_sensors, 1),
             ("dataset.n_covariates", n_covariates, 0), ("dataset.train_len", train_len, 2),
             ("dataset.test_len", test_len, 1), ("seed", seed, 0)]
    for key, val, lo in sizes:
        if isinstance(val, bool) or not isinstance(val, (int, np.integer, float)) or int(val) != val or val < lo:
            raise ConfigError(f"{key}={val!r}; expected an integer >= {lo}")
    if not 0.0 <= anomaly_ratio < 0.5:
        raise ConfigError(
            f"synthetic loader anomaly_ratio={anomaly_ratio!r}; expected a fraction in [0, 0.5) (0.05 = 5%)"
        )


def load(
    n_systems: int = 4,
    n_sensors: int = 8,
    n_covariates: int = 4,
    train_len: int = 3000,
    test_len: int = 3000,
    anomaly_ratio: float = 0.05,
    seed: int = 0,
    entities: str | Sequence[str] = "all",
    *,
    config: SyntheticConfig | None = None,
) -> list[Entity]:
    """``n_systems`` synthetic systems ``sys0..``, raw (unscaled) values, test anomalies labelled.

    ``entities`` is ``"all"`` or a list of system names to keep (only those are generated).
    ``config`` overrides the generator's finer knobs (:class:`SyntheticConfig`).
    """
    cfg = config if config is not None else SyntheticConfig()
    _check(n_systems, n_sensors, n_covariates, train_len, test_len, anomaly_ratio, seed)
    names = [f"sys{k}" for k in range(int(n_systems))]
    if entities is None or (isinstance(entities, str) and entities == "all"):
        keep = names
    else:
        wanted = [entities] if isinstance(entities, str) else list(entities)
        unknown = [e for e in wanted if e not in names]
        if unknown:
            raise ConfigError(f"dataset.entities: unknown synthetic system(s) {unknown}; available: {names}")
        keep = list(dict.fromkeys(wanted))  # the order asked for, like the other loaders
    out = []
    for name in keep:
        k = names.index(name)
        rng = np.random.default_rng([int(seed), k])
        out.append(
            generate_system(
                rng,
                name=name,
                n_sensors=int(n_sensors),
                n_covariates=int(n_covariates),
                train_len=int(train_len),
                test_len=int(test_len),
                anomaly_ratio=float(anomaly_ratio),
                system_index=k,
                cfg=cfg,
            )
        )
    return out
