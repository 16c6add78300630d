"""The sweep report and the sweep-level checks of the Optuna objective."""
import pickle

import pytest
from omegaconf import OmegaConf

from madbench.errors import ConfigError
from madbench import rundir as tcsv
from madbench.tracking.callbacks import SweepReport, check_objective, job_state, sweep_status


def _job(d, status=None, skipped=False, started=True):
    if started:
        (d / ".hydra").mkdir(parents=True)
    if skipped:
        (d / "skipped.json").write_text("{}")
    if status:
        tcsv.write_results(d, [{"run_id": "r", "config_hash": "h", "entity": "ALL", "protocol": "strict",
                                "status": status}])


def test_sweep_status_counts_each_state(tmp_path):
    _job(tmp_path / "0_a", "ok")
    _job(tmp_path / "1_b", "ok")
    _job(tmp_path / "2_c", skipped=True)
    _job(tmp_path / "3_d", "failed")
    _job(tmp_path / "4_e")  # killed or still running
    (tmp_path / ".submitit" / "123").mkdir(parents=True)
    assert sweep_status(tmp_path) == {"ok": 2, "skipped": 1, "failed": 1, "missing": 1}
    assert job_state(tmp_path / "4_e") == "running" and job_state(tmp_path / "nope") == "none"
    assert sweep_status(tmp_path / "absent") == {"ok": 0, "skipped": 0, "failed": 0, "missing": 0}


def test_report_prints_tally_and_collected_csv(tmp_path, capsys):
    _job(tmp_path / "0_a", "ok")
    _job(tmp_path / "1_b", "failed")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": "x.BasicLauncher"},
                                      "sweeper": {"_target_": "x.BasicSweeper"}}})
    rep = SweepReport(poll_s=30)
    rep.on_multirun_start(cfg)
    rep.on_multirun_end(cfg)
    out = capsys.readouterr().out
    assert f"sweep finished: 1 done, 0 skipped, 1 failed · collected: {tmp_path / 'collected.csv'}" in out
    assert (tmp_path / "collected.csv").exists()


def test_report_polls_submitit_sweeps_and_pickles_without_its_thread(tmp_path, capsys):
    _job(tmp_path / "0_a", "ok")
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)},
                                      "launcher": {"_target_": "h.submitit_launcher.LocalLauncher"}}})
    rep = SweepReport(poll_s=0.05)
    rep.on_multirun_start(cfg)
    assert rep._thread is not None and rep._thread.is_alive()
    clone = pickle.loads(pickle.dumps(rep))  # what submitit sends to each job
    assert clone._thread is None and clone.poll_s == 0.05
    rep._stop.wait(0.3)
    rep.on_multirun_end(cfg)
    assert rep._thread is None
    out = capsys.readouterr().out
    assert "sweep progress: 1 done, 0 skipped, 0 failed" in out and "sweep finished:" in out


def test_objective_must_be_label_free():
    assert check_objective(OmegaConf.create({})) is None
    assert check_objective(OmegaConf.create({"optimize_metric": "val_loss"})) == "val_loss"
    with pytest.raises(ConfigError, match="optimize_metric=f1: .*test labels"):
        check_objective(OmegaConf.create({"optimize_metric": "f1"}))


@pytest.mark.parametrize("conf, match", [
    ({"optimize_metric": "val_loss", "hydra": {"sweeper": {"_target_": "optuna_sweeper.OptunaSweeper",
                                                           "direction": "maximize"}}}, "direction=maximize"),
    ({"hydra": {"sweeper": {"_target_": "optuna_sweeper.OptunaSweeper", "direction": "minimize"}}},
     "needs optimize_metric"),
    ({"optimize_metric": "event_f1", "hydra": {"sweeper": {"_target_": "optuna_sweeper.OptunaSweeper"}}},
     "optimize_metric=event_f1"),
])
def test_bad_searches_stop_before_any_job(tmp_path, conf, match):
    conf["hydra"] |= {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": "x.BasicLauncher"}}
    with pytest.raises(SystemExit, match=match) as e:
        SweepReport().on_multirun_start(OmegaConf.create(conf))
    assert str(e.value).startswith("madbench: error: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("launcher, extra, expected", [
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": 2}, "2"),
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": 8}, "4"),  # 4 jobs in all
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", {}, "4"),  # all start at once
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", {}, None),  # one after another
    ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", {}, None),  # each its own node share
])
def test_a_sweep_tells_its_jobs_how_many_run_at_once(tmp_path, monkeypatch, launcher, extra, expected):
    """The jobs inherit MADBENCH_CONCURRENT_JOBS, which trainer.num_threads=auto divides the
    cores by; the launching process gets its environment back at the end."""
    import os

    monkeypatch.delenv("MADBENCH_CONCURRENT_JOBS", raising=False)
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": launcher, **extra},
                                      "sweeper": {"_target_": "x.BasicSweeper"},
                                      "overrides": {"task": ["seed=0,1", "backbone=lstm,lstm_ae", "trainer.epochs=1"]}}})
    rep = SweepReport(poll_s=0)
    rep.on_multirun_start(cfg)
    assert os.environ.get("MADBENCH_CONCURRENT_JOBS") == expected
    rep.on_multirun_end(cfg)
    assert "MADBENCH_CONCURRENT_JOBS" not in os.environ
