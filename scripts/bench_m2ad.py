"""Benchmark M2AD scoring: madbench against the authors' code and a re-implementation.

    python scripts/bench.py m2ad --authors /tmp/m2ad_authors   # 100k x 38 train and test, 1 component
    python scripts/bench.py m2ad                                # re-implementation line only
    python scripts/bench.py m2ad --components 3 --two-sided

All three fit on the same train errors and score the same test errors (``make_errors``),
fit + score timed in the same process:

* madbench: ``M2ADScorer.fit`` + ``score`` (median of ``--repeats`` runs).
* the authors' code (``--authors CHECKOUT``, a clone of sarahmish/M2AD that is never
  copied into the project): ``GMM.fit`` + ``GMM.p_values`` from the checkout's
  ``src/models/gmm.py``, run as it is (1 run). Its ``GaussianMixture`` is only given
  ``random_state=--seed``, as madbench's is, so that fits with several components are
  comparable. Sensors are named ``s00, s01, ...`` so that the authors' substring weight
  matching gives every sensor weight 1, as madbench's default does.
* a re-implementation of the reference approach, *not the authors' code* (1 run): one
  sklearn ``GaussianMixture`` per sensor, then ``np.vectorize`` over a function summing
  ``statistics.NormalDist(mu, sigma).cdf`` per component, ``p = 1 - CDF``, Gamma by
  moments. It needs no checkout. Its CDF costs ~2.5 times the authors' per element (numpy
  scalars and ``np.broadcast_to`` inside the vectorised function), so its ratio is 2-3
  times the ratio against their code; quote the latter.

Agreement: for each comparison the script prints the largest differences of the sensor
p-values, the combined score and the calibrated p, and the flags that differ. It returns
1 when they disagree: a sensor p-value off by more than 1e-12, or a combined score off
by more than 1e-9 (relative) or a differing flag on a row whose sensor p-values are all
>= 1e-6. Below 1e-6 the reference's ``1 - CDF`` has lost digits (it keeps ~1e-16 in
absolute terms, and is 0 below that), so those rows are reported, not judged.

``--reference-m2ad PATH`` adds the end-to-end comparison: fit + detect on one NASA channel
(``--channel``, ``--epochs``, data from ``--data-dir``) with the authors' code imported from
that checkout, run beside madbench in the same process (never copied into the project),
against ``madbench experiment=m2ad_table2`` on the same channel and epochs. Both train on
the CPU here; the authors' ``predict`` runs with batch size 1.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.mixture import GaussianMixture

try:
    from madbench.scoring.m2ad import M2ADScorer
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from madbench.scoring.m2ad import M2ADScorer

P_ABS_TOL = 1e-12       # sensor p-values, absolute
COMBINED_REL_TOL = 1e-9  # combined score on rows whose sensor p-values are all >= WELL_CONDITIONED
WELL_CONDITIONED = 1e-6


def make_errors(rows: int, sensors: int, seed: int):
    """Smoothed-error-like data: positive, skewed, different per sensor; a few test bursts."""
    rng = np.random.default_rng(seed)
    shape = rng.uniform(1.5, 4.0, sensors)
    scale = rng.uniform(0.005, 0.05, sensors)
    train = rng.gamma(shape, scale, (rows, sensors))
    test = rng.gamma(shape, scale, (rows, sensors))
    for start in rng.integers(0, max(1, rows - 50), size=max(1, rows // 20000)):
        cols = rng.choice(sensors, size=max(1, sensors // 4), replace=False)
        test[start:start + 50, cols] += 10 * scale[cols]
    return train, test


def sensor_names(n: int) -> list[str]:
    """``s00, s01, ...``: no name contains another, so substring matching is exact."""
    width = len(str(max(n - 1, 0)))
    return [f"s{i:0{width}d}" for i in range(n)]


class ReferenceApproach:
    """The reference approach re-implemented here (not the authors' code): sklearn
    GaussianMixture per sensor, NormalDist CDF through np.vectorize, 1 - CDF, Gamma."""

    def __init__(self, n_components: int, covariance_type: str, two_sided: bool, random_state, weights):
        self.n_components, self.covariance_type = n_components, covariance_type
        self.two_sided, self.random_state = two_sided, random_state
        self.weights = np.asarray(weights)

    @staticmethod
    def _mixture_cdf(gmm, x):
        mu = gmm.means_.ravel()
        sd = np.sqrt(np.broadcast_to(np.asarray(gmm.covariances_).ravel(), mu.shape))
        total = 0.0
        for w, m, s in zip(gmm.weights_, mu, sd):
            total += w * statistics.NormalDist(mu=m, sigma=s).cdf(x)
        return total

    def pvalues(self, x):
        p = np.empty_like(x)
        vcdf = np.vectorize(self._mixture_cdf)
        for i, gmm in enumerate(self.gmms):
            cdf = vcdf(gmm, x[:, i])
            p[:, i] = 2 * np.minimum(cdf, 1 - cdf) if self.two_sided else 1 - cdf
        np.maximum(p, 1e-16, out=p)
        combined = (-2 * np.log(p)) @ self.weights
        return p, combined

    def fit(self, train):
        self.gmms = [GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                                     random_state=self.random_state).fit(train[:, i:i + 1])
                     for i in range(train.shape[1])]
        _, s = self.pvalues(train)
        mean, var = s.mean(), s.var()
        self.shape, self.scale = mean**2 / var, var / mean
        return self

    def score(self, test):
        p, s = self.pvalues(test)
        return 1 - stats.gamma.cdf(s, a=self.shape, scale=self.scale), p, s


def load_authors_gmm(checkout: Path, seed):
    """The authors' ``src/models/gmm.py`` from a checkout, as a module of its own (nothing on
    sys.path), with its GaussianMixture given ``random_state=seed``."""
    path = Path(checkout) / "src" / "models" / "gmm.py"
    if not path.is_file():
        raise FileNotFoundError(f"--authors {checkout}: no src/models/gmm.py there; expected a clone of "
                                "github.com/sarahmish/M2AD")
    spec = importlib.util.spec_from_file_location("m2ad_authors_gmm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.GaussianMixture = functools.partial(mod.GaussianMixture, random_state=seed)
    return mod


def _once(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def agreement(label, ours, theirs, flags_ours, flags_theirs) -> bool:
    """Print how far ``theirs`` (calibrated, sensor_p, combined) is from ``ours``; True if they agree."""
    cal, sp, comb = ours
    rcal, rsp, rcomb = theirs
    good = (sp >= WELL_CONDITIONED).all(axis=1) & (rsp >= WELL_CONDITIONED).all(axis=1)
    p_diff = float(np.max(np.abs(sp - rsp)))
    rel = np.abs(comb - rcomb) / np.maximum(1.0, np.abs(rcomb))
    c_diff, c_diff_good = float(np.max(rel)), float(np.max(rel[good], initial=0.0))
    well = sp >= WELL_CONDITIONED
    p_rel_good = float(np.max(np.abs(sp - rsp)[well] / sp[well], initial=0.0))
    differ = flags_ours != flags_theirs
    ok = p_diff <= P_ABS_TOL and c_diff_good <= COMBINED_REL_TOL and not differ[good].any()
    print(f"agreement with {label}: {'ok' if ok else 'DISAGREE'}")
    print(f"  max |p diff| sensor p-values:       {p_diff:.3e}  (tolerance {P_ABS_TOL:g})")
    print(f"  max rel diff sensor p >= {WELL_CONDITIONED:g}:     {p_rel_good:.3e}")
    print(f"  max rel diff combined score:        {c_diff:.3e}")
    print(f"    rows with all sensor p >= {WELL_CONDITIONED:g} ({int(good.sum())} of {len(good)}): "
          f"{c_diff_good:.3e}  (tolerance {COMBINED_REL_TOL:g})")
    cal_diff = np.abs(cal - rcal)
    print(f"  max |p diff| calibrated p:          {float(np.max(cal_diff)):.3e}, on rows with all sensor p >= "
          f"{WELL_CONDITIONED:g}: {float(np.max(cal_diff[good], initial=0.0)):.3e}  (each side fits its Gamma "
          "on its own train scores)")
    print(f"  flags: madbench {int(flags_ours.sum())}, {label} {int(flags_theirs.sum())}, differing "
          f"{int(differ.sum())} ({int(differ[good].sum())} on rows with all sensor p >= {WELL_CONDITIONED:g})")
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows of train and of test errors")
    ap.add_argument("--sensors", type=int, default=38)
    ap.add_argument("--components", type=int, default=1)
    ap.add_argument("--covariance-type", default="spherical")
    ap.add_argument("--two-sided", action="store_true", help="two-sided p-values (area errors)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="madbench fit + score: median of N runs")
    ap.add_argument("--authors", metavar="CHECKOUT", default=None,
                    help="clone of sarahmish/M2AD: time its GMM.fit + GMM.p_values on the same data")
    ap.add_argument("--reference-m2ad", metavar="PATH", default=None,
                    help="checkout of sarahmish/M2AD for the end-to-end fit+detect comparison")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"),
                    help="paths.data_dir holding NASA/ (for --reference-m2ad)")
    ap.add_argument("--channel", default="C-1")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)

    authors = None
    if args.authors:
        try:
            authors = load_authors_gmm(Path(args.authors), args.seed)
        except (FileNotFoundError, ImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    train, test = make_errors(args.rows, args.sensors, args.seed)
    names = sensor_names(args.sensors)
    scorer = M2ADScorer(n_components=args.components, covariance_type=args.covariance_type,
                        two_sided=args.two_sided, random_state=args.seed)
    fits, scores = [], []
    for _ in range(max(1, args.repeats)):
        t_fit, _ = _once(lambda: scorer.fit(train, sensor_names=names))
        t_score, ours = _once(lambda: scorer.score(test))
        fits.append(t_fit)
        scores.append(t_score)
    t_fit, t_score = float(np.median(fits)), float(np.median(scores))
    t_ours = float(np.median(np.add(fits, scores)))

    rows = [("madbench", t_fit, t_score, t_ours, None)]
    checks = []
    if authors is not None:
        gmm = authors.GMM(sensors=names, n_components=args.components, covariance_type=args.covariance_type,
                          one_sided=not args.two_sided)
        a_fit, _ = _once(lambda: gmm.fit(train))
        a_score, out = _once(lambda: gmm.p_values(test))
        rows.append(("authors' code (GMM.fit + p_values)", a_fit, a_score, a_fit + a_score, None))
        checks.append(("the authors' code", out[:3], out[0] < scorer.alpha))
    ref = ReferenceApproach(args.components, args.covariance_type, args.two_sided, args.seed, scorer.weights_)
    r_fit, _ = _once(lambda: ref.fit(train))
    r_score, out = _once(lambda: ref.score(test))
    rows.append(("re-implementation, NOT the authors' code", r_fit, r_score, r_fit + r_score,
                 "sklearn GMM + np.vectorize(NormalDist.cdf), in this script"))
    checks.append(("the re-implementation", out, out[0] < scorer.alpha))

    print(f"M2AD scoring benchmark: train {train.shape[0]}x{train.shape[1]}, test {test.shape[0]}x{test.shape[1]}, "
          f"{args.components} component(s), {args.covariance_type}, {'two' if args.two_sided else 'one'}-sided; "
          f"madbench: median of {max(1, args.repeats)} runs, the others: 1 run")
    print(f"{'':<42}{'fit [s]':>10}{'score [s]':>11}{'fit+score [s]':>15}{'madbench speed-up':>19}")
    for name, fit_s, score_s, total, note in rows:
        ratio = "" if name == "madbench" else f"{total / max(t_ours, 1e-12):.1f}x"
        print(f"{name:<42}{fit_s:>10.3f}{score_s:>11.3f}{total:>15.3f}{ratio:>19}")
        if note:
            print(f"  ({note})")
    if authors is None:
        print("authors' code (--authors CHECKOUT): not given")
    flags = scorer.flags(ours[0])
    ok = all([agreement(label, ours, theirs, flags, their_flags) for label, theirs, their_flags in checks])
    if args.reference_m2ad:
        fit_detect_vs_reference(Path(args.reference_m2ad), Path(args.data_dir), args.channel, args.epochs)
    else:
        print("end-to-end vs authors' repo (--reference-m2ad): not given")
    return 0 if ok else 1


def fit_detect_vs_reference(ref_path: Path, data_dir: Path, channel: str, epochs: int) -> None:
    """Time fit + detect of one NASA channel: the authors' M2AD class vs a madbench job."""
    import os
    import tempfile

    import pandas as pd
    import torch
    from hydra import compose, initialize_config_dir

    from madbench import run

    nasa = data_dir / "NASA"
    spacecraft = pd.read_csv(nasa / "labeled_anomalies.csv").set_index("chan_id").loc[channel, "spacecraft"]
    spacecraft = spacecraft if isinstance(spacecraft, str) else spacecraft.iloc[0]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # their trainer writes checkpoints under ./checkpoint
        try:
            sys.path.insert(0, str(ref_path))
            from src.m2ad import M2AD  # the authors' code, from the given checkout

            t0 = time.perf_counter()
            train, test = (np.load(nasa / part / f"{channel}.npy") for part in ("train", "test"))
            cols = [str(i) for i in range(train.shape[1])]
            frames = []
            for arr, start in ((train, 0), (test, len(train))):
                df = pd.DataFrame(arr, columns=cols)
                df["time"] = np.arange(start, start + len(arr))
                frames.append(df)
            ref = M2AD(dataset=spacecraft, entity=channel, sensors=["0"], covariates=cols[1:], epochs=epochs,
                       verbose=False, device="cpu")
            ref.fit(frames[0])
            found = ref.detect(frames[1])
            t_ref = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
        config_dir = str(Path(__file__).resolve().parents[1] / "configs")
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose("config", overrides=[
                "experiment=m2ad_table2", f"dataset={spacecraft.lower()}", f"dataset.entities=[{channel}]",
                f"trainer.epochs={epochs}", "trainer.device=cpu", "trainer.progress=false", "logger.csv.plots=false",
                f"paths.data_dir={data_dir}", f"paths.output_dir={tmp}"])
        t0 = time.perf_counter()
        df = run.main(cfg, Path(tmp) / "run")
        t_ours = time.perf_counter() - t0
    row = df[(df.entity == channel) & (df.protocol == "m2ad")].iloc[0]
    print(f"\nfit + detect, {spacecraft} {channel}, {epochs} epoch(s), CPU ({torch.get_num_threads()} threads)")
    print(f"{'':<28}{'madbench [s]':>16}{'authors [s]':>16}{'speed-up':>11}")
    print(f"{'fit + detect (end to end)':<28}{t_ours:>16.2f}{t_ref:>16.2f}{t_ref / t_ours:>10.1f}x")
    print(f"intervals: madbench {int(row.n_detected)}, authors {len(found)} (models differ by their random init)")


if __name__ == "__main__":
    raise SystemExit(main())
