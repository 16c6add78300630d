"""madbench-eval: in-place protocol re-evaluation and re-scoring from kept residuals.

The reference for re-scoring is a full job trained with the variant's config: on the CPU a
seed gives the same model, so a variant re-scored from the residuals must equal it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from madbench import evaluate as E
from madbench import run
from madbench.errors import ConfigError, DataError
from madbench.tracking.collect import collect
from tests.conftest import compose_cfg

BIN = Path(sys.executable).parent
M2AD = ["scoring=m2ad", "protocol=[strict,m2ad]", "trainer.epochs=1"]

pytestmark = pytest.mark.xdist_group("evaluate")


@pytest.fixture(scope="module")
def m2ad_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("m2ad") / "run"
    run.main(compose_cfg(M2AD), d)
    return d


def _metric_rows(df):
    cols = ["entity", "aggregate", "protocol", "precision", "recall", "f1", "event_tp", "event_fp", "event_fn",
            "auc_roc", "vus_pr", "threshold"]
    return df[cols].sort_values(["protocol", "entity", "aggregate"]).reset_index(drop=True)


@pytest.mark.parametrize("variant", [["scoring.calibration=chi2"], ["scoring.distribution=normal", "scoring.error=area"],
                                     ["scoring=raw"], ["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=30"],
                                     ["protocol.m2ad.grouping=none", "scoring.two_sided=true"]])
def test_rescored_variant_equals_a_job_trained_with_it(m2ad_run, tmp_path, variant):
    out_dir, df = E.rescore(m2ad_run, variant)
    assert out_dir.parent == m2ad_run / "rescored"
    direct = run.main(compose_cfg(M2AD + variant), tmp_path / "direct")
    # same config → same identity, and the same numbers
    assert df.config_hash.iloc[0] == direct.config_hash.iloc[0] != pd.read_csv(m2ad_run / "results.csv").config_hash.iloc[0]
    pd.testing.assert_frame_equal(_metric_rows(df), _metric_rows(direct), rtol=1e-6)
    a, b = np.load(out_dir / "scores.npz"), np.load(tmp_path / "direct" / "scores.npz")
    for name in ("score", "train_score") + (("p", "flags") if "scoring=raw" not in variant else ()):
        np.testing.assert_allclose(a[f"sys0__{name}"], b[f"sys0__{name}"], rtol=1e-6, equal_nan=True)
    assert set(df.scoring) == {"raw" if "scoring=raw" in variant else "m2ad"}
    assert (df.status == "ok").all() and (df.epochs_run[df.entity != "ALL"] == 1).all()


def test_rescore_list_in_the_job_writes_one_run_dir_per_variant(tmp_path):
    cfg = compose_cfg(M2AD + ['rescore=["scoring.distribution=gmm,normal","scoring.calibration=gamma,chi2"]',
                              "scoring.n_components=2", "name=abl-${scoring.distribution}+${scoring.calibration}"])
    parent = run.main(cfg, tmp_path / "run")
    variants = sorted(p.name for p in (tmp_path / "run" / "rescored").iterdir())
    # 2 x 2 combinations; gmm+gamma is the job itself and is not written twice
    assert len(variants) == 3 and not any(v.startswith("distribution-gmm+calibration-gamma") for v in variants)
    df, _ = collect(tmp_path)
    names = set(df[df.entity == "ALL"].name)
    assert names == {"abl-gmm+gamma", "abl-gmm+chi2", "abl-normal+gamma", "abl-normal+chi2"}
    assert df.config_hash.nunique() == 4 and parent.config_hash.iloc[0] in set(df.config_hash)


def test_rescoring_refuses_keys_that_change_training(m2ad_run):
    with pytest.raises(ConfigError, match=r"trainer\.epochs: changes what is trained"):
        E.rescore(m2ad_run, ["trainer.epochs=3"])


def test_rescoring_a_run_without_residuals_names_file_and_entity(tmp_path):
    d = tmp_path / "raw"
    run.main(compose_cfg(["trainer.epochs=1"]), d)  # forecast objective: residuals are kept
    z = dict(np.load(d / "scores.npz"))
    z = {k: v for k, v in z.items() if not k.endswith("train_residuals")}  # as an older run dir
    np.savez(d / "scores.npz", **z)
    with pytest.raises(DataError, match=r"scores\.npz: entity sys0 has no train_residuals"):
        E.rescore(d, ["scoring=m2ad"])
    # the variant dir records the failure instead of being left half-written
    failed = pd.read_csv(next((d / "rescored").iterdir()) / "results.csv")
    assert (failed.status == "failed").all() and failed.error.str.contains("train_residuals").all()


def test_failed_variant_is_recorded_and_the_others_go_on(m2ad_run):
    done, errors = E.rescore_all([m2ad_run], ["scoring.error=bogus,area"], progress=False)
    assert len(done) == 1 and len(errors) == 1 and "scoring.error='bogus'" in errors[0]
    statuses = {p.name.split("-")[1]: set(pd.read_csv(p / "results.csv").status)
                for p in (m2ad_run / "rescored").iterdir() if p.name.startswith("error-")}
    assert statuses["bogus"] == {"failed"} and statuses["area"] == {"ok"}


def test_expand_is_hydras_cartesian_product():
    combos = E.expand(["scoring.distribution=gmm,normal", "protocol=[strict,m2ad]", "scoring.alpha=0.01,0.001"])
    assert len(combos) == 4
    assert combos[0] == ["scoring.distribution=gmm", "protocol=[strict,m2ad]", "scoring.alpha=0.01"]
    assert E.expand([]) == [[]]


def test_cli_in_place_protocol_reevaluation_keeps_other_rows(tmp_path):
    d = tmp_path / "run"
    run.main(compose_cfg(["trainer.epochs=1"]), d)
    before = pd.read_csv(d / "results.csv")
    p = subprocess.run([str(BIN / "madbench-eval"), str(d), "protocol=[tslib]"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    after = pd.read_csv(d / "results.csv")
    assert set(after.protocol) == {"strict", "tslib"} and set(after.config_hash) == set(before.config_hash)
    pd.testing.assert_frame_equal(_metric_rows(after[after.protocol == "strict"]), _metric_rows(before))
    # sizes and timings are the run's, carried over to the new protocol's rows
    tslib = after[(after.protocol == "tslib") & (after.entity != "ALL")].set_index("entity")
    strict = before[before.entity != "ALL"].set_index("entity")
    for c in ("n_train", "epochs_run", "fit_seconds"):
        assert (tslib[c] == strict.loc[tslib.index, c]).all(), c
    assert not (d / "rescored").exists()


def test_cli_sweep_dir_and_bad_input(tmp_path):
    for seed in (0, 1):
        run.main(compose_cfg(M2AD + [f"seed={seed}", "dataset.n_systems=1"]), tmp_path / "sweep" / str(seed))
    p = subprocess.run([str(BIN / "madbench-eval"), str(tmp_path / "sweep"), "scoring.calibration=chi2,std4"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "sweep").glob("*/rescored/*/results.csv"))) == 4
    bad = subprocess.run([str(BIN / "madbench-eval"), str(tmp_path / "sweep"), "trainer.lr=1"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "trainer.lr" in bad.stderr
    missing = subprocess.run([str(BIN / "madbench-eval"), str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_a_variant_is_logged_to_wandb_like_a_job(tmp_path):
    pytest.importorskip("wandb")
    import time

    from tests.tracking.wandb_records import run_summary

    d = tmp_path / "run"
    run.main(compose_cfg(M2AD + ["dataset.n_systems=1"]), d)
    out_dir, df = E.rescore(d, ["scoring.calibration=chi2", "logger=[csv,wandb]"])
    (offline,) = (out_dir / "wandb").glob("offline-run-*")
    for _ in range(30):  # the W&B core process may still be flushing the file
        info = run_summary(offline)
        if info["exit"] is not None:
            break
        time.sleep(0.5)
    assert info["exit"] == 0
    mine = df[(df.protocol == "m2ad") & (df.entity == "ALL")].iloc[0]
    assert float(info["summary"]["m2ad/sum/event_tp"]) == mine.event_tp


def test_residual_scoring_does_not_need_the_step_scores(m2ad_run, tmp_path):
    """Runs written between the two additions keep residuals but no train step scores."""
    import shutil

    d = tmp_path / "older"
    shutil.copytree(m2ad_run, d, ignore=shutil.ignore_patterns("rescored"))
    z = {k: v for k, v in np.load(d / "scores.npz").items() if not k.endswith("train_step")}
    np.savez(d / "scores.npz", **z)
    out_dir, df = E.rescore(d, ["scoring.calibration=chi2"])
    assert (df.status == "ok").all()
    with pytest.raises(DataError, match="has no train_step"):
        E.rescore(d, ["scoring=raw"])


def test_a_crashing_variant_leaves_the_job_ok(tmp_path, monkeypatch):
    """An unexpected error while re-scoring is a failed variant, never a failed job."""
    from madbench.scoring.scorers import M2ADScoring

    real_fit = M2ADScoring.fit

    def fit(self, *a, **kw):
        if self.calibration == "chi2":
            raise RuntimeError("boom")
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(M2ADScoring, "fit", fit)
    df = run.main(compose_cfg(M2AD + ["dataset.n_systems=1", 'rescore=["scoring.calibration=chi2,std4"]']),
                  tmp_path / "run")
    assert (df.status == "ok").all() and (pd.read_csv(tmp_path / "run" / "results.csv").status == "ok").all()
    status = {p.name.split("-")[1]: pd.read_csv(p / "results.csv") for p in (tmp_path / "run" / "rescored").iterdir()}
    assert set(status["std4"].status) == {"ok"} and set(status["chi2"].status) == {"failed"}
    assert status["chi2"].error.str.contains("RuntimeError: boom").all()


def test_a_grouping_changes_the_m2ad_rows_only(m2ad_run):
    """The grouping variants above are no identity: their m2ad counts differ from the run's
    padding, and the strict protocol (no intervals) is unchanged."""
    parent = _metric_rows(pd.read_csv(m2ad_run / "results.csv"))
    out_dir, _ = E.rescore(m2ad_run, ["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=0"])
    mine = _metric_rows(pd.read_csv(out_dir / "results.csv"))
    m2ad = mine.protocol == "m2ad"
    assert not mine[m2ad][["event_tp", "event_fp", "event_fn"]].equals(parent[m2ad][["event_tp", "event_fp", "event_fn"]])
    pd.testing.assert_frame_equal(mine[~m2ad], parent[~m2ad])


def test_protocol_typos_and_bad_values_are_refused_before_any_variant_is_written(m2ad_run):
    before = sorted((m2ad_run / "rescored").iterdir()) if (m2ad_run / "rescored").exists() else []
    results = (m2ad_run / "results.csv").read_text()
    for overrides, msg in ((["protocol.m2ad.gruping=forward,none"], "protocol.m2ad.gruping: unknown key"),
                           (["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=50,-1"], "protocol.m2ad.bridge=-1"),
                           (["protocol.m2ad.grouping=sideways"], "protocol.m2ad.grouping=sideways")):
        with pytest.raises(ConfigError, match=msg):
            E.rescore_all([m2ad_run], overrides, progress=False)
    for overrides, msg in ((["protocol.m2ad.gruping=forward"], "protocol.m2ad.gruping: unknown key"),
                           (["protocol.m2ad.bridge=-1"], "protocol.m2ad.bridge=-1")):
        with pytest.raises(ConfigError, match=msg):  # the in-place path too
            E.main([str(m2ad_run)] + overrides)
    assert (m2ad_run / "results.csv").read_text() == results
    after = sorted((m2ad_run / "rescored").iterdir()) if (m2ad_run / "rescored").exists() else []
    assert before == after


def test_variants_flag_writes_protocol_only_overrides_as_variant_dirs(tmp_path):
    d = tmp_path / "run"
    run.main(compose_cfg(M2AD + ["dataset.n_systems=1"]), d)
    before = pd.read_csv(d / "results.csv")
    p = subprocess.run([str(BIN / "madbench-eval"), "--variants", str(d), "protocol.m2ad.grouping=none"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (variant,) = (d / "rescored").iterdir()
    assert variant.name.startswith("grouping-none-")
    pd.testing.assert_frame_equal(pd.read_csv(d / "results.csv"), before)  # the run itself is untouched
    df = pd.read_csv(variant / "results.csv")
    assert df.config_hash.iloc[0] != before.config_hash.iloc[0] and (df.status == "ok").all()
    # the search table reads the run and its variant: one row per construction
    p = subprocess.run([str(BIN / "madbench-tables"), "m2ad_search", str(d)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(d / "m2ad_search.csv")
    assert table.grouping.tolist() == ["padding", "none"] and table.sided.tolist() == ["one", "one"]
    def total(frame, c):
        return frame[(frame.protocol == "m2ad") & (frame.entity == "ALL")][c].iloc[0]

    for c in ("tp", "fp", "fn"):
        assert table[c].tolist() == [total(before, f"event_{c}"), total(df, f"event_{c}")]
    # without the flag the same override is re-evaluated in place, as before
    p = subprocess.run([str(BIN / "madbench-eval"), str(d), "protocol.m2ad.grouping=none"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert len(list((d / "rescored").iterdir())) == 1
    after = pd.read_csv(d / "results.csv")
    pd.testing.assert_frame_equal(_metric_rows(after[after.protocol == "m2ad"]), _metric_rows(df[df.protocol == "m2ad"]))
