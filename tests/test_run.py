"""End-to-end: a tiny job through every stage, the run dir contract, determinism, W&B."""
import json

import numpy as np
import pandas as pd
import pytest

from madbench import run
from madbench.errors import ConfigError, DataError
from madbench.metrics import METRIC_COLUMNS
from madbench.rundir import RESULT_COLUMNS
from tests.conftest import ROOT, TINY_CLI, compose_cfg, stored, script
from tests.tracking.wandb_records import raw_records


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(["protocol=[strict,madcluster,m2ad,tslib]", "scoring.calibration=pot", "logger.csv.plots=true"])
    df = run.main(cfg, d)
    return cfg, d, df


def test_run_dir_contract(tiny_run):
    cfg, d, df = tiny_run
    for f in ("config.yaml", "results.csv", "scores.npz", "train_log.csv"):
        assert (d / f).exists(), f
    # the synthetic events name their sensors: one attribution plot per system too
    assert sorted(p.name for p in (d / "plots").glob("*.png")) == ["sys0.png", "sys0_attribution.png", "sys1.png",
                                                                   "sys1_attribution.png"]
    log = pd.read_csv(d / "train_log.csv")
    assert set(log.entity) == {"sys0", "sys1"} and log.epoch.max() == 2
    # the saved config records the device type it trained on, and the rows carry its hash
    from omegaconf import OmegaConf

    from madbench.config import config_hash

    saved = OmegaConf.load(d / "config.yaml")
    assert saved.device_type == "cpu" and set(df.config_hash) == {config_hash(saved)}


def test_result_schema(tiny_run):
    _, d, df = tiny_run
    on_disk = pd.read_csv(d / "results.csv")
    assert list(on_disk.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert set(METRIC_COLUMNS) <= set(on_disk.columns)
    assert (on_disk.status == "ok").all() and (on_disk.trained == True).all()  # noqa: E712
    # one row per entity × protocol, plus ALL rows (strict: micro and macro)
    per_entity = on_disk[on_disk.entity != "ALL"]
    assert len(per_entity) == 2 * 4
    all_rows = on_disk[on_disk.entity == "ALL"]
    assert sorted(all_rows[all_rows.protocol == "strict"]["aggregate"]) == ["macro", "micro"]
    assert set(all_rows.protocol) == {"strict", "madcluster", "m2ad", "tslib"}
    uses = on_disk.groupby("protocol").threshold_uses_test_labels.first().to_dict()
    assert uses == {"strict": False, "madcluster": True, "m2ad": False, "tslib": False}
    assert on_disk.config_hash.nunique() == 1 and on_disk.run_id.nunique() == 1


def test_scores_align_with_labels(tiny_run):
    cfg, d, df = tiny_run
    kept = stored(d)
    assert list(kept) == ["sys0", "sys1"]
    # a forecaster's window score describes its target step, start + window (madcluster's window labels)
    assert kept["sys0"].test.offsets.tolist() == [cfg.dataset.window]
    assert kept["sys0"].status == "ok"
    from madbench.data.synthetic import load

    ents = {e.name: e for e in load(n_systems=2, train_len=400, test_len=400, seed=0)}
    for name, e in kept.items():
        labels, score = e.labels, e.score
        np.testing.assert_array_equal(labels, ents[name].labels)
        assert score.shape == labels.shape
        # forecast: the first `window` steps have no score (missing, never zero)
        w = cfg.dataset.window
        assert np.isnan(score[:w]).all() and np.isfinite(score[w:]).all()
        assert e.test.residuals.shape == (len(labels), 8)
    strict = df[(df.protocol == "strict") & (df.entity == "sys0")].iloc[0]
    assert strict.n_missing == cfg.dataset.window and strict.n_scored == 400 - cfg.dataset.window


def test_same_seed_same_scores(tmp_path):
    cfg = compose_cfg(["dataset.n_systems=1", "trainer.epochs=1"])
    run.main(cfg, tmp_path / "a")
    run.main(cfg, tmp_path / "b")
    a, b = stored(tmp_path / "a")["sys0"], stored(tmp_path / "b")["sys0"]
    np.testing.assert_array_equal(a.score, b.score)
    c = compose_cfg(["dataset.n_systems=1", "trainer.epochs=1", "seed=1"])
    run.main(c, tmp_path / "c")
    assert not np.array_equal(stored(tmp_path / "c")["sys0"].score, a.score, equal_nan=True)


def test_bad_config_fails_before_training_with_failed_row(tmp_path):
    cfg = compose_cfg(["trainer.epochs=-3"])
    with pytest.raises(ConfigError, match="trainer.epochs"):
        run.main(cfg, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv")
    assert (res.status == "failed").all() and res.error.str.contains("trainer.epochs").all()
    assert not (tmp_path / "scores.npz").exists()


def test_missing_dataset_is_one_line_failed_row(tmp_path):
    """No real data needed: a real-dataset config pointed at an empty directory."""
    cfg = compose_cfg(["dataset=msl", f"paths.data_dir={tmp_path / 'nowhere'}", "trainer.epochs=1"], tiny=False)
    with pytest.raises(DataError) as e:
        run.main(cfg, tmp_path / "run")
    msg = str(e.value)
    assert "nowhere" in msg and "\n" not in msg
    res = pd.read_csv(tmp_path / "run" / "results.csv")
    assert (res.status == "failed").all() and res.error.str.contains("nowhere").all()
    assert not (tmp_path / "run" / "scores.npz").exists()


@pytest.mark.slow
def test_nan_loss_is_a_failed_row_not_a_traceback(tmp_path):
    p = script("madbench", *TINY_CLI, "trainer.inject_nan_loss=true", f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert p.returncode != 0
    assert "non-finite training loss" in p.stderr and "Traceback" not in p.stderr
    res = pd.read_csv(tmp_path / "results.csv")
    assert (res.status == "failed").all()


def test_the_in_process_app_leaves_the_test_process_as_it_found_it(tmp_path):
    """tests.conftest.script runs `madbench` in the test's process (the tests of the app
    below do): its output is captured, and what the job changes (Hydra's logging handlers,
    the environment, the working directory, torch's threads, Hydra's globals) is put back."""
    import logging
    import os

    import torch
    from hydra.core.global_hydra import GlobalHydra

    root, app = logging.getLogger(), logging.getLogger("madbench")
    threads = 1 if torch.get_num_threads() != 1 else 2

    def state():
        return (root.handlers[:], root.level, app.handlers[:], app.level, dict(os.environ), os.getcwd(),
                torch.get_num_threads())

    before = state()
    p = script("madbench", *TINY_CLI, f"trainer.num_threads={threads}", f"hydra.run.dir={tmp_path / 'run'}",
               cwd=tmp_path, env=os.environ | {"MADBENCH_TEST_VAR": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert "madbench · synthetic · lstm/forecast" in p.stdout and f"trainer: {threads} CPU thread" in p.stdout
    assert (tmp_path / "run" / "results.csv").exists() and (tmp_path / "run" / "cli.log").read_text()
    assert state() == before and not GlobalHydra.instance().is_initialized()


@pytest.mark.slow
def test_multirun_and_collect(tmp_path):
    p = script("madbench", "-m", "backbone=lstm,lstm_ae", "seed=0,1", *TINY_CLI, "objective=forecast",
               f"paths.output_dir={tmp_path}", cwd=ROOT)
    # lstm_ae + forecast is refused at compose time: recorded as failed rows, the sweep goes on
    assert p.returncode == 0, p.stderr[-2000:]
    runs = sorted((tmp_path / "multirun").glob("*/*/results.csv"))
    assert len(runs) == 4
    assert len({r.parent.name for r in runs}) == 4
    c = script("madbench-collect", str(tmp_path))
    assert c.returncode == 0, c.stderr
    df = pd.read_csv(tmp_path / "collected.csv")
    assert df.run_id.nunique() == 4
    status = df.groupby("backbone").status.agg(set).to_dict()
    assert status == {"lstm": {"ok"}, "lstm_ae": {"failed"}}
    assert df[df.status == "failed"].error.str.contains("needs a backbone").all()


@pytest.mark.slow
def test_wandb_offline_files(tmp_path):
    wandb = pytest.importorskip("wandb")
    cfg = compose_cfg(["dataset.n_systems=1", "trainer.epochs=1", "logger=[csv,wandb]", "logger.csv.plots=true"])
    df = run.main(cfg, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = list(runs[0].glob("*.wandb"))
    assert files and files[0].stat().st_size > 0
    # read back what was logged from the offline transaction log
    from wandb.proto import wandb_internal_pb2 as pb

    def scan():
        keys, summary, exit_seen = set(), {}, False
        for data in raw_records(files[0]):
            rec = pb.Record()
            rec.ParseFromString(data)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                keys.update(i.key or "/".join(i.nested_key) for i in rec.history.item)
            elif kind == "summary":
                for i in rec.summary.update:
                    summary[i.key or "/".join(i.nested_key)] = i.value_json
            elif kind == "exit":
                exit_seen = True
        return keys, summary, exit_seen

    import time

    for _ in range(30):  # the W&B core process may still be flushing the file
        keys, summary, exit_seen = scan()
        if exit_seen:
            break
        time.sleep(0.5)
    assert "train/sys0/train_loss" in keys and "plots/sys0/path" in keys
    assert "strict/macro/f1" in summary
    assert abs(float(summary["strict/macro/auc_roc"]) - df[(df.entity == "ALL") & (df["aggregate"] == "macro")].auc_roc.iloc[0]) < 1e-9
    assert exit_seen, "wandb.finish() must always be called"



def test_dataset_shard_splits_entities_and_refuses_bad_values():
    from madbench.errors import ConfigError as CE

    names = lambda shard: [e.name for e in run.load_entities(compose_cfg(["dataset.n_systems=4", f"dataset.shard={shard}"]))]
    assert names("0/2") == ["sys0", "sys2"] and names("1/2") == ["sys1", "sys3"]
    assert sorted(names("0/3") + names("1/3") + names("2/3")) == ["sys0", "sys1", "sys2", "sys3"]
    for bad in ("2/2", "x", "5/9"):
        with pytest.raises(CE, match="dataset.shard"):
            names(bad)


# -- what a new user hits in the first hour (issue 16) ----------------------------------------
@pytest.mark.slow
def test_a_refused_config_is_one_line_before_training_and_leaves_nothing_to_collect(tmp_path):
    """A bad scoring value used to fail after training ("1 epochs in 0 s" in the log) and
    leave a failed results.csv that madbench-collect counted. Refused up front, it is not a
    failed job."""
    from madbench.errors import DataError
    from madbench.tracking.collect import collect

    p = script("madbench", *TINY_CLI, "scoring=m2ad", "scoring.calibration=gama", f"hydra.run.dir={tmp_path / 'run'}",
               cwd=ROOT)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == ("madbench: error: scoring.calibration='gama'; expected one of gamma, "
                                                 "chi2, std4")
    assert "epochs in" not in p.stdout + p.stderr  # nothing was trained
    assert not (tmp_path / "run").exists()  # Hydra made it; a refusal leaves none
    with pytest.raises(DataError, match="no run dir"):  # nothing to collect: said, not an empty table
        collect(tmp_path)


def test_a_series_shorter_than_the_window_is_one_line(tmp_path):
    """Synthetic data shorter than a window used to raise RuntimeError from unfold."""
    from madbench.errors import DataError

    cfg = compose_cfg(["dataset.n_systems=1", "dataset.train_len=20", "dataset.window=30", "trainer.epochs=1"])
    with pytest.raises(DataError) as info:
        run.main(cfg, tmp_path)
    assert str(info.value) == ("synthetic:sys0: train has 20 rows; expected at least 32 for dataset.window=30 "
                               "(a shorter window, or longer series)")
    assert (pd.read_csv(tmp_path / "results.csv").status == "failed").all()  # a job's failure is still a row
    cfg = compose_cfg(["dataset.n_systems=1", "dataset.test_len=25", "dataset.window=30", "trainer.epochs=1"])
    with pytest.raises(DataError, match=r"^synthetic:sys0: test has 25 rows; expected at least 31 for dataset.window=30"):
        run.main(cfg, tmp_path / "test")


@pytest.mark.slow
def test_a_skipped_job_points_at_the_results_it_reuses(tmp_path):
    """skip_done used to print `results: <own dir>/results.csv`, a file that does not exist."""
    tiny = [*TINY_CLI, "skip_done=true", f"paths.output_dir={tmp_path}"]
    first = tmp_path / "runs" / "first"
    run.main(compose_cfg(tiny, tiny=False), first)
    p = script("madbench", *tiny, f"hydra.run.dir={tmp_path / 'runs' / 'second'}", cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    line = next(ln for ln in p.stdout.splitlines() if "results:" in ln)
    assert f"results: {first.resolve()}/results.csv (skip_done: this config was already run there)" in line
    assert (first / "results.csv").exists() and not (tmp_path / "runs" / "second" / "results.csv").exists()


def test_epochs_0_scores_the_untrained_model_and_every_row_says_so(tmp_path, caplog):
    """trainer.epochs=0 used to be an ordinary ok run ("0 epochs in 0 s", F1 0.211). It is
    the untrained floor on purpose: the rows say trained=false, with a warning; a baseline
    that is fitted without gradient descent runs no epoch either and is trained."""
    import logging

    caplog.set_level(logging.WARNING, logger="madbench")
    one = ["dataset.n_systems=1", "logger.csv.plots=false", "trainer.epochs=0"]
    df = run.main(compose_cfg(one), tmp_path / "lstm")
    assert (df.trained == False).all() and (df.epochs_run.dropna() == 0).all()  # noqa: E712
    assert df.warning.str.startswith("untrained: trainer.epochs=0").all()
    assert any("trainer.epochs=0: no epoch" in r.getMessage() for r in caplog.records)
    on_disk = pd.read_csv(tmp_path / "lstm" / "results.csv")
    assert (on_disk.trained == False).all()  # noqa: E712
    base = run.main(compose_cfg([*one, "backbone=constant"]), tmp_path / "constant")
    assert (base.trained == True).all() and "warning" not in base  # noqa: E712


# -- refusals before the work; one protocol's refusal fails only its rows (issue 28) -----------
def test_a_protocol_refusal_that_needs_only_the_split_sizes_comes_before_training(tmp_path, monkeypatch):
    """`scoring.calibration=empirical` (formerly protocol.m2ad.calibration) with too few
    validation steps for alpha used to be refused after training (108 s on MSL C-1), and took the strict rows down with it."""
    from madbench.fit import Trainer

    def no_fit(*a, **kw):
        raise AssertionError("trained before the refusal")

    monkeypatch.setattr(Trainer, "fit", no_fit)
    cfg = compose_cfg(["dataset.n_systems=1", "protocol=[strict,m2ad]", "scoring.calibration=empirical"])
    with pytest.raises(DataError) as e:
        run.main(cfg, tmp_path)
    # 400 train steps, window 20: 380 training windows, the last 20% (76) score the validation steps
    assert str(e.value).startswith("entity sys0: scoring.calibration=empirical cannot raise an alarm: with 76 "
                                   "validation scores the smallest p-value is 1/77")
    assert (pd.read_csv(tmp_path / "results.csv").error == str(e.value)).all()
    # a larger alpha can flag with 76 steps: nothing refused (the fit is stubbed, so only the check runs)
    import madbench
    from madbench.checks import check_sizes

    ok = compose_cfg(["dataset.n_systems=1", "protocol=[m2ad]", "scoring.calibration=empirical",
                      "scoring.alpha=0.02"])
    det = madbench.Detector.from_config(ok).prepare()   # the job's training windows and trainer
    assert (det.spec_.window, det.spec_.stride, det.spec_.horizon, det.trainer_.val_ratio) == (20, 1, 1, 0.2)
    check_sizes(ok, [[e] for e in run.load_entities(ok)], det.spec_, det.trainer_.val_ratio)


def test_a_protocol_that_refuses_the_scores_fails_its_own_rows_only(tmp_path):
    """A refusal the config could not predict (here: scores stored without the scoring
    stage's alarms) fails the m2ad rows; the strict rows are written ok beside them."""
    from madbench import protocols as P
    from madbench.results import RunResults

    cfg = compose_cfg(["protocol=[strict,m2ad]", "scoring.calibration=pot"])
    res = RunResults(cfg, tmp_path)
    rng = np.random.default_rng(0)
    y = np.zeros(300, np.int8)
    y[100:110] = 1
    res.entity_scores = [P.EntityScores(name="sys0", labels=y, score=rng.random(300), train_score=rng.random(200),
                                        val_mask=np.r_[np.zeros(100, bool), np.ones(100, bool)],
                                        window_score=np.zeros(0), window_start=np.zeros(0, int), window=20)]
    df = res.finalize(res.evaluate_protocols(), "ok", "", 0.0)
    strict, m2ad = df[df.protocol == "strict"], df[df.protocol == "m2ad"]
    assert (strict.status == "ok").all() and len(strict) == 3  # sys0, micro, macro
    assert list(m2ad.status) == ["failed"] and m2ad.error.iloc[0].startswith("entity sys0: protocol=m2ad counts the scoring stage's alarms")
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert sorted(on_disk.status) == ["failed", "ok", "ok", "ok"]


@pytest.mark.slow
def test_a_refused_single_run_leaves_no_run_dir(tmp_path):
    """`+bakbone=lstm` (Hydra's own hint for the typo `bakbone=lstm`) used to train the default
    backbone; every refusal left a run dir holding only Hydra's files and an empty cli.log."""
    p = script("madbench", *TINY_CLI, "+bakbone=lstm", f"hydra.run.dir={tmp_path / 'run'}", cwd=ROOT)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(
        "madbench: error: bakbone: unknown key, nothing reads it; did you mean backbone=lstm?")
    assert not (tmp_path / "run").exists()


def test_a_refusal_in_a_dir_that_held_files_writes_why(tmp_path):
    from madbench.cli import discard_refused

    (tmp_path / "mine.txt").write_text("kept")
    (tmp_path / "cli.log").write_text("")
    discard_refused(tmp_path, "cli.log", "madbench: error: x: unknown key")
    assert (tmp_path / "refused.txt").read_text() == "madbench: error: x: unknown key\n"
    assert (tmp_path / "mine.txt").exists()
    hydra_only = tmp_path / "run"
    (hydra_only / ".hydra").mkdir(parents=True)
    for f in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (hydra_only / ".hydra" / f).write_text("{}")
    (hydra_only / "cli.log").write_text("")
    discard_refused(hydra_only, "cli.log", "madbench: error: x")
    assert not hydra_only.exists()
