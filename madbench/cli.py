"""Console entry points. Thin: compose the config, call ``run.main``, report."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from madbench.config import CONFIG_DIR
from madbench.errors import MadbenchError

log = logging.getLogger("madbench")

# our configs/hydra/launcher/*.yaml shadow the plugins' on purpose; Hydra's schema-matching
# deprecation warning about it is noise for users
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                        category=UserWarning)



@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from madbench import run
    from madbench.tracking.callbacks import check_objective
    from madbench.tracking.summary import print_summary

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if not multirun and (note := sweep_without_m(hc)):
        print(note, file=sys.stderr)
    try:
        metric = check_objective(cfg)  # a search objective on test labels is refused up front
        if not multirun:
            # a refused config is not a failed job: one line, and no results.csv to collect. A
            # sweep job's refusal is recorded as failed rows by run.main (the sweep goes on).
            from madbench.checks import validate

            validate(cfg)
        df = run.main(cfg, run_dir)
    except MadbenchError as e:
        msg = f"madbench: error: {e}"
        if multirun:  # recorded as a failed row; the sweep goes on
            log.error("%s (run dir %s)", msg, run_dir)
            return None  # a sweeper records a failed trial (NaN would crash the Optuna sweeper)
        print(msg, file=sys.stderr)
        discard_refused(run_dir, f"{hc.job.name}.log", msg)
        sys.exit(1)
    except Exception:
        if multirun:
            log.exception("job failed (run dir %s)", run_dir)
            return None
        raise
    src = result_dir(run_dir)
    print_summary(df, src, note=None if src == run_dir else "skip_done: this config was already run there")
    failed = df[df["status"] != "ok"]
    if len(failed) and not multirun:  # a protocol that failed on its own; the others' rows are written
        print(f"madbench: error: protocol {failed['protocol'].iloc[0]}: {failed['error'].iloc[0]}", file=sys.stderr)
        sys.exit(1)
    return _objective_value(run_dir, metric) if metric else None


def sweep_without_m(hc) -> str | None:
    """The one-line warning for a sweep run without ``-m`` (``hc``: the Hydra config of the
    job), or None. Hydra then runs a single job with the config's own defaults and ignores
    ``hydra.sweeper.params``; `madbench experiment=m2ad_table2` once ran one pipeline on one
    dataset for one seed, with nothing saying the other 109 jobs were skipped."""
    params = OmegaConf.select(hc, "sweeper.params") or {}
    if not params:
        return None
    exp = OmegaConf.select(hc, "runtime.choices.experiment")
    what = f"experiment={exp}" if exp else "this config"
    return (f"madbench: warning: {what} is a sweep over {', '.join(map(str, params))}; without -m only one of its jobs "
            f"runs (one value of each). For the whole sweep: madbench -m {what} ...")


#: what Hydra writes into a run dir before the job's function runs
HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def discard_refused(run_dir: Path, log_name: str, line: str) -> None:
    """A refused single run leaves no run dir, or one that says why. Hydra makes the dir
    (``.hydra/``, the job's log) before the config can be checked; holding only that, it is
    removed (an hour of typos once left 13 such dirs with an empty log). A refusal that
    needed the data wrote ``results.csv``, which says why; any other dir (a ``hydra.run.dir``
    that held files already) gets ``refused.txt`` with the line."""
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / "results.csv").exists():
        return
    hydra_dir = run_dir / ".hydra"
    only_hydra = (all(p.name in (".hydra", log_name) for p in run_dir.iterdir())
                  and (not hydra_dir.exists() or all(p.name in HYDRA_FILES for p in hydra_dir.iterdir())))
    if only_hydra:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        from madbench.rundir import atomic_write

        atomic_write(run_dir / "refused.txt", lambda p: Path(p).write_text(line + "\n"))


def result_dir(run_dir: Path) -> Path:
    """The run dir that holds this job's results: its own, or, when skip_done skipped the
    job, the earlier run that ``skipped.json`` points at."""
    import json

    if (run_dir / "skipped.json").exists():
        return Path(json.loads((run_dir / "skipped.json").read_text())["done_in"])
    return run_dir


def _objective_value(run_dir: Path, metric: str) -> float | None:
    """``val_loss``: the mean over entities of the best validation loss, from this job's
    ``train_log.csv`` (or the earlier run's, when skip_done skipped the job). None when it
    is not finite, which a sweeper records as a failed trial."""
    import math

    from madbench.results import RunResults
    from madbench.rundir import read_train_log

    value = RunResults.mean_best_val_loss(read_train_log(result_dir(run_dir)))   # NaN without one
    return value if math.isfinite(value) else None


def main() -> None:
    _hydra_main()


def collect(argv=None) -> None:
    """madbench-collect OUTPUTS_DIR [--out FILE] [--force]"""
    from madbench.tracking.collect import collect as _collect

    ap = argparse.ArgumentParser(prog="madbench-collect", description="Merge run dirs into one CSV (dedup by "
                                 "config_hash, entity, protocol; newest ok wins), with the config columns the tables "
                                 "read.")
    ap.add_argument("root", type=Path, help="an outputs/ or sweep directory")
    ap.add_argument("--out", type=Path, default=None, help="output CSV (default ROOT/collected.csv)")
    ap.add_argument("--force", action="store_true", help="replace an existing OUT even when it holds more rows")
    a = ap.parse_args(argv)
    try:
        df, out = _collect(a.root, a.out, force=a.force)
    except MadbenchError as e:
        print(f"madbench-collect: error: {e}", file=sys.stderr)
        sys.exit(1)
    n_runs = df["run_id"].nunique() if len(df) else 0
    failed = int((df.groupby("run_id")["status"].first() != "ok").sum()) if len(df) else 0
    print(f"collected {len(df)} rows from {n_runs} runs ({failed} failed) -> {out}")


def evaluate(argv=None) -> None:
    """madbench-eval RUN_DIR [protocol=...] : recompute metrics from scores.npz."""
    from madbench.rescoring import main as _eval

    try:
        _eval(sys.argv[1:] if argv is None else argv)
    except MadbenchError as e:
        print(f"madbench-eval: error: {e}", file=sys.stderr)
        sys.exit(1)
