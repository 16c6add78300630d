"""M2ADScorer against independent computations: NormalDist loops, scipy per component,
sklearn's GaussianMixture, exact rational arithmetic."""
import importlib.util
import math
import pathlib
import statistics
import textwrap
import warnings

import numpy as np
import pytest
from scipy import stats

import madbench.scoring.m2ad as m2ad
from madbench.scoring.m2ad import COVARIANCE_TYPES, M2ADScorer, UncalibratedWarning, gaussian_fit, group_weights

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bimodal(rng, t, s):
    x = np.where(rng.random((t, s)) < 0.6, rng.normal(0.0, 1.0, (t, s)), rng.normal(4.0, 0.5, (t, s)))
    return x + np.arange(s)  # different location per sensor


def independent_p(model, x, two_sided):
    """Loop over rows, sensors and components with statistics.NormalDist."""
    t, s = x.shape
    p = np.empty((t, s))
    for j, g in enumerate(model.gmms_):
        mu = g.means_.ravel()
        sd = np.sqrt(np.broadcast_to(g.covariances_.ravel(), mu.shape))
        for i in range(t):
            cdf = sum(w * statistics.NormalDist(m, v).cdf(x[i, j]) for w, m, v in zip(g.weights_, mu, sd))
            sf = sum(w * stats.norm.sf(x[i, j], m, v) for w, m, v in zip(g.weights_, mu, sd))
            p[i, j] = 2 * min(cdf, 1 - cdf) if two_sided else sf
    return np.maximum(p, 1e-16)


@pytest.fixture(scope="module")
def errs():
    rng = np.random.default_rng(0)
    return bimodal(rng, 400, 3), bimodal(rng, 120, 3)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("two_sided", [False, True])
def test_sensor_pvalues_match_independent(errs, k, two_sided):
    train, test = errs
    m = M2ADScorer(n_components=k, two_sided=two_sided).fit(train)
    assert all(g.n_components == k for g in m.gmms_)
    cal, sp, comb = m.score(test)
    ref = independent_p(m, test, two_sided)
    np.testing.assert_allclose(sp, ref, rtol=1e-9, atol=1e-15)
    f = -2 * np.log(ref)
    np.testing.assert_allclose(comb, [sum(f[i]) for i in range(len(f))], rtol=1e-9)
    # gamma method of moments on the train combined score, computed independently
    s_train = (-2 * np.log(independent_p(m, train, two_sided))).sum(axis=1)
    mean, var = s_train.mean(), s_train.var()
    assert m.gamma_shape_ == pytest.approx(mean**2 / var, rel=1e-9)
    assert m.gamma_scale_ == pytest.approx(var / mean, rel=1e-9)
    np.testing.assert_allclose(cal, stats.gamma(a=mean**2 / var, scale=var / mean).sf(comb), rtol=1e-7)
    np.testing.assert_array_equal(m.flags(cal), cal < 0.001)


def test_two_sided_is_symmetric_and_one_at_the_mean():
    rng = np.random.default_rng(3)
    m = M2ADScorer(two_sided=True).fit(rng.normal(2.0, 1.0, (500, 1)))
    mu, sd = m.means_[0, 0], m.sigmas_[0, 0]
    _, sp, _ = m.score(np.array([[mu], [mu - 1.5 * sd], [mu + 1.5 * sd]]))
    assert sp[0, 0] == pytest.approx(1.0)
    assert sp[1, 0] == pytest.approx(sp[2, 0], rel=1e-12)
    assert sp[1, 0] == pytest.approx(2 * stats.norm.sf(1.5), rel=1e-12)


def test_clipping_at_1e16_and_precision_of_small_p():
    rng = np.random.default_rng(4)
    m = M2ADScorer().fit(rng.normal(0, 1, (300, 2)))
    mu, sd = m.means_[:, 0], m.sigmas_[:, 0]
    x = np.array([mu + 50 * sd, mu + 7 * sd])
    _, sp, comb = m.score(x)
    assert (sp[0] == 1e-16).all()
    assert comb[0] == pytest.approx(2 * (-2 * math.log(1e-16)))
    # 7 sigma: p ~ 1.3e-12, where 1 - CDF would have lost ~4 digits
    np.testing.assert_allclose(sp[1], stats.norm.sf(7.0), rtol=1e-10)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("two_sided", [False, True])
def test_log_pvalues_are_unclipped_log_of_the_pvalues(errs, k, two_sided):
    """ln p for the attribution: equal to ln of the independent p where p is not clipped,
    and scipy's logsf (per component, mixed) far beyond the 1e-16 clip and float64's range."""
    train, test = errs
    m = M2ADScorer(n_components=k, two_sided=two_sided).fit(train)
    lp = m.sensor_log_pvalues(test)
    if k > 1:
        ref = independent_p(m, test, two_sided)
        ok = ref > 1e-15
        np.testing.assert_allclose(lp[ok], np.log(ref[ok]), rtol=1e-9)
    mu, sd, w = m.means_, m.sigmas_, m.mix_weights_
    far = np.array([mu[:, 0] + 12 * sd[:, 0], mu[:, 0] + 60 * sd[:, 0]])      # p ~ 1e-33 and ~ 1e-785
    got = m.sensor_log_pvalues(far)
    for i in range(2):
        for j in range(3):
            terms = [math.log(w[j, c]) + stats.norm.logsf(far[i, j], mu[j, c], sd[j, c])
                     for c in range(w.shape[1]) if w[j, c] > 0]
            log_sf = float(np.logaddexp.reduce(terms))
            if two_sided:
                cdf_terms = [math.log(w[j, c]) + stats.norm.logcdf(far[i, j], mu[j, c], sd[j, c])
                             for c in range(w.shape[1]) if w[j, c] > 0]
                log_sf = math.log(2) + min(log_sf, float(np.logaddexp.reduce(cdf_terms)))
            assert got[i, j] == pytest.approx(log_sf, rel=1e-9)
    # both are far below the clip, where sensor_p ties at 1e-16; ln p keeps them apart
    assert (m.score(far)[1] == 1e-16).all() and (got[1] < got[0]).all()
    nan_row = np.vstack([test[:2], np.full((1, 3), np.nan)])
    assert np.isnan(m.sensor_log_pvalues(nan_row)[2]).all()


def test_two_sided_small_lower_tail_keeps_precision():
    rng = np.random.default_rng(4)
    m = M2ADScorer(two_sided=True).fit(rng.normal(0, 1, (300, 1)))
    mu, sd = m.means_[0, 0], m.sigmas_[0, 0]
    _, sp, _ = m.score(np.array([[mu - 7 * sd], [mu + 7 * sd]]))
    np.testing.assert_allclose(sp[:, 0], 2 * stats.norm.sf(7.0), rtol=1e-10)


def test_gmms_are_sklearn_fits_with_the_random_state(errs):
    from sklearn.mixture import GaussianMixture
    train, _ = errs
    m = M2ADScorer(n_components=3, covariance_type="diag", random_state=7).fit(train)
    for j, g in enumerate(m.gmms_):
        ref = GaussianMixture(3, covariance_type="diag", random_state=7).fit(train[:, j:j + 1])
        np.testing.assert_allclose(g.means_, ref.means_, rtol=1e-12)
        np.testing.assert_allclose(m.sigmas_[j], np.sqrt(ref.covariances_.ravel()), rtol=1e-12)
        np.testing.assert_allclose(m.mix_weights_[j], ref.weights_, rtol=1e-12)


def test_normal_equals_one_component_gmm(errs):
    train, test = errs
    a = M2ADScorer(distribution="normal").fit(train)
    b = M2ADScorer(n_components=1).fit(train)
    assert a.gmms_ is None and b.gmms_ is None  # one component: closed form, no sklearn model
    np.testing.assert_allclose(a.means_, train.mean(axis=0)[:, None], rtol=1e-12)
    for ra, rb in zip(a.score(test), b.score(test)):
        np.testing.assert_array_equal(ra, rb)


def m2ad_like_errors(rng, t, s):
    """Positive, skewed, small-scale errors like smoothed residuals, so that reg_covar (1e-6)
    is a visible part of each variance (1e-4 .. 4e-2 of it)."""
    return rng.gamma(rng.uniform(1.5, 4.0, s), rng.uniform(0.004, 0.05, s), (t, s))


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_component_closed_form_equals_sklearn(covariance_type, two_sided):
    from sklearn.mixture import GaussianMixture
    rng = np.random.default_rng(11)
    train, test = m2ad_like_errors(rng, 3000, 4), m2ad_like_errors(rng, 500, 4)
    test[::50] *= 8  # some far-out steps: small p-values
    for reg_covar in (1e-6, 1e-4):
        m = M2ADScorer(n_components=1, covariance_type=covariance_type, two_sided=two_sided,
                       reg_covar=reg_covar).fit(train)
        assert m.gmms_ is None
        _, sp, _ = m.score(test)
        for j in range(train.shape[1]):
            g = GaussianMixture(1, covariance_type=covariance_type, reg_covar=reg_covar,
                                random_state=0).fit(train[:, j:j + 1])
            mu, var = g.means_.item(), np.asarray(g.covariances_).item()
            assert g.weights_.item() == m.mix_weights_[j, 0] == 1.0
            assert m.means_[j, 0] == pytest.approx(mu, rel=1e-12, abs=0)
            assert m.sigmas_[j, 0] ** 2 == pytest.approx(var, rel=1e-12, abs=0)
            # p-values from sklearn's parameters, by scipy: the same to 1e-12
            sf = stats.norm.sf(test[:, j], mu, np.sqrt(var))
            ref = 2 * np.minimum(sf, stats.norm.cdf(test[:, j], mu, np.sqrt(var))) if two_sided else sf
            assert ref.min() < 1e-6  # the tail is exercised
            np.testing.assert_allclose(sp[:, j], np.maximum(ref, 1e-16), rtol=1e-12, atol=0)


def test_covariance_types_are_sklearns():
    # GaussianMixture's documented covariance_type options: the closed-form test covers each
    assert sorted(COVARIANCE_TYPES) == ["diag", "full", "spherical", "tied"]


def test_closed_form_is_exact_where_mean_dwarfs_spread():
    """mean/std = 1e4: exact rational arithmetic is the reference; the closed form is as close
    to it as sklearn's GaussianMixture or closer (sklearn's one-pass E[x^2] - E[x]^2
    cancels), and the input is left as it was."""
    from sklearn.mixture import GaussianMixture
    rng = np.random.default_rng(12)
    x = 1e4 + rng.normal(0.0, 1.0, (4000, 1))
    before = x.copy()
    mean, var = gaussian_fit(x, 1e-6)
    np.testing.assert_array_equal(x, before)
    exact_mean = statistics.fmean(x[:, 0])             # fsum: correctly rounded
    exact_var = statistics.pvariance(x[:, 0].tolist())  # exact fractions, then rounded
    assert mean[0] == pytest.approx(exact_mean, rel=1e-15, abs=0)
    assert var[0] == pytest.approx(exact_var + 1e-6, rel=1e-14, abs=0)
    for ct in ("spherical", "diag", "tied"):
        sk = np.asarray(GaussianMixture(1, covariance_type=ct, random_state=0).fit(x).covariances_).item()
        assert abs(var[0] - (exact_var + 1e-6)) <= abs(sk - (exact_var + 1e-6))


def test_closed_form_in_blocks_equals_one_block(monkeypatch):
    x = m2ad_like_errors(np.random.default_rng(13), 200, 7)
    full = gaussian_fit(x, 1e-6)
    monkeypatch.setattr(m2ad, "_BLOCK_ELEMENTS", 450)  # two sensors per block, the last alone
    for a, b in zip(full, gaussian_fit(x, 1e-6)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(full[0], x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(full[1], x.var(axis=0) + 1e-6, rtol=1e-12)


def test_chunked_cdf_equals_single_block(errs, monkeypatch):
    train, test = errs
    m = M2ADScorer(n_components=2, two_sided=True).fit(train)
    full = m.score(test)
    monkeypatch.setattr(m2ad, "_BLOCK_ELEMENTS", 7)
    for a, b in zip(full, m.score(test)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- weights
def test_group_weights_split_equally_and_validate():
    names = ["a", "b", "c", "d"]
    w = group_weights({"g1": {"weight": 3, "sensors": ["a", "b", "c"]},
                       "g2": {"weight": 0.5, "sensors": ["d"]}}, names)
    np.testing.assert_allclose(w, [1, 1, 1, 0.5])
    np.testing.assert_allclose(group_weights(None, names), [1, 1, 1, 1])
    with pytest.warns(UserWarning, match="no weight group"):
        w = group_weights({"g": {"weight": 2, "sensors": ["a", "b"]}}, names)
    np.testing.assert_allclose(w, [1, 1, 0, 0])
    with pytest.raises(ValueError, match=r"unknown sensor\(s\) \['zz'\].*\['a', 'b', 'c', 'd'\]"):
        group_weights({"g": {"weight": 1, "sensors": ["a", "zz"]}}, names)
    with pytest.raises(ValueError, match="weight"):
        group_weights({"g": {"weight": -1, "sensors": ["a"]}}, names)
    with pytest.raises(ValueError, match="must be"):
        group_weights({"g": [1, "a"]}, names)


def test_substring_quirk_on_names_1_and_10():
    names = ["1", "10"]
    np.testing.assert_allclose(group_weights(None, names), [1.0, 1.0])
    # reference: '1' matches both sensors -> 1/2; the list [0.5 (for '1'), 0.5, 1.0 (for '10')]
    # is read by position, so sensor '10' gets 0.5 too
    np.testing.assert_allclose(group_weights(None, names, reference_quirks=True), [0.5, 0.5])
    groups = {"one": {"weight": 2, "sensors": ["1"]}, "ten": {"weight": 4, "sensors": ["10"]}}
    np.testing.assert_allclose(group_weights(groups, names), [2.0, 4.0])
    np.testing.assert_allclose(group_weights(groups, names, reference_quirks=True), [1.0, 1.0])

    rng = np.random.default_rng(5)
    train, test = rng.normal(size=(300, 2)), rng.normal(size=(50, 2))
    exact = M2ADScorer(weights=groups).fit(train, sensor_names=names)
    quirk = M2ADScorer(weights=groups, reference_quirks=True).fit(train, sensor_names=names)
    _, sp, c_exact = exact.score(test)
    _, _, c_quirk = quirk.score(test)
    f = -2 * np.log(sp)
    np.testing.assert_allclose(c_exact, 2 * f[:, 0] + 4 * f[:, 1], rtol=1e-12)
    np.testing.assert_allclose(c_quirk, f[:, 0] + f[:, 1], rtol=1e-12)
    assert not np.allclose(c_exact, c_quirk)


def test_scorer_unknown_sensor_and_name_count():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"available sensors: \['p', 'q'\]"):
        M2ADScorer(weights={"g": {"weight": 1, "sensors": ["r"]}}).fit(x, sensor_names=["p", "q"])
    with pytest.raises(ValueError, match="sensor names"):
        M2ADScorer().fit(x, sensor_names=["p"])


# ---------------------------------------------------------------- calibrations
def test_chi2_unit_weights_is_fisher_2n(errs):
    train, test = errs
    m = M2ADScorer(calibration="chi2").fit(train)
    assert m.chi2_df_ == 6 and m.chi2_scale_ == 1
    cal, _, comb = m.score(test)
    np.testing.assert_allclose(cal, stats.chi2.sf(comb, df=6), rtol=1e-12)
    np.testing.assert_array_equal(m.flags(cal), cal < 0.001)


def test_chi2_weighted_matches_first_two_moments():
    rng = np.random.default_rng(6)
    names = ["a", "b", "c"]
    groups = {"g": {"weight": 1, "sensors": ["a", "b"]}, "h": {"weight": 3, "sensors": ["c"]}}
    m = M2ADScorer(calibration="chi2", weights=groups).fit(rng.normal(size=(200, 3)), sensor_names=names)
    w = np.array([0.5, 0.5, 3.0])
    # E[sum w f] = 2 sum w, Var = 4 sum w^2 under the null (f ~ chi2(2) independent)
    assert m.chi2_scale_ * m.chi2_df_ == pytest.approx(2 * w.sum())
    assert 2 * m.chi2_scale_**2 * m.chi2_df_ == pytest.approx(4 * (w**2).sum())
    s = np.array([1.0, 10.0, 40.0])
    np.testing.assert_allclose(m._calibrate(s), stats.chi2.sf(s / m.chi2_scale_, m.chi2_df_))


def test_std4_flags_are_the_4_sigma_rule(errs):
    train, test = errs
    m = M2ADScorer(calibration="std4").fit(train)
    s = m.train_combined_
    assert m.train_mean_ == pytest.approx(s.mean()) and m.train_std_ == pytest.approx(s.std())
    test = np.vstack([test, train.max(axis=0) + 6])  # something far out
    cal, _, comb = m.score(test)
    expected = comb > s.mean() + 4 * s.std()
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(m.flags(cal), expected)
    np.testing.assert_allclose(cal, stats.norm.sf((comb - s.mean()) / s.std()), rtol=1e-12)


@pytest.mark.parametrize("calibration", ["gamma", "std4"])
def test_zero_variance_is_uncalibrated_without_divide_warnings(calibration):
    train = np.tile([0.3, 1.2], (100, 1))
    test = np.vstack([np.full((2, 2), np.nan), np.random.default_rng(0).normal(size=(20, 2)) * 100])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = M2ADScorer(calibration=calibration).fit(train)
        cal, sp, comb = m.score(test)
        flags = m.flags(cal)
    kinds = [w.category for w in rec]
    assert UncalibratedWarning in kinds
    assert RuntimeWarning not in kinds, [str(w.message) for w in rec]
    assert m.calibrated_ is False
    assert np.isnan(cal[:2]).all() and (cal[2:] == 1.0).all()
    assert np.isfinite(comb[2:]).all() and not flags.any()


def test_chi2_all_zero_weights_is_uncalibrated():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.warns(UncalibratedWarning):
        m = M2ADScorer(calibration="chi2", weights={"g": {"weight": 0, "sensors": ["0", "1"]}}).fit(x)
    assert m.calibrated_ is False and (m.score(x)[0] == 1).all()


# ---------------------------------------------------------------- NaN and bad input
def test_nan_rows(errs):
    train, test = errs
    base = M2ADScorer(n_components=2).fit(train)
    padded = np.vstack([np.full((5, 3), np.nan), train, np.full((2, 3), np.nan)])
    m = M2ADScorer(n_components=2).fit(padded)
    np.testing.assert_array_equal(m.means_, base.means_)
    assert m.gamma_shape_ == base.gamma_shape_
    t = test.copy()
    t[:4] = np.nan
    t[50] = np.nan  # a fully missing row inside is "not scored" too
    cal, sp, comb = m.score(t)
    for arr in (cal, comb):
        assert np.isnan(arr[:4]).all() and np.isnan(arr[50]) and np.isfinite(np.delete(arr, [0, 1, 2, 3, 50])).all()
    assert np.isnan(sp[:4]).all() and np.isnan(sp[50]).all()
    assert not m.flags(cal)[:4].any()
    ref = base.score(test)
    keep = np.setdiff1d(np.arange(len(t)), [0, 1, 2, 3, 50])
    np.testing.assert_allclose(cal[keep], ref[0][keep], rtol=1e-12)


def test_partial_nan_and_bad_inputs_raise(errs):
    train, test = errs
    bad = test.copy()
    bad[17, 2] = np.nan
    m = M2ADScorer().fit(train)
    with pytest.raises(ValueError, match="first row 17"):
        m.score(bad)
    with pytest.raises(ValueError, match="first row 17 \\(column\\(s\\) 'c'\\)"):
        M2ADScorer().fit(bad, sensor_names=["a", "b", "c"])
    bad[17, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        m.score(bad)
    with pytest.raises(ValueError, match="fitted on 3"):
        m.score(test[:, :2])
    with pytest.raises(RuntimeError, match="not fitted"):
        M2ADScorer().score(test)
    with pytest.raises(ValueError, match="calibration"):
        M2ADScorer(calibration="beta").fit(train)
    with pytest.raises(ValueError, match="distribution"):
        M2ADScorer(distribution="t").fit(train)
    with pytest.raises(ValueError, match="n_components"):
        M2ADScorer(n_components=0).fit(train)
    with pytest.raises(ValueError, match=r"covariance_type must be one of \['spherical', 'diag', 'full', 'tied'\]"):
        M2ADScorer(covariance_type="sphere").fit(train)
    with pytest.raises(ValueError, match="reg_covar"):
        M2ADScorer(reg_covar=-1e-6).fit(train)
    with pytest.raises(ValueError, match="scored rows"):
        M2ADScorer().fit(np.full((10, 3), np.nan))


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SMALL = ["--rows", "300", "--sensors", "3", "--repeats", "1"]


def test_bench_script_runs_small(capsys):
    rc = _load_script("bench_m2ad").main([*SMALL, "--components", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "speed-up" in out and "max |p diff|" in out
    assert "re-implementation, NOT the authors' code" in out
    assert "agreement with the re-implementation: ok" in out
    assert "authors' code (--authors CHECKOUT): not given" in out


# A stand-in for a clone of sarahmish/M2AD: its src/models/gmm.py with the authors' GMM
# interface (sensors, n_components, covariance_type, one_sided; fit; p_values returning
# gamma p, sensor p, combined, Fisher terms), computed here independently with scipy.
FAKE_AUTHORS_GMM = """
import numpy as np
from scipy import stats
from sklearn.mixture import GaussianMixture

class GMM:
    def __init__(self, sensors, n_components=1, covariance_type='spherical', one_sided=False, weights=None):
        self.k, self.ct, self.one_sided = n_components, covariance_type, one_sided

    def _p(self, X):
        p = np.empty_like(X)
        for i, g in enumerate(self.gmm):
            sd = np.sqrt(np.asarray(g.covariances_).ravel())
            sf = sum(w * stats.norm.sf(X[:, i], m, s) for w, m, s in zip(g.weights_, g.means_.ravel(), sd))
            p[:, i] = sf if self.one_sided else 2 * np.minimum(sf, 1 - sf)
        p = np.maximum(p * SKEW, 1e-16)
        return p, (-2 * np.log(p)).sum(axis=1)

    def fit(self, X):
        self.gmm = [GaussianMixture(self.k, covariance_type=self.ct).fit(X[:, i:i + 1]) for i in range(X.shape[1])]
        s = self._p(X)[1]
        self.shape, self.scale = s.mean() ** 2 / s.var(), s.var() / s.mean()

    def p_values(self, X):
        p, s = self._p(X)
        return stats.gamma.sf(s, self.shape, scale=self.scale), p, s, -2 * np.log(p)
"""


def _fake_checkout(root, skew):
    (root / "src" / "models").mkdir(parents=True)
    (root / "src" / "models" / "gmm.py").write_text(textwrap.dedent(FAKE_AUTHORS_GMM) + f"\nSKEW = {skew!r}\n")
    return str(root)


@pytest.mark.parametrize("two_sided", [False, True])
def test_bench_authors_agree_then_disagree(tmp_path, capsys, two_sided):
    bench = _load_script("bench_m2ad")
    sided = ["--two-sided"] if two_sided else []
    good = _fake_checkout(tmp_path / "good", 1.0)
    assert bench.main([*SMALL, *sided, "--authors", good]) == 0
    out = capsys.readouterr().out
    assert "authors' code (GMM.fit + p_values)" in out and "agreement with the authors' code: ok" in out
    # p-values 1e-9 off (relative): the bench reports it and exits 1, also through bench.py
    bad = _fake_checkout(tmp_path / "bad", 1.0 + 1e-9)
    assert bench.main([*SMALL, *sided, "--authors", bad]) == 1
    assert "agreement with the authors' code: DISAGREE" in capsys.readouterr().out
    assert _load_script("bench").main(["m2ad", *SMALL, *sided, "--authors", bad]) == 1


def test_bench_reimplementation_disagreement_fails(monkeypatch, capsys):
    bench = _load_script("bench_m2ad")
    pvalues = bench.ReferenceApproach.pvalues
    monkeypatch.setattr(bench.ReferenceApproach, "pvalues", lambda self, x: pvalues(self, x * (1 + 1e-6)))
    assert bench.main(SMALL) == 1
    assert "agreement with the re-implementation: DISAGREE" in capsys.readouterr().out


def test_bench_authors_missing_checkout(tmp_path, capsys):
    assert _load_script("bench_m2ad").main([*SMALL, "--authors", str(tmp_path)]) == 2
    assert "no src/models/gmm.py" in capsys.readouterr().err
