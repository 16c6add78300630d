"""Sweeps end to end: launchers as config, resume / skip-done, concurrency-safe results,
failed jobs, W&B per job, the Optuna objective and the sweep report. Every sweep here is a
real `madbench -m` process with tiny jobs (1 epoch, short series, no plots)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from madbench import run
from madbench.results import RunResults
from madbench.tracking.collect import KEY, collect
from tests.conftest import CONFIGS, ROOT, TINY_CLI, compose_cfg, script

BIN = Path(sys.executable).parent
# one thread per job process: sweeps here run several jobs at once on few cores
ENV = os.environ | {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1"}


def madbench(out: Path, *args: str, tiny=TINY_CLI) -> subprocess.CompletedProcess:
    """``madbench <args>`` run in this process (tests.conftest.script): a sweep's driver and,
    with the basic launcher, its jobs; the joblib and submitit launchers start their jobs in
    processes of their own, which get ENV."""
    return script("madbench", *args, *tiny, f"paths.output_dir={out}", cwd=ROOT, env=ENV)


def sweeps(out: Path) -> list[Path]:
    return sorted(p for p in (out / "multirun").iterdir() if p.is_dir())


def jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))


def tally_line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("sweep finished:")]
    assert lines, stdout[-3000:]
    return lines[-1]


def assert_no_duplicates(df: pd.DataFrame) -> None:
    assert not df.assign(aggregate=df["aggregate"].fillna("")).duplicated(KEY).any()


# -- launchers as config --------------------------------------------------------------------
def _hydra_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


def test_launcher_configs_are_madbenchs():
    slurm = _hydra_cfg("hydra/launcher=submitit_slurm").launcher
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    # our file wins over the plugin's defaults (timeout 60, no GPU, parallelism 256)
    assert (slurm.gpus_per_node, slurm.tasks_per_node, slurm.timeout_min) == (1, 1, 240)
    assert slurm.array_parallelism == 32 and slurm.cpus_per_task == 8 and slurm.mem_gb == 32
    assert "partition" in slurm and slurm.max_num_timeout == 0
    local = _hydra_cfg("hydra/launcher=submitit_local").launcher
    assert local._target_.endswith("submitit_launcher.LocalLauncher") and "partition" not in local
    jl = _hydra_cfg("hydra/launcher=joblib").launcher
    assert jl._target_.endswith("JoblibLauncher") and jl.n_jobs == -1
    assert _hydra_cfg().launcher._target_.endswith("BasicLauncher")  # basic stays the default
    opt = _hydra_cfg("hparams_search=optuna")
    assert opt.sweeper._target_.endswith("OptunaSweeper") and opt.sweeper.direction == "minimize"
    assert set(opt.sweeper.params) == {"trainer.optimizer.lr", "backbone.model.hidden", "trainer.batch_size"}


@pytest.mark.slow
def test_cfg_hydra_shows_submitit_settings(tmp_path):
    p = subprocess.run([str(BIN / "madbench"), "hydra/launcher=submitit_slurm", "--cfg", "hydra", "-p",
                        "hydra.launcher"], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    launcher = yaml.safe_load(p.stdout)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["gpus_per_node"] == 1
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_slurm_launcher_asks_for_one_gpu_per_job(tmp_path, monkeypatch):
    """What sbatch would get, rendered by submitit from our config the way the plugin passes it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")  # submitit checks that it is on a SLURM host
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    params = OmegaConf.to_container(_hydra_cfg("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu").launcher)
    params.pop("_target_")
    ex = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "sub", slurm_max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    ex.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB", "--time=240", "--partition=gpu",
                 "--ntasks-per-node=1", "--job-name=madbench"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert ex._executor.parameters["array_parallelism"] == 32


def test_skip_done_defaults():
    cfg = compose_cfg([])
    assert cfg.skip_done is None  # auto: on in multiruns, off in single runs
    assert run._multirun_root() is None  # not under Hydra: single-run rules
    assert cfg.optimize_metric is None and compose_cfg(["hparams_search=optuna"]).optimize_metric == "val_loss"


def test_skip_done_in_a_single_run(tmp_path):
    tiny = ["dataset.n_systems=1", "trainer.epochs=1", "logger.csv.plots=false", f"paths.output_dir={tmp_path}"]
    a, b, c = (tmp_path / "runs" / x for x in "abc")
    first = run.main(compose_cfg([*tiny, "skip_done=true"]), a)
    second = run.main(compose_cfg([*tiny, "skip_done=true"]), b)
    # under paths.output_dir: the earlier ok run is found, nothing is trained again
    assert json.loads((b / "skipped.json").read_text())["done_in"] == str(a.resolve())
    assert not (b / "results.csv").exists() and not (b / "config.yaml").exists()
    assert second.run_id.tolist() == first.run_id.tolist()
    # the default (null) is off outside sweeps: the same config runs again
    run.main(compose_cfg(tiny), c)
    assert (c / "results.csv").exists() and not (c / "skipped.json").exists()


def test_a_skipped_job_gives_the_earlier_runs_rows_whatever_its_run_id_looks_like(tmp_path, monkeypatch):
    """A run_id of 12 decimal digits (uuid4().hex[:12]: 0.35% of runs) came back from the
    earlier run's results.csv as an integer (CI caught it in test_skip_done_in_a_single_run)."""
    import uuid

    monkeypatch.setattr("madbench.results.uuid.uuid4", lambda: uuid.UUID("75365389-4810-4000-8000-000000000000"))
    tiny = ["dataset.n_systems=1", "trainer.epochs=1", f"paths.output_dir={tmp_path}", "skip_done=true"]
    first = run.main(compose_cfg(tiny), tmp_path / "runs" / "a")
    second = run.main(compose_cfg(tiny), tmp_path / "runs" / "b")
    assert (tmp_path / "runs" / "b" / "skipped.json").exists()
    assert second.run_id.tolist() == first.run_id.tolist() == ["753653894810"] * len(first)


def test_best_val_loss_is_mean_of_per_entity_minimum(tmp_path):
    recs = [{"entity": "a", "epoch": 1, "val_loss": 3.0}, {"entity": "a", "epoch": 2, "val_loss": 1.0},
            {"entity": "b", "epoch": 1, "val_loss": 2.0}, {"entity": "b", "epoch": 2, "val_loss": float("nan")},
            {"entity": "c", "epoch": 1, "val_loss": float("nan")}]
    assert RunResults.mean_best_val_loss(recs) == pytest.approx(1.5)
    results = run.Job(compose_cfg([]), tmp_path).results
    results.train_log = recs  # what the trainer's on_epoch callback collects
    assert results.best_val_loss() == pytest.approx(1.5)
    assert np.isnan(RunResults.mean_best_val_loss([]))


# -- resume a killed sweep (submitit_local) -----------------------------------------------------
@pytest.mark.slow
def test_submitit_sweep_resumes_after_kill(tmp_path):
    out = tmp_path / "out"
    common = ["-m", "hydra/launcher=submitit_local", "hydra.callbacks.sweep_report.poll_s=1"]
    # the "killed" sweep: only its first job finished (run here by the basic launcher: what
    # the rerun reads is the sweep root's run dirs, whichever launcher wrote them; a submitit
    # job process costs about 5 s) ...
    p = madbench(out, "-m", "seed=0")
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 1 done, 0 skipped, 0 failed")
    (killed,) = sweeps(out)
    (first,) = jobs(killed)
    before = (first / "results.csv").read_bytes(), (first / "results.csv").stat().st_mtime_ns
    # ... and one was killed mid-way: started, half-written temp file, no results
    dead = killed / "1_killed"
    (dead / ".hydra").mkdir(parents=True)
    (dead / "config.yaml").write_text("seed: 1\n")
    (dead / ".results.csv.x1y2.tmp").write_text("run_id,config_hash,seed\nabc,")

    p = madbench(out, *common, "seed=0,1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 1 done, 1 skipped, 0 failed")
    assert "sweep progress:" in p.stdout
    rerun = sweeps(out)[-1]
    assert rerun != killed
    assert len(list((rerun / ".submitit").glob("*/*_log.out"))) == 2, "jobs ran through submitit"
    j = jobs(rerun)
    assert len(j) == 2
    # the finished job was not run again: it points at the earlier run, which is untouched
    skipped = json.loads((j[0] / "skipped.json").read_text())
    assert skipped["done_in"] == str(first.resolve())
    assert not (j[0] / "results.csv").exists() and not (j[0] / "train_log.csv").exists()
    assert ((first / "results.csv").read_bytes(), (first / "results.csv").stat().st_mtime_ns) == before
    assert all((d / "results.csv").exists() and not (d / "skipped.json").exists() for d in j[1:])

    df = pd.read_csv(rerun / "collected.csv")
    assert df.groupby("config_hash").run_id.nunique().eq(1).all()
    runs = df.groupby("run_id").agg(status=("status", "first"), seed=("seed", "first"))
    assert len(runs) == 2 and (runs.status == "ok").all() and sorted(runs.seed) == [0, 1]
    assert len(df) == 2 * 3  # 1 entity × strict, plus ALL micro and macro
    assert_no_duplicates(df)
    assert df[df.seed == 0].run_id.iloc[0] == pd.read_csv(first / "results.csv").run_id.iloc[0]
    # everything under outputs/ (what madbench-collect outputs/ does): both sweeps, still 2 results
    allres, _ = collect(out)
    assert allres.run_id.nunique() == 2 and (allres.status == "ok").all() and len(allres) == 6
    assert_no_duplicates(allres)


# -- many jobs writing at once (joblib) ------------------------------------------------------------
@pytest.mark.slow
def test_parallel_joblib_jobs_lose_no_rows(tmp_path):
    out = tmp_path / "out"
    tiny = [a for a in TINY_CLI if not a.startswith("dataset.n_systems")] + ["dataset.n_systems=2"]
    try:
        p = madbench(out, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3,4,5,6,7",
                     "protocol=[strict,tslib]", tiny=tiny)
    finally:   # the sweep ran in this process: its loky workers would idle here until the suite ends
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 8 done, 0 skipped, 0 failed")
    (sweep,) = sweeps(out)
    dirs = jobs(sweep)
    assert len(dirs) == 8 and len({d.name for d in dirs}) == 8
    df = pd.read_csv(sweep / "collected.csv")
    entities, protocols = 2, 2
    all_rows = 2 + 1  # strict micro + macro, tslib mean
    assert len(df[df.entity != "ALL"]) == 8 * entities * protocols
    assert len(df[df.entity == "ALL"]) == 8 * all_rows
    assert df.run_id.nunique() == 8 and df.config_hash.nunique() == 8 and (df.status == "ok").all()
    assert_no_duplicates(df)
    per_run = df.groupby("run_id").size()
    assert (per_run == entities * protocols + all_rows).all()


# -- a failed job among finished ones, then retried ------------------------------------------
def _wandb_runs(sweep: Path) -> dict[str, dict]:
    """job dir name -> what its offline W&B run recorded."""
    from tests.tracking.wandb_records import run_summary

    return {d.parent.parent.name: run_summary(d) for d in sorted(sweep.glob("*/wandb/offline-run-*"))}


@pytest.mark.slow
def test_failed_job_is_recorded_then_retried(tmp_path):
    pytest.importorskip("wandb")
    out = tmp_path / "out"
    p = madbench(out, "-m", "trainer.inject_nan_loss=false,true", "logger=[csv,wandb]")
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 1 done, 0 skipped, 1 failed")
    (sweep,) = sweeps(out)
    ok_dir, bad_dir = jobs(sweep)
    assert (pd.read_csv(ok_dir / "results.csv").status == "ok").all()
    bad = pd.read_csv(bad_dir / "results.csv")
    assert (bad.status == "failed").all() and bad.error.str.contains("non-finite training loss").all()
    # one W&B run per job, grouped by the sweep, finished even when the job failed
    wb = _wandb_runs(sweep)
    assert set(wb) == {ok_dir.name, bad_dir.name}
    assert {r["group"] for r in wb.values()} == {sweep.name}
    assert {r["job_type"] for r in wb.values()} == {"run"}
    assert all("dataset=synthetic" in r["tags"] and "backbone=lstm" in r["tags"] for r in wb.values())
    assert wb[ok_dir.name]["exit"] == 0 and wb[bad_dir.name]["exit"] == 1

    # the same sweep again (logger is not part of config_hash): ok skipped, failed retried
    p = madbench(out, "-m", "trainer.inject_nan_loss=false,true")
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 0 done, 1 skipped, 1 failed")
    again_ok, again_bad = jobs(sweeps(out)[-1])
    assert json.loads((again_ok / "skipped.json").read_text())["done_in"] == str(ok_dir.resolve())
    assert not (again_bad / "skipped.json").exists()
    retried = pd.read_csv(again_bad / "results.csv")
    assert (retried.status == "failed").all() and retried.config_hash.iloc[0] == bad.config_hash.iloc[0]
    assert retried.finished_at.iloc[0] > bad.finished_at.iloc[0] and retried.run_id.iloc[0] != bad.run_id.iloc[0]
    df, _ = collect(out)
    assert df.config_hash.nunique() == 2
    assert set(df[df.status == "failed"].run_id) == {retried.run_id.iloc[0]}  # the newest failure only
    assert_no_duplicates(df)


# -- Optuna on validation loss ------------------------------------------------------------------
@pytest.mark.slow
def test_optuna_tiny_search_minimises_validation_loss(tmp_path):
    out = tmp_path / "out"
    p = madbench(out, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "dataset.window=20", "backbone.model.hidden=16")
    assert p.returncode == 0, p.stderr[-3000:]
    assert tally_line(p.stdout).startswith("sweep finished: 2 done, 0 skipped, 0 failed")
    (sweep,) = sweeps(out)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # window and hidden were fixed on the command line; lr and batch size were searched
    assert set(best["best_params"]) == {"trainer.optimizer.lr", "trainer.batch_size"}
    # the objective is the validation loss from each trial's train log (train split only)
    losses = [RunResults.mean_best_val_loss(pd.read_csv(d / "train_log.csv")) for d in jobs(sweep)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert best["best_value"] == pytest.approx(min(losses))


@pytest.mark.slow
def test_test_label_objective_is_refused(tmp_path):
    p = madbench(tmp_path, "hparams_search=optuna", "optimize_metric=f1", tiny=[])
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("madbench: error: optimize_metric=f1")
    assert "Traceback" not in p.stderr
    assert not list(tmp_path.rglob("results.csv"))
