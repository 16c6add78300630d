"""Hydra callbacks: per-job status lines and, at the end of a sweep, the tally (done,
skipped, failed) and the collected CSV. ``on_multirun_end`` runs in the launching process
for every launcher (basic, joblib, submitit), so the tally is read from the run dirs.

With submitit the jobs' own log lines go to ``<sweep>/.submitit/<job id>/``, so the
launching process also prints the tally whenever it changes while the sweep runs.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from madbench.errors import ConfigError, MadbenchError

log = logging.getLogger("madbench")

# configs/hydra/launcher/ shadows the plugins' launcher configs on purpose (same names, our
# defaults); Hydra still validates them against the plugins' schemas and warns about it in
# every process that composes a job config (submitit and joblib workers import this module
# before they do).
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                        category=UserWarning)

#: what a sweeper may optimise, and in which direction. Only label-free quantities: a
#: search that reads test labels would select models on the test set.
OBJECTIVES = {"val_loss": "minimize"}


def check_objective(cfg: DictConfig) -> str | None:
    """``optimize_metric`` if it is allowed (None when unset), else ConfigError."""
    metric = cfg.get("optimize_metric")
    if metric is None:
        return None
    if metric not in OBJECTIVES:
        raise ConfigError(f"optimize_metric={metric}: a search may optimise only {', '.join(OBJECTIVES)} "
                          "(validation data); metrics on test labels would select models on the test set")
    return str(metric)


def _check_sweeper(config: DictConfig) -> None:
    sweeper = OmegaConf.select(config, "hydra.sweeper", default=None) or {}
    if "optuna" not in str(sweeper.get("_target_", "")):
        return
    metric = check_objective(config)
    if metric is None:
        raise ConfigError("the optuna sweeper needs optimize_metric (val_loss); use hparams_search=optuna")
    direction = str(sweeper.get("direction", "minimize")).split(".")[-1]
    if direction != OBJECTIVES[metric]:
        raise ConfigError(f"hydra.sweeper.direction={direction}, but optimize_metric={metric} is to "
                          f"{OBJECTIVES[metric]}")


def sweep_size(config: DictConfig) -> int:
    """How many jobs the sweep's command line asks for (Hydra's cartesian product); an
    Optuna search: its trials."""
    sweeper = OmegaConf.select(config, "hydra.sweeper", default=None) or {}
    if "optuna" in str(sweeper.get("_target_", "")):
        return int(sweeper.get("n_trials") or 1)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
    try:
        parsed = OverridesParser.create().parse_overrides(task)
        return max(1, sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None)))
    except Exception:  # the sweeper reports a bad override itself
        return 1


def concurrent_jobs(config: DictConfig) -> int | None:
    """How many of the sweep's jobs run at once on this machine (what
    ``trainer.num_threads=auto`` divides the cores by): joblib's workers, every job of a
    ``submitit_local`` sweep, at most the sweep's size and an Optuna search's ``n_jobs``.
    None for launchers whose jobs run one at a time here (basic) or elsewhere (SLURM: each
    job has its own ``cpus_per_task``)."""
    launcher = OmegaConf.select(config, "hydra.launcher", default=None) or {}
    target = str(launcher.get("_target_", ""))
    size = sweep_size(config)
    if "joblib" in target.lower():
        from joblib import effective_n_jobs

        parallel = effective_n_jobs(int(launcher.get("n_jobs") or 1))
    elif target.endswith("LocalLauncher"):
        parallel = size
    else:
        return None
    sweeper = OmegaConf.select(config, "hydra.sweeper", default=None) or {}
    if "optuna" in str(sweeper.get("_target_", "")):
        parallel = min(parallel, int(sweeper.get("n_jobs") or 1))
    return max(1, min(parallel, size))


def job_state(run_dir: Path) -> str:
    """ok | skipped | failed | running (started, no results yet) | none."""
    run_dir = Path(run_dir)
    if (run_dir / "skipped.json").exists():
        return "skipped"
    if (run_dir / "results.csv").exists():
        try:
            st = pd.read_csv(run_dir / "results.csv", usecols=["status"])["status"]
        except (ValueError, pd.errors.EmptyDataError, pd.errors.ParserError):
            return "failed"
        return "ok" if len(st) and (st == "ok").all() else "failed"
    if (run_dir / ".hydra").exists():
        return "running"
    return "none"


def sweep_status(sweep_dir: Path) -> dict[str, int]:
    """Job counts of one sweep dir: ok, skipped, failed and missing (started, no results)."""
    counts = {"ok": 0, "skipped": 0, "failed": 0, "missing": 0}
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return counts
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        state = job_state(job)
        if state == "running":
            counts["missing"] += 1
        elif state != "none":
            counts[state] += 1
    return counts


def _tally(c: dict[str, int], missing: str) -> str:
    return (f"{c['ok']} done, {c['skipped']} skipped, {c['failed']} failed"
            + (f", {c['missing']} {missing}" if c["missing"] else ""))


class SweepReport(Callback):
    """``poll_s``: how often the launching process re-reads the sweep dir while a submitit
    sweep runs (0: never)."""

    def __init__(self, poll_s: float = 30.0) -> None:
        self.poll_s = float(poll_s)
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._env: tuple[str, str | None] | None = None

    def __getstate__(self):  # pickled into submitit jobs: the poller stays here
        return {"poll_s": self.poll_s, "_stop": None, "_thread": None, "_env": None}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            _check_sweeper(config)
        except ConfigError as e:  # before any job starts; one line, no traceback
            raise SystemExit(f"madbench: error: {e}") from None
        # the jobs' processes inherit it: trainer.num_threads=auto shares the cores among them
        jobs = concurrent_jobs(config)
        if jobs is not None:
            from madbench.fit import CONCURRENCY_VARS

            self._env = (CONCURRENCY_VARS[0], os.environ.get(CONCURRENCY_VARS[0]))
            os.environ[CONCURRENCY_VARS[0]] = str(jobs)
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if "submitit" in launcher and self.poll_s > 0:
            self._stop = threading.Event()
            sweep_dir = Path(config.hydra.sweep.dir)
            self._thread = threading.Thread(target=self._poll, args=(sweep_dir,), daemon=True,
                                            name="madbench-sweep-progress")
            self._thread.start()

    def _poll(self, sweep_dir: Path) -> None:
        last = None
        while not self._stop.wait(self.poll_s):
            c = sweep_status(sweep_dir)
            if c != last and any(c.values()):
                print(f"sweep progress: {_tally(c, 'running')}", flush=True)
                last = c

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:  # a single run's summary already names its results
            return
        run_dir = Path(config.hydra.runtime.output_dir)
        state = job_state(run_dir)
        state = {"skipped": "skipped (already done)", "running": "no results", "none": "no results"}.get(state, state)
        log.info("job %s: %s · %s", config.hydra.job.get("num", "-"), state, run_dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        from madbench.tracking.collect import collect

        if self._env is not None:  # this process may launch again (tests, notebooks)
            var, before = self._env
            if before is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = before
            self._env = None
        if self._stop is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._stop = self._thread = None
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        c = sweep_status(sweep_dir)
        try:
            _, out = collect(sweep_dir)
            collected = f"collected: {out}"
        except MadbenchError as e:  # no run wrote results, or a bigger collected.csv is there already
            collected = f"not collected ({e})"
        msg = f"sweep finished: {_tally(c, 'without results')} · {collected}"
        if (sweep_dir / "optimization_results.yaml").exists():
            msg += f" · optuna best: {sweep_dir / 'optimization_results.yaml'}"
        print(msg, flush=True)  # stdout, not the log: it is the sweep's last word
