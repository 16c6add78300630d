"""madbench-eval: in-place protocol re-evaluation and re-scoring from kept residuals.

The reference for re-scoring is a full job trained with the variant's config: on the CPU a
seed gives the same model, so a variant re-scored from the residuals must equal it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from madbench import protocols as P
from madbench import rescoring as E
from madbench import rundir
from madbench import run
from madbench.errors import ConfigError, DataError
from madbench.tracking.collect import collect
from tests.conftest import compose_cfg, rewrite_v1_scores, stored, v1_run, script

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
    # counts are written as integers: compare values, not the dtype a CSV column happened to get
    out = df[cols].sort_values(["protocol", "entity", "aggregate"]).reset_index(drop=True)
    return out.astype({c: float for c in cols[3:]})


@pytest.mark.parametrize("variant", [["scoring.calibration=chi2"], ["scoring.distribution=normal", "scoring.error=area"],
                                     ["scoring=raw", "scoring.calibration=pot"], ["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=30"],
                                     ["protocol.m2ad.grouping=none", "scoring.two_sided=true"]])
def test_rescored_variant_equals_a_job_trained_with_it(m2ad_run, tmp_path, variant):
    out_dir, df = E.rescore(m2ad_run, variant)
    assert out_dir.parent == m2ad_run / "rescored"
    direct = run.main(compose_cfg(M2AD + variant), tmp_path / "direct")
    # same config → same identity, and the same numbers
    assert df.config_hash.iloc[0] == direct.config_hash.iloc[0] != pd.read_csv(m2ad_run / "results.csv").config_hash.iloc[0]
    pd.testing.assert_frame_equal(_metric_rows(df), _metric_rows(direct), rtol=1e-6)
    a, b = stored(out_dir)["sys0"], stored(tmp_path / "direct")["sys0"]
    for name in ("score", "train_score") + (("p", "flags") if "scoring=raw" not in variant else ()):
        got, want = getattr(a, name), getattr(b, name)
        if name == "train_score" and "scoring=raw" in variant:
            # the direct raw job scored only the validation steps its stages read (score_train=auto);
            # the variant keeps the m2ad run's whole train split
            assert np.isnan(want[~b.val_mask]).all()
            got, want = got[b.val_mask], want[b.val_mask]
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert set(df.scoring) == {"raw" if "scoring=raw" in variant else "m2ad"}
    assert (df.status == "ok").all() and (df.epochs_run[df.entity != "ALL"] == 1).all()


@pytest.mark.slow
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
    d = v1_run(tmp_path)
    rewrite_v1_scores(d, drop_suffix="train_residuals")  # as a run dir from before re-scoring
    with pytest.raises(DataError, match=r"scores\.npz: entity sys0 has no train_residuals"):
        E.rescore(d, ["scoring.calibration=chi2"])
    # the variant dir records the failure instead of being left half-written
    failed = pd.read_csv(next((d / "rescored").iterdir()) / "results.csv")
    assert (failed.status == "failed").all() and failed.error.str.contains("train_residuals").all()


def test_a_refused_value_in_any_combination_writes_no_variant(own_m2ad_run):
    """A refused value is not a failed job: every combination is checked before the first is
    written, so `scoring.error=bogus,area` writes neither (a variant that fails while
    re-scoring is recorded and the others go on: test_a_crashing_variant_leaves_the_job_ok)."""
    with pytest.raises(ConfigError, match=r"^scoring\.error='bogus'"):
        E.rescore_all([own_m2ad_run], ["scoring.error=bogus,area"], progress=False)
    assert not (own_m2ad_run / "rescored").exists()


def test_expand_is_hydras_cartesian_product():
    combos = E.expand(["scoring.distribution=gmm,normal", "protocol=[strict,m2ad]", "scoring.alpha=0.01,0.001"])
    assert len(combos) == 4
    assert combos[0] == ["scoring.distribution=gmm", "protocol=[strict,m2ad]", "scoring.alpha=0.01"]
    assert E.expand([]) == [[]]


@pytest.mark.slow
def test_cli_in_place_protocol_reevaluation_keeps_other_rows(tmp_path):
    d = tmp_path / "run"
    run.main(compose_cfg(["trainer.epochs=1", "score_train=all"]), d)  # tslib reads every train score
    before = pd.read_csv(d / "results.csv")
    p = script("madbench-eval", str(d), "protocol=[tslib]")
    assert p.returncode == 0, p.stderr
    after = pd.read_csv(d / "results.csv")
    assert set(after.protocol) == {"strict", "tslib"}
    # config.yaml now lists both protocols, and every row carries that config's hash
    from omegaconf import OmegaConf

    from madbench.config import config_hash

    saved = OmegaConf.load(d / "config.yaml")
    assert list(saved.protocol) == ["strict", "tslib"]
    assert set(after.config_hash) == {config_hash(saved)} != set(before.config_hash)
    pd.testing.assert_frame_equal(_metric_rows(after[after.protocol == "strict"]), _metric_rows(before))
    # sizes and timings are the run's, carried over to the new protocol's rows
    tslib = after[(after.protocol == "tslib") & (after.entity != "ALL")].set_index("entity")
    strict = before[before.entity != "ALL"].set_index("entity")
    for c in ("n_train", "epochs_run", "fit_seconds"):
        assert (tslib[c] == strict.loc[tslib.index, c]).all(), c
    assert not (d / "rescored").exists()


@pytest.mark.slow
def test_cli_sweep_dir_and_bad_input(tmp_path):
    for seed in (0, 1):
        run.main(compose_cfg(M2AD + [f"seed={seed}", "dataset.n_systems=1"]), tmp_path / "sweep" / str(seed))
    p = script("madbench-eval", str(tmp_path / "sweep"), "scoring.calibration=chi2,std4")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "sweep").glob("*/rescored/*/results.csv"))) == 4
    bad = script("madbench-eval", str(tmp_path / "sweep"), "trainer.lr=1")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "trainer.lr" in bad.stderr
    missing = script("madbench-eval", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "nope" in missing.stderr


@pytest.mark.slow
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
    d = v1_run(tmp_path)
    rewrite_v1_scores(d, drop_suffix="train_step")
    out_dir, df = E.rescore(d, ["scoring.calibration=chi2"])
    assert (df.status == "ok").all()
    with pytest.raises(DataError, match="has no train_step"):
        E.rescore(d, ["scoring=raw", "scoring.calibration=pot"])


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


# -- in-place re-evaluation reproduces the job ------------------------------------------------------
ALL_PROTOCOLS = "protocol=[strict,madcluster,m2ad,tslib]"


def _flat_second_entity(monkeypatch):
    """sys1's residuals made constant in both splits: its train Fisher score has zero variance,
    so M2AD marks it `uncalibrated` (calls 3 and 4 of Trainer.score are sys1's train and test)."""
    from madbench.fit import Trainer

    real, calls = Trainer.score, []

    def score(self, *a, **kw):
        out = real(self, *a, **kw)
        calls.append(1)
        if len(calls) > 2:
            for s in out:
                s.residuals[np.isfinite(s.residuals)] = 0.5
        return out

    monkeypatch.setattr(Trainer, "score", score)


def test_reevaluating_a_run_in_place_reproduces_its_rows_for_every_protocol(tmp_path, monkeypatch):
    """Bug: scores.npz did not keep an entity's status, so an `uncalibrated` entity came back ok
    (no warning, calibration=ok) when its protocols were re-evaluated."""
    _flat_second_entity(monkeypatch)
    d = tmp_path / "run"
    run.main(compose_cfg(["scoring=m2ad", ALL_PROTOCOLS, "trainer.epochs=1"]), d)
    job = pd.read_csv(d / "results.csv")
    anomalies = (d / "anomalies.csv").read_bytes()
    flat = job[(job.entity == "sys1") & (job.protocol == "m2ad")].iloc[0]
    assert flat.calibration == "uncalibrated" and job[job.entity == "sys1"].warning.str.startswith("uncalibrated").all()
    E.reevaluate(d, [ALL_PROTOCOLS])
    again = pd.read_csv(d / "results.csv")
    key = ["protocol", "entity", "aggregate"]
    assert sorted(again.columns) == sorted(job.columns)
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True)[sorted(job.columns)],
                                  job.sort_values(key).reset_index(drop=True)[sorted(job.columns)])
    assert (d / "anomalies.csv").read_bytes() == anomalies
    assert stored(d)["sys1"].status == "uncalibrated"


def test_in_place_padding_change_rewrites_anomalies_csv(m2ad_run, tmp_path):
    """anomalies.csv follows the re-evaluated m2ad rows instead of staying the job's."""
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(m2ad_run, d, ignore=shutil.ignore_patterns("rescored"))
    new = E.reevaluate(d, ["protocol=[m2ad]", "protocol.m2ad.padding=0"])
    anomalies = pd.read_csv(d / "anomalies.csv", keep_default_na=False)
    m2ad = new[new.entity != "ALL"].set_index("entity")
    assert anomalies.groupby("entity").size().to_dict() == m2ad.n_detected[m2ad.n_detected > 0].to_dict()
    assert (anomalies.top_sensors.str.count(";") == 2).all()  # the drivers are kept (3 sensors named)


def test_runs_without_score_offsets_fall_back_to_the_window_span_and_say_so(m2ad_run, tmp_path, caplog):
    """Run dirs written before the offsets were kept still re-evaluate, with the old window span."""
    d = v1_run(tmp_path)
    # a forecaster, window 20: its score describes step start + 20
    assert E.load_scores(d)[0].window_offsets.tolist() == [20]
    rewrite_v1_scores(d, meta_drop="score_offsets")
    (e, *_) = E.load_scores(d)
    assert e.window_offsets is None
    with caplog.at_level("WARNING"):
        rows = E.reevaluate(d, ["protocol=[madcluster]"])
    assert "no score_offsets" in caplog.text and (rows.status == "ok").all()
    # the old span: window s is labelled by steps s..s+19
    (e0,) = [x for x in E.load_scores(v1_run(tmp_path / "again")) if x.name == "sys0"]
    old = P.build("madcluster", {"range_window": 100}).evaluate(
        [P.EntityScores(**{**e0.__dict__, "window_offsets": np.arange(20)})])[0]
    assert rows[rows.entity == "sys0"].f1.iloc[0] == pytest.approx(old["f1"])


# -- resumable re-scoring ---------------------------------------------------------------------------
def _variants(run_dir):
    out = {}
    for p in sorted((run_dir / "rescored").iterdir()):
        res = p / "results.csv"
        out[p.name] = pd.read_csv(res) if res.exists() else None
    return out


@pytest.mark.slow
def test_a_skipped_job_writes_the_rescore_variants_it_is_missing(tmp_path):
    """Bug: `rescore` is not in config_hash and a skipped job returned before re-scoring, so a
    re-run with a new rescore list wrote nothing, and a job killed while re-scoring never got
    its missing variants (its results.csv already said ok)."""
    common = M2AD + ["dataset.n_systems=1", "skip_done=true", f"paths.output_dir={tmp_path}"]
    first = tmp_path / "old" / "run"
    run.main(compose_cfg(common + ['rescore=["scoring.calibration=chi2,std4"]']), first)
    v = _variants(first)
    (chi2,) = [k for k in v if k.startswith("calibration-chi2")]
    (std4,) = [k for k in v if k.startswith("calibration-std4")]
    # killed while re-scoring std4: its dir has a config.yaml and nothing else
    for f in ("results.csv", "scores.npz", "train_log.csv"):
        (first / "rescored" / std4 / f).unlink()
    chi2_bytes = (first / "rescored" / chi2 / "results.csv").read_bytes()

    # the same job again, with the list grown by a second axis: gmm (the earlier two) and normal
    again = tmp_path / "new" / "run"
    df = run.main(compose_cfg(common + ['rescore=["scoring.calibration=chi2,std4","scoring.distribution=gmm,normal"]']),
                  again)
    assert (again / "skipped.json").exists() and not (again / "results.csv").exists()
    v = _variants(first)
    assert len(v) == 4 and all(r is not None and (r.status == "ok").all() for r in v.values())
    assert len({r.config_hash.iloc[0] for r in v.values()} | {df.config_hash.iloc[0]}) == 5
    # chi2+gmm is the chi2 variant already written: left as it was; std4 is redone in its own dir
    assert (first / "rescored" / chi2 / "results.csv").read_bytes() == chi2_bytes
    assert not any(k.startswith("calibration-chi2+distribution-gmm") for k in v)
    # the re-run's sweep table has the run and every variant, through skipped.json
    collected, _ = collect(tmp_path / "new")
    assert collected.config_hash.nunique() == 5 and (collected.status == "ok").all()


def test_madbench_eval_resumes_and_redo_rescores(m2ad_run, capsys):
    variant = ["scoring.alpha=0.01"]
    first, errors = E.rescore_all([m2ad_run], variant, progress=False)
    assert len(first) == 1 and not errors
    res = first[0] / "results.csv"
    before = pd.read_csv(res).run_id.iloc[0]
    # again: an ok variant is left as it is
    assert E.rescore_all([m2ad_run], variant, progress=False) == ([], [])
    assert pd.read_csv(res).run_id.iloc[0] == before
    # a failed one is redone, in its own dir
    pd.read_csv(res).assign(status="failed").to_csv(res, index=False)
    (again,), _ = E.rescore_all([m2ad_run], variant, progress=False)
    assert again == first[0] and (pd.read_csv(res).status == "ok").all()
    redone = pd.read_csv(res).run_id.iloc[0]
    assert redone != before
    # madbench-eval: nothing to do, then --redo re-scores an ok one too
    assert E.main([str(m2ad_run), *variant]) == [] and "already has an ok result" in capsys.readouterr().err
    assert E.main([str(m2ad_run), *variant, "--redo"]) == [first[0]]
    assert pd.read_csv(res).run_id.iloc[0] != redone


# -- issue 16: unknown keys, in-place records, skipped and identical variants -----------------
@pytest.fixture
def own_m2ad_run(m2ad_run, tmp_path):
    """A copy of the m2ad run without the variants other tests write into it."""
    import shutil

    d = tmp_path / "run"
    shutil.copytree(m2ad_run, d, ignore=shutil.ignore_patterns("rescored"))
    return d


def test_unknown_keys_are_refused_and_write_nothing(own_m2ad_run):
    """`protocol.m2ad.grouping=forward protocol.m2ad.bridge=0,360` used to write two variant
    dirs with new hashes and identical numbers when neither key existed (a run trained before
    issue 14, simulated by taking them out of its config.yaml). Now the run dir's config is
    migrated when read (madbench.rundir.migrate_config): the keys are there, at the values the
    old code used (padding, bridge 360), so the override is a real change."""
    from omegaconf import OmegaConf

    cfg_path = own_m2ad_run / "config.yaml"
    new = OmegaConf.load(cfg_path)
    old = OmegaConf.load(cfg_path)
    del old.protocol.m2ad["grouping"], old.protocol.m2ad["bridge"]
    OmegaConf.save(old, cfg_path)
    with pytest.raises(ConfigError, match=r"^protocol\.m2ad\.grupping: unknown key \(not in the run's config\); "
                                          r"protocol\.m2ad has bridge, grouping, padding, range_window; a new key needs \+protocol\.m2ad\.grupping=\.\.\.$"):
        E.rescore_all([own_m2ad_run], ["protocol.m2ad.grupping=forward", "protocol.m2ad.bridge=0,360"], progress=False)
    assert not (own_m2ad_run / "rescored").exists()
    done, errors = E.rescore_all([own_m2ad_run], ["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=0"],
                                 progress=False)
    assert len(done) == 1 and not errors
    OmegaConf.save(new, cfg_path)
    with pytest.raises(ConfigError, match=r"^scoring\.calibraton: unknown key .*scoring has alpha, calibration, covariance_type"):
        E.rescore(own_m2ad_run, ["scoring.calibraton=chi2"])
    # a key added with + that the protocol does not take is refused by the protocol
    with pytest.raises(ConfigError, match=r"^protocol\.m2ad\.gruping: unknown key; expected one of range_window, padding"):
        E.rescore(own_m2ad_run, ["+protocol.m2ad.gruping=forward"])
    with pytest.raises(ConfigError, match=r"^protocol\.m2ad\.gruping: unknown key"):
        E.reevaluate(own_m2ad_run, ["protocol.m2ad.gruping=forward"])
    assert [p.name for p in (own_m2ad_run / "rescored").iterdir()] == [done[0].name]


@pytest.mark.slow
def test_cli_help_and_a_bad_value_in_place_are_one_line(own_m2ad_run):
    h = subprocess.run([str(BIN / "madbench-eval"), "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and h.stdout.startswith("usage: madbench-eval") and not h.stderr
    before = (own_m2ad_run / "results.csv").read_bytes()
    p = script("madbench-eval", str(own_m2ad_run), "protocol=[tslib]", "protocol.tslib.range_window=abc")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == "madbench-eval: error: protocol.tslib.range_window='abc'; expected an integer >= 1"
    assert (own_m2ad_run / "results.csv").read_bytes() == before


def test_in_place_reevaluation_records_what_it_changed(own_m2ad_run):
    """`protocol=[tslib,m2ad] protocol.m2ad.padding=0` in place used to write no
    anomalies.csv and leave config.yaml listing the old protocols: the padding used was
    recorded nowhere."""
    from omegaconf import OmegaConf

    from madbench.config import config_hash

    d = own_m2ad_run
    (d / "anomalies.csv").unlink()
    new = E.reevaluate(d, ["protocol=[tslib,m2ad]", "protocol.m2ad.padding=0"])
    saved = OmegaConf.load(d / "config.yaml")
    assert list(saved.protocol) == ["strict", "m2ad", "tslib"] and saved.protocol.m2ad.padding == 0
    after = pd.read_csv(d / "results.csv")
    assert set(after.protocol) == {"strict", "m2ad", "tslib"} and set(after.config_hash) == {config_hash(saved)}
    m2ad = new[(new.protocol == "m2ad") & (new.entity != "ALL")]
    anomalies = pd.read_csv(d / "anomalies.csv")
    assert len(anomalies) == m2ad.n_detected.sum() > 0


@pytest.mark.slow
def test_skipped_variants_are_said_and_no_hash_gets_two_dirs(tmp_path):
    """`scoring=raw,m2ad` on a raw run used to skip raw silently and write `scoring-m2ad-...`
    beside an earlier `...calibration-gamma-...` with the same config_hash."""
    d = tmp_path / "raw"
    # m2ad's fit reads every train residual: a raw run keeps them only with score_train=all
    run.main(compose_cfg(["trainer.epochs=1", "dataset.n_systems=1", "score_train=all"]), d)
    notes = []
    done, errors = E.rescore_all([d], ["scoring=m2ad", "scoring.calibration=gamma,chi2"], progress=False, notes=notes)
    assert len(done) == 2 and not errors and not notes
    done, errors = E.rescore_all([d], ["scoring=raw,m2ad"], progress=False, notes=notes)
    assert done == [] and not errors
    assert notes[0] == f"skipped [scoring=raw]: equals the run itself ({d})"
    assert notes[1].startswith("skipped [scoring=m2ad]: already has an ok result in ") and "calibration-gamma" in notes[1]
    # --redo re-scores it in the dir that holds its hash, not in a new scoring-m2ad-... one
    done, errors = E.rescore_all([d], ["scoring=m2ad"], progress=False, redo=True)
    assert len(done) == 1 and "calibration-gamma" in done[0].name
    hashes = [pd.read_csv(p / "results.csv").config_hash.iloc[0] for p in (d / "rescored").iterdir()]
    assert len(hashes) == len(set(hashes)) == 2


@pytest.mark.slow
def test_variants_that_give_the_same_scores_are_warned_about(own_m2ad_run):
    """With one component the GMM is the normal fit: `scoring.distribution=gmm,normal` gives
    identical arms (the README's example used to). Said, not left to be found in a table."""
    notes = []
    done, errors = E.rescore_all([own_m2ad_run], ["scoring.distribution=gmm,normal"], progress=False, notes=notes)
    assert len(done) == 1 and not errors
    assert notes[0].startswith("skipped [scoring.distribution=gmm]: equals the run itself")
    assert notes[1] == (f"{done[0]}: [scoring.distribution=normal] gives the same scores as the run itself; the "
                        "overrides that tell them apart change nothing for this run")
    # a real difference (the README's example now): 3 components, and nothing is said
    notes = []
    done, errors = E.rescore_all([own_m2ad_run], ["scoring.n_components=1,3"], progress=False, notes=notes)
    assert len(done) == 1 and not errors and not [n for n in notes if "same scores" in n]


def test_protocol_only_variants_are_not_warned_about_sharing_scores(own_m2ad_run):
    """A grouping/padding search shares the scores by construction: saying that its overrides
    "change nothing" was noise, and wrong (they change the intervals). A scoring override
    that changes nothing is still said, also next to protocol overrides."""
    assert E._scoring_overrides(["protocol.m2ad.padding=0", "scoring.two_sided=true", "+scoring.alpha=0.01",
                                 "attribution=residual", "scoring=m2ad"]) == \
        ["+scoring.alpha=0.01", "scoring.two_sided=true", "scoring=m2ad"]
    notes = []
    done, errors = E.rescore_all([own_m2ad_run], ["protocol.m2ad.padding=0,100"], progress=False, notes=notes)
    assert len(done) == 2 and not errors and not [n for n in notes if "same scores" in n]
    # the same two variant dirs (scores equal to the run's), the second now said to set a scoring key
    warned = E.warn_identical(own_m2ad_run, [(done[0], ["protocol.m2ad.padding=0"]),
                                             (done[1], ["protocol.m2ad.padding=100", "scoring.two_sided=false"])])
    assert len(warned) == 1 and warned[0].startswith(
        f"{done[1]}: [protocol.m2ad.padding=100 scoring.two_sided=false] gives the same scores as the run itself")


# -- issue 14: interval constructions as protocol keys, --variants --------------------------
def test_a_grouping_changes_the_m2ad_rows_only(m2ad_run):
    """The grouping variants above are no identity: their m2ad counts differ from the run's
    padding, and the strict protocol (no intervals) is unchanged."""
    parent = _metric_rows(pd.read_csv(m2ad_run / "results.csv"))
    out_dir, _ = E.rescore(m2ad_run, ["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=0"])
    mine = _metric_rows(pd.read_csv(out_dir / "results.csv"))
    m2ad = mine.protocol == "m2ad"
    assert not mine[m2ad][["event_tp", "event_fp", "event_fn"]].equals(parent[m2ad][["event_tp", "event_fp", "event_fn"]])
    pd.testing.assert_frame_equal(mine[~m2ad], parent[~m2ad])


def test_protocol_typos_and_bad_values_are_refused_before_any_variant_is_written(own_m2ad_run):
    """A typo or a bad value in any combination: a one-line error naming the key, and nothing
    written (no variant dir, results.csv untouched), in both the variant and the in-place path."""
    results = (own_m2ad_run / "results.csv").read_text()
    for overrides, msg in ((["protocol.m2ad.gruping=forward,none"], "protocol.m2ad.gruping: unknown key"),
                           (["protocol.m2ad.grouping=forward", "protocol.m2ad.bridge=50,-1"], "protocol.m2ad.bridge=-1"),
                           (["protocol.m2ad.grouping=sideways"], "protocol.m2ad.grouping='sideways'")):
        with pytest.raises(ConfigError, match=msg):
            E.rescore_all([own_m2ad_run], overrides, progress=False)
    for overrides, msg in ((["protocol.m2ad.gruping=forward"], "protocol.m2ad.gruping: unknown key"),
                           (["protocol.m2ad.bridge=-1"], "protocol.m2ad.bridge=-1")):
        with pytest.raises(ConfigError, match=msg):  # the in-place path too
            E.main([str(own_m2ad_run)] + overrides)
    assert (own_m2ad_run / "results.csv").read_text() == results
    assert not (own_m2ad_run / "rescored").exists()


@pytest.mark.slow
def test_variants_flag_writes_protocol_only_overrides_as_variant_dirs(tmp_path):
    d = tmp_path / "run"
    run.main(compose_cfg(M2AD + ["dataset.n_systems=1"]), d)
    before = pd.read_csv(d / "results.csv")
    p = script("madbench-eval", "--variants", str(d), "protocol.m2ad.grouping=none")
    assert p.returncode == 0, p.stderr
    (variant,) = (d / "rescored").iterdir()
    assert variant.name.startswith("grouping-none-")
    pd.testing.assert_frame_equal(pd.read_csv(d / "results.csv"), before)  # the run itself is untouched
    df = pd.read_csv(variant / "results.csv")
    assert df.config_hash.iloc[0] != before.config_hash.iloc[0] and (df.status == "ok").all()
    # the search table reads the run and its variant: one row per construction
    p = script("madbench-tables", "m2ad_search", str(d))
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(d / "m2ad_search.csv")
    assert table.grouping.tolist() == ["padding", "none"] and table.sided.tolist() == ["one", "one"]

    def total(frame, c):
        return frame[(frame.protocol == "m2ad") & (frame.entity == "ALL")][c].iloc[0]

    for c in ("tp", "fp", "fn"):
        assert table[c].tolist() == [total(before, f"event_{c}"), total(df, f"event_{c}")]
    # without the flag the same override is re-evaluated in place, as before
    p = script("madbench-eval", str(d), "protocol.m2ad.grouping=none")
    assert p.returncode == 0, p.stderr
    assert len(list((d / "rescored").iterdir())) == 1
    after = pd.read_csv(d / "results.csv")
    pd.testing.assert_frame_equal(_metric_rows(after[after.protocol == "m2ad"]), _metric_rows(df[df.protocol == "m2ad"]))


def test_head_score_is_rescorable_from_one_training(tmp_path):
    """`madbench-eval RUN --variants head.score=head,backbone,d` writes three variants from one
    training: the score stage kept every part, so each variant's final score is that part."""
    d = tmp_path / "run"
    run.main(compose_cfg(["backbone=deepsvdd", "head=madcluster", "head.mapping=one-class", "dataset.n_systems=1",
                          "trainer.epochs=1", "protocol=[strict,madcluster]"]), d)
    done = E.main(["--variants", str(d), "head.score=head,backbone,d"])
    assert len(done) == 3
    job = stored(d)["sys0"]
    assert job.test.score_mode == "product"
    for out in done:
        mode = rundir.read_config(out).head.score
        e = stored(out)["sys0"]
        np.testing.assert_allclose(e.score, job.test.components[mode], equal_nan=True)
        np.testing.assert_allclose(e.test.window, job.test.window_components[mode], equal_nan=True)
    # the product is the run itself: nothing new to write
    assert E.main(["--variants", str(d), "head.score=product"]) == []
    # a part the run does not keep is one line naming the key, before any variant dir
    with pytest.raises(ConfigError, match=r"^head\.score='bogus'"):
        E.main(["--variants", str(d), "head.score=bogus"])
