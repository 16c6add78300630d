"""M2AD global scoring: per-sensor GMM → p-values → weighted Fisher sum → calibration.

METHODS.md, M2AD steps 4-7. ``M2ADScorer.fit`` takes train errors [T, S] and fits one
Gaussian mixture per sensor plus the calibration of the combined score; ``score`` maps
test errors [T, S] to ``(calibrated_p [T], sensor_p [T, S], combined [T])``.

With ``n_components > 1`` each sensor is an ``sklearn.mixture.GaussianMixture``. With one
component (the method's default) EM has nothing to iterate: every responsibility is 1,
so ``GaussianMixture`` returns, for every covariance type, weight 1, the sample mean and
the biased (ddof=0) sample variance plus ``reg_covar``. ``gaussian_fit`` computes exactly
that for all sensors at once, without sklearn (a test checks it against
``GaussianMixture(n_components=1)`` for each covariance type). It uses two-pass
variance with pairwise sums, whereas sklearn's spherical, diag and tied estimates use
``E[x^2] - E[x]^2``. The two agree to rounding (~1e-14 relative on M2AD-like errors). When
the mean is large against the spread they drift apart, and the closed form is the exact
one (sklearn is ~1e-10 off at mean/std = 1000).

The mixture CDF ``sum_k w_k Phi((x - mu_k) / sigma_k)`` is evaluated with
``scipy.special.ndtr`` on one broadcast [rows, S, K] block per chunk of rows, instead of
the reference's ``np.vectorize`` over ``statistics.NormalDist`` (``scripts/bench_m2ad.py``
measures the difference). The one-sided p-value is the survival function summed per
component (``ndtr(-z)``), not ``1 - CDF``, so small p-values keep their precision; they
differ from the reference's ``1 - CDF`` by at most ~1e-16 in absolute terms.

Missing rows: a row whose errors are all NaN is "not scored" (e.g. the first window of a
forecaster). It is ignored by ``fit`` and gets NaN in every output of ``score`` (and
``flags`` is False there). A row with only some NaN, or any infinity, raises
``ValueError`` naming the row: a broken residual is an error, not a gap.

Calibrations (``calibration=``):

* ``"gamma"`` (the method): Gamma fitted to train ``s`` by the method of moments,
  ``shape = mean^2 / var``, ``scale = var / mean``; ``p = gamma.sf(s, shape, scale=scale)``.
* ``"chi2"``: Fisher's null. Each ``f_i = -2 ln p_i`` is chi^2 with 2 dof, so with unit
  weights ``s ~ chi^2(2n)``. With general weights ``s`` is a weighted sum of chi^2(2)
  terms; it is matched by moments (Satterthwaite) to ``c * chi^2(nu)`` with
  ``c = sum w^2 / sum w`` and ``nu = 2 (sum w)^2 / sum w^2``, so ``p = chi2.sf(s / c, nu)``.
  Unit weights give ``c = 1``, ``nu = 2n`` exactly; sensors with weight 0 drop out.
  The fitted ``chi2_df_`` and ``chi2_scale_`` are exposed.
* ``"std4"``: flagged when ``s > mean + 4 std`` of train ``s`` (population std). The
  returned "p" is the Gaussian tail of the standardised score,
  ``p = norm.sf((s - mean) / std)``: monotone in ``s`` (smaller = more anomalous), and
  ``flags`` uses ``p < norm.sf(4)``, which is the 4-sigma rule; ``alpha`` is not used.

Uncalibrated: when the calibration cannot be fitted (gamma or std4 with a zero or
non-finite variance of train ``s``, where a relative spread std/mean < 1e-12
counts as zero; chi2 with all weights zero), ``fit`` emits an
``UncalibratedWarning``, sets ``calibrated_ = False`` and ``score`` returns
``calibrated_p = 1.0`` on every scored row (NaN on missing rows), so nothing is flagged.
The reference does the same in effect (its Gamma with shape 0 yields NaN p-values, which
never pass the threshold). No division by zero happens on this path.

Weights (M2AD step 5): ``weights=None`` makes every sensor its own group of weight 1.
Otherwise ``weights = {group: {"weight": w, "sensors": [name, ...]}}``; each group's
weight is split equally among its sensors, and a sensor listed in several groups sums
its shares. Sensors in no group get weight 0 (with a warning). A listed name that is not
a sensor raises ``ValueError`` with the available names. ``reference_quirks=True``
reproduces the reference's substring matching: a group matches every sensor whose name
*contains* one of the group's names (sensor '1' also matches '10', '21', ...), the
group's weight is split by the number of matches, and the per-sensor weight list is
built the reference's way (one entry per (sensor, matching group) pair, then read by
sensor position), which misaligns weights once a sensor matches two groups. This also
applies to the default groups (``weights=None``), exactly as in the reference.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.special import log_ndtr, logsumexp, ndtr
from sklearn.mixture import GaussianMixture

from madbench.scoring.errors import missing_rows
from madbench.scoring.intervals import intervals

__all__ = ["M2ADScorer", "UncalibratedWarning", "intervals", "mixture_pvalues", "mixture_log_pvalues",
           "gaussian_fit", "top_sensors",
           "group_weights", "CALIBRATIONS", "DISTRIBUTIONS", "COVARIANCE_TYPES"]

CALIBRATIONS = ("gamma", "chi2", "std4")
DISTRIBUTIONS = ("gmm", "normal")
COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")  # GaussianMixture's
P_FLOOR = 1e-16
STD_RULE = 4.0
# Rows per CDF block: keeps the [rows, S, K] temporaries around 32 MiB each.
_BLOCK_ELEMENTS = 1 << 22


class UncalibratedWarning(UserWarning):
    """The combined score could not be calibrated; p-values are set to 1 (see module doc)."""


def mixture_pvalues(x: np.ndarray, means: np.ndarray, sigmas: np.ndarray,
                    mix: np.ndarray, two_sided: bool = False) -> np.ndarray:
    """p-values [T, S] of ``x`` [T, S] under per-sensor Gaussian mixtures [S, K].

    One-sided: ``sum_k w_k Phi(-(x - mu)/sigma)`` (the survival function). Two-sided:
    ``2 min(CDF, SF)``. Padding components carry weight 0. No clipping here. NaN in ``x``
    gives NaN.
    """
    t, s = x.shape
    k = means.shape[1]
    out = np.empty((t, s))
    step = max(1, _BLOCK_ELEMENTS // max(1, s * k))
    # Components go first, [K, rows, S], so the mixture sum is K contiguous
    # multiply-adds rather than a reduction over a short trailing axis.
    mu, sd, w = means.T[:, None, :], sigmas.T[:, None, :], mix.T[:, None, :]
    single = k == 1 and np.all(mix == 1.0)
    for a in range(0, t, step):
        z = x[None, a:a + step] - mu
        z /= sd
        if two_sided:
            # One ndtr call for both tails: the smaller tail ndtr(-|z|) is exact, and the
            # larger one (>= 0.5) loses nothing as 1 - smaller; ndtr does the same inside.
            small = ndtr(-np.abs(z))
            pos = z >= 0
            sf = np.where(pos, small, 1.0 - small)
            cdf = np.where(pos, 1.0 - small, small)
        else:
            sf = ndtr(np.negative(z, out=z), out=z)
        if single:
            sf = sf[0]
            cdf = cdf[0] if two_sided else None
        else:
            sf = _mix_sum(sf, w)
            cdf = _mix_sum(cdf, w) if two_sided else None
        if two_sided:
            np.minimum(cdf, sf, out=sf)
            sf *= 2.0
        out[a:a + step] = sf
    return out


def mixture_log_pvalues(x: np.ndarray, means: np.ndarray, sigmas: np.ndarray,
                        mix: np.ndarray, two_sided: bool = False) -> np.ndarray:
    """``ln p`` [T, S] of :func:`mixture_pvalues`, exact in the far tail: ``log_ndtr``
    and ``logsumexp`` over the components, so p-values far below the 1e-16 floor of the
    Fisher sum (z > 8.2) and below float64's range (z > 37.5) keep their order. Not used by
    the score; it ranks sensors (``madbench.attribution``, ``attribution=pvalue``). NaN in
    ``x`` gives NaN."""
    t, s = x.shape
    k = means.shape[1]
    out = np.empty((t, s))
    step = max(1, _BLOCK_ELEMENTS // max(1, s * k))
    with np.errstate(divide="ignore"):
        log_w = np.log(mix)[None]                      # [1, S, K]; padding components -> -inf
    for a in range(0, t, step):
        z = (x[a:a + step, :, None] - means[None]) / sigmas[None]
        log_sf = logsumexp(log_ndtr(-z) + log_w, axis=-1)
        if two_sided:
            log_cdf = logsumexp(log_ndtr(z) + log_w, axis=-1)
            log_sf = np.log(2.0) + np.minimum(log_cdf, log_sf)
        out[a:a + step] = log_sf
    return out


def gaussian_fit(x: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sensor mean [S] and variance + ``reg_covar`` [S] of ``x`` [T, S] (ddof=0).

    This is what ``GaussianMixture(n_components=1)`` converges to for any covariance type
    (see the module doc). Blocks of sensors are copied to [S, T] first (a fresh copy, as
    it is centred in place), so the sums along time are numpy's pairwise sums; a reduction
    over axis 0 of [T, S] would add row by row, tens of times less precise at T = 1e5.
    """
    t, s = x.shape
    mean, var = np.empty(s), np.empty(s)
    step = max(1, _BLOCK_ELEMENTS // max(1, t))
    for a in range(0, s, step):
        block = x[:, a:a + step].T.copy()
        mean[a:a + step] = m = block.mean(axis=1)
        block -= m[:, None]
        np.square(block, out=block)
        var[a:a + step] = block.mean(axis=1)
    var += reg_covar
    return mean, var


def _mix_sum(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_k w[k] * values[k] for values [K, rows, S], w [K, 1, S]."""
    total = values[0] * w[0]
    for j in range(1, values.shape[0]):
        total += values[j] * w[j]
    return total


def _exact_weights(groups: dict, names: list[str]) -> np.ndarray:
    pos = {n: i for i, n in enumerate(names)}
    w = np.zeros(len(names))
    for g, spec in groups.items():
        members = list(dict.fromkeys(spec["sensors"]))
        for m in members:
            w[pos[m]] += spec["weight"] / len(members)
    return w


def _quirk_weights(groups: dict, names: list[str]) -> np.ndarray:
    # The reference: a group's weight is divided by the number of sensors whose name
    # contains the group's key; then one weight is listed per (sensor, matching group)
    # pair in sensor order, and sensor i takes the i-th entry of that list.
    def hits(spec, sensor):
        return any(str(m) in sensor for m in spec["sensors"])

    share = {}
    for g, spec in groups.items():
        n = sum(hits(spec, s) for s in names)
        share[g] = spec["weight"] / n if n else 0.0
    flat = [share[g] for s in names for g, spec in groups.items() if hits(spec, s)]
    if len(flat) < len(names):
        raise ValueError(
            f"reference_quirks: the substring-matched weight list has {len(flat)} entries for "
            f"{len(names)} sensors (the reference would fail here); sensors: {names}"
        )
    return np.asarray(flat[:len(names)], dtype=np.float64)


def group_weights(weights: dict | None, names: list[str], reference_quirks: bool = False) -> np.ndarray:
    """Per-sensor Fisher weights [S] from sensor groups (see module doc)."""
    names = [str(n) for n in names]
    if weights is None:
        groups = {n: {"weight": 1.0, "sensors": [n]} for n in names}
    else:
        if not isinstance(weights, dict):
            raise ValueError(f"weights must be None or a dict of groups, got {type(weights).__name__}")
        groups = {}
        for g, spec in weights.items():
            try:
                w, members = spec["weight"], spec["sensors"]
            except (TypeError, KeyError):
                raise ValueError(f"weights group {g!r} must be {{'weight': w, 'sensors': [...]}}, got {spec!r}") from None
            if isinstance(members, str):
                members = [members]
            members = [str(m) for m in members]
            w = float(w)
            if not np.isfinite(w) or w < 0:
                raise ValueError(f"weights group {g!r}: weight must be finite and >= 0, got {w}")
            if not members:
                raise ValueError(f"weights group {g!r} lists no sensors")
            if reference_quirks:
                unknown = [m for m in members if not any(m in n for n in names)]
            else:
                unknown = [m for m in members if m not in names]
            if unknown:
                raise ValueError(f"weights group {g!r} names unknown sensor(s) {unknown}; available sensors: {names}")
            groups[g] = {"weight": w, "sensors": members}
    if reference_quirks:
        return _quirk_weights(groups, names)
    w = _exact_weights(groups, names)
    if weights is not None:
        listed = {m for spec in groups.values() for m in spec["sensors"]}
        orphans = [n for n in names if n not in listed]
        if orphans:
            warnings.warn(f"sensors in no weight group get weight 0: {orphans}", UserWarning, stacklevel=3)
    return w


def top_sensors(sensor_p: np.ndarray, start: int, end: int, names: list[str], k: int = 3) -> list[str]:
    """The ``k`` sensors with the strongest evidence over steps ``start..end`` (inclusive):
    the largest mean Fisher term −2 ln p, i.e. the sensors that drove an alarm there.
    Unscored (NaN) steps are ignored; a sensor with none scored in the span is left out."""
    span = np.asarray(sensor_p, dtype=np.float64)[start:end + 1]
    if span.ndim != 2 or span.shape[1] != len(names):
        raise ValueError(f"sensor_p must be [T, {len(names)}] for {len(names)} names, got {np.shape(sensor_p)}")
    scored = np.isfinite(span)
    if not scored.any():
        return []
    terms = np.where(scored, -2.0 * np.log(np.where(scored, span, 1.0)), 0.0)
    counts = scored.sum(0)
    mean = np.where(counts > 0, terms.sum(0) / np.maximum(counts, 1), -np.inf)
    order = np.argsort(-mean, kind="stable")[: min(k, int((counts > 0).sum()))]
    return [str(names[i]) for i in order]


class M2ADScorer:
    """M2AD scoring: per-sensor GMM p-values, weighted Fisher sum, calibrated p-value.

    Parameters
    ----------
    n_components : int
        Components of each sensor's GaussianMixture (``distribution="gmm"``).
    covariance_type : {"spherical", "diag", "full", "tied"}
        GaussianMixture covariance type; every type reduces to one variance per
        component for a single sensor, and with one component they all give the same fit.
    two_sided : bool
        False: ``p = 1 - CDF`` (point errors). True: ``p = 2 min(CDF, 1 - CDF)`` (area).
    distribution : {"gmm", "normal"}
        "normal" fits one Gaussian per sensor by its sample mean and variance, plus
        sklearn's ``reg_covar`` (1e-6) so it equals a 1-component GaussianMixture and
        never has sigma = 0. "gmm" with ``n_components=1`` is the same fit.
    calibration : {"gamma", "chi2", "std4"}
        See the module doc.
    weights : dict | None
        Sensor groups, see the module doc.
    alpha : float
        ``flags`` threshold on the calibrated p-value (gamma, chi2).
    random_state : int | None
        Passed to every GaussianMixture (``n_components > 1``; one component has no
        random initialisation to seed).
    reference_quirks : bool
        Substring group matching as in the reference.
    reg_covar : float
        Added to every variance, as GaussianMixture's ``reg_covar`` (>= 0).

    Fitted attributes: ``sensor_names_``, ``n_features_in_``, ``weights_`` [S],
    ``means_``, ``sigmas_``, ``mix_weights_`` [S, K_max] (zero-weight padding),
    ``gmms_`` (the sklearn models; None where none is fitted: "normal", or one component),
    ``train_combined_`` [T_train],
    ``calibrated_``, ``threshold_p_`` and per calibration ``gamma_shape_``,
    ``gamma_scale_`` / ``chi2_df_``, ``chi2_scale_`` / ``train_mean_``, ``train_std_``.
    """

    def __init__(self, n_components: int = 1, covariance_type: str = "spherical",
                 two_sided: bool = False, distribution: str = "gmm", calibration: str = "gamma",
                 weights: dict | None = None, alpha: float = 0.001, random_state: int | None = 0,
                 reference_quirks: bool = False, reg_covar: float = 1e-6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.two_sided = two_sided
        self.distribution = distribution
        self.calibration = calibration
        self.weights = weights
        self.alpha = alpha
        self.random_state = random_state
        self.reference_quirks = reference_quirks
        self.reg_covar = reg_covar

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}, got {self.distribution!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {self.calibration!r}")
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, (int, np.integer)) \
                or self.n_components < 1:
            raise ValueError(f"n_components must be an int >= 1, got {self.n_components!r}")
        if not (0 < float(self.alpha) < 1):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {list(COVARIANCE_TYPES)}, got {self.covariance_type!r}")
        if not (np.isfinite(float(self.reg_covar)) and float(self.reg_covar) >= 0):
            raise ValueError(f"reg_covar must be finite and >= 0, got {self.reg_covar!r}")

    @staticmethod
    def _as_errors(x, name: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"{name}: expected a [T, S] array with S >= 1, got shape {x.shape}")
        return x

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise RuntimeError("M2ADScorer is not fitted; call fit(train_errors) first")

    def _fisher(self, x: np.ndarray):
        """Sensor p-values (clipped) and combined score for finite rows."""
        p = mixture_pvalues(x, self.means_, self.sigmas_, self.mix_weights_, self.two_sided)
        np.maximum(p, P_FLOOR, out=p)
        combined = (-2.0 * np.log(p)) @ self.weights_
        return p, combined

    # ------------------------------------------------------------------ fit
    def _fit_mixture(self, col: np.ndarray):
        """One sensor's sklearn GaussianMixture (n_components > 1)."""
        gmm = GaussianMixture(n_components=int(self.n_components), covariance_type=self.covariance_type,
                              reg_covar=self.reg_covar, random_state=self.random_state)
        gmm.fit(col[:, None])
        k = gmm.n_components
        var = np.broadcast_to(np.asarray(gmm.covariances_, dtype=np.float64).ravel(), (k,))
        return gmm, gmm.means_.ravel().astype(np.float64), np.sqrt(var), gmm.weights_.astype(np.float64)

    def fit(self, train_errors, sensor_names=None) -> "M2ADScorer":
        """Fit the per-sensor models and the calibration on train errors [T, S]."""
        self._check_params()
        x = self._as_errors(train_errors, "train_errors")
        s = x.shape[1]
        names = [str(i) for i in range(s)] if sensor_names is None else [str(n) for n in sensor_names]
        if len(names) != s:
            raise ValueError(f"{len(names)} sensor names for {s} error columns")
        if len(set(names)) != len(names):
            raise ValueError(f"sensor names must be unique, got {names}")
        x = x[~missing_rows(x, "train_errors", names)]
        if x.shape[0] < max(2, int(self.n_components)):
            raise ValueError(f"train_errors: {x.shape[0]} scored rows, need at least {max(2, int(self.n_components))}")

        weights = group_weights(self.weights, names, self.reference_quirks)

        if self.distribution == "normal" or int(self.n_components) == 1:
            mu, var = gaussian_fit(x, float(self.reg_covar))
            means, sigmas, mix, gmms = mu[:, None], np.sqrt(var)[:, None], np.ones((s, 1)), None
        else:
            fitted = [self._fit_mixture(x[:, i]) for i in range(s)]
            k_max = max(len(f[1]) for f in fitted)
            means = np.zeros((s, k_max))
            sigmas = np.ones((s, k_max))
            mix = np.zeros((s, k_max))
            for i, (_, mu, sd, w) in enumerate(fitted):
                means[i, :len(mu)], sigmas[i, :len(sd)], mix[i, :len(w)] = mu, sd, w
            gmms = [f[0] for f in fitted]

        self.sensor_names_ = names
        self.n_features_in_ = s
        self.weights_ = weights
        self.gmms_ = gmms
        self.means_, self.sigmas_, self.mix_weights_ = means, sigmas, mix
        _, combined = self._fisher(x)
        self.train_combined_ = combined
        self._fit_calibration(combined)
        return self

    def _uncalibrated(self, why: str) -> None:
        warnings.warn(f"M2AD calibration '{self.calibration}' not fitted: {why}; "
                      "calibrated p-values are set to 1 (nothing flagged)", UncalibratedWarning, stacklevel=3)
        self.calibrated_ = False

    def _fit_calibration(self, s: np.ndarray) -> None:
        self.calibrated_ = True
        self.threshold_p_ = float(self.alpha)
        mean, var = float(np.mean(s)), float(np.var(s))
        # A constant s has var ~ 1e-33 rather than 0 once its mean is rounded; a relative
        # spread below 1e-12 carries no information, so it counts as zero variance.
        if np.isfinite(var) and var <= (1e-12 * abs(mean)) ** 2:
            var = 0.0
        self.train_mean_, self.train_std_ = mean, float(np.sqrt(var))
        if self.calibration == "gamma":
            self.gamma_shape_ = self.gamma_scale_ = np.nan
            if not (np.isfinite(var) and var > 0 and mean > 0):
                self._uncalibrated(f"variance of the train combined score is {var} (mean {mean})")
                return
            self.gamma_shape_ = mean * mean / var
            self.gamma_scale_ = var / mean
        elif self.calibration == "chi2":
            sw, sw2 = float(self.weights_.sum()), float((self.weights_ ** 2).sum())
            self.chi2_df_ = self.chi2_scale_ = np.nan
            if not (sw > 0 and sw2 > 0):
                self._uncalibrated("all sensor weights are zero")
                return
            self.chi2_scale_ = sw2 / sw
            self.chi2_df_ = 2.0 * sw * sw / sw2
        else:  # std4
            self.threshold_p_ = float(stats.norm.sf(STD_RULE))
            if not (np.isfinite(var) and var > 0):
                self._uncalibrated(f"variance of the train combined score is {var}")

    def _calibrate(self, s: np.ndarray) -> np.ndarray:
        if not self.calibrated_:
            return np.ones_like(s)
        if self.calibration == "gamma":
            return stats.gamma.sf(s, a=self.gamma_shape_, scale=self.gamma_scale_)
        if self.calibration == "chi2":
            return stats.chi2.sf(s / self.chi2_scale_, df=self.chi2_df_)
        return stats.norm.sf((s - self.train_mean_) / self.train_std_)

    # ------------------------------------------------------------------ score
    def score(self, test_errors):
        """``(calibrated_p [T], sensor_p [T, S], combined [T])`` for errors [T, S].

        ``sensor_p`` is clipped to >= 1e-16; ``combined`` is ``sum_i w_i (-2 ln p_i)``.
        All three are NaN on rows whose errors are all NaN.
        """
        self._check_fitted()
        x = self._as_errors(test_errors, "test_errors")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"test_errors has {x.shape[1]} sensors, the scorer was fitted on {self.n_features_in_}")
        missing = missing_rows(x, "test_errors", self.sensor_names_)
        if not missing.any():
            sensor_p, combined = self._fisher(x)
            return self._calibrate(combined), sensor_p, combined
        t = x.shape[0]
        sensor_p = np.full(x.shape, np.nan)
        combined = np.full(t, np.nan)
        calibrated = np.full(t, np.nan)
        if (~missing).any():
            p, s = self._fisher(x[~missing])
            sensor_p[~missing], combined[~missing] = p, s
            calibrated[~missing] = self._calibrate(s)
        return calibrated, sensor_p, combined

    def sensor_log_pvalues(self, test_errors) -> np.ndarray:
        """Unclipped ``ln p`` [T, S] of every sensor (:func:`mixture_log_pvalues`): the
        per-sensor evidence that ranks sensors; NaN on rows whose errors are all NaN."""
        self._check_fitted()
        x = self._as_errors(test_errors, "test_errors")
        missing = missing_rows(x, "test_errors", self.sensor_names_)
        out = np.full(x.shape, np.nan)
        if (~missing).any():
            out[~missing] = mixture_log_pvalues(x[~missing], self.means_, self.sigmas_, self.mix_weights_,
                                                self.two_sided)
        return out

    def flags(self, calibrated_p) -> np.ndarray:
        """bool [T]: ``p < alpha`` (gamma, chi2) or the 4-sigma rule (std4); NaN → False."""
        self._check_fitted()
        p = np.asarray(calibrated_p, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return p < self.threshold_p_
