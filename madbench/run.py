"""One job: load → window → fit → score → scoring → protocols → tracking, per entity (or
pooled across entities). It calls each stage and never does a stage's work itself: the
model stages (scale, window, fit, score, the scoring stage's fit) run through the Python
API's detector (``madbench.api``), the same path a notebook takes.

A job always leaves ``results.csv`` in its run dir: ``ok`` rows, or ``failed`` rows that say
why. ``main`` returns the results frame; a failure is re-raised as MadbenchError after the
failed rows are written, so the CLI can exit non-zero with one line.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from madbench import rundir
from madbench.api import Detector, group_entities, record_device_type, seed_everything  # noqa: F401 (re-exported)
from madbench.checks import check_sizes
from madbench.config import build
from madbench.data.entity import Entity
# the model's builders, re-exported: tests and scripts that exercise the internals import them from here
from madbench.detector import build_detector, build_heads, build_objective  # noqa: F401
from madbench.errors import ConfigError, DataError
from madbench.fit import bar_disabled
from madbench.results import RunResults, task_wrapper

log = logging.getLogger("madbench")


def load_entities(cfg: DictConfig) -> list[Entity]:
    entities = build(cfg.dataset.loader, f"dataset={cfg.dataset.name}")
    if not entities:
        raise DataError(f"dataset={cfg.dataset.name}: the loader returned no entities (dataset.entities={cfg.dataset.entities})")
    shard = cfg.dataset.get("shard")
    if shard:
        i, n = _parse_shard(str(shard))
        entities = entities[i::n]
        if not entities:
            raise ConfigError(f"dataset.shard={shard} selects no entity of {cfg.dataset.name}")
    return entities


def _parse_shard(shard: str) -> tuple[int, int]:
    """'i/n' → entities[i::n]: split one dataset's entities across sweep jobs."""
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ConfigError(f"dataset.shard={shard!r}; expected 'i/n' with 0 <= i < n") from None
    if not 0 <= i < n:
        raise ConfigError(f"dataset.shard={shard!r}; expected 'i/n' with 0 <= i < n")
    return i, n


class Job:
    """One job's data flow, through the Python API's detector (``madbench.api.Detector``):
    load, then per model (an entity, or a pooled group) fit and score it, handing each
    entity's scores to the post-score stages (``madbench.results.RunResults``)."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.results = RunResults(cfg, run_dir)

    def run(self) -> list[dict]:
        cfg = self.cfg
        detector = Detector.from_config(cfg).prepare()  # checks the whole config first
        self.results.train_scored = detector.train_scored_
        entities = load_entities(cfg)
        groups = group_entities(entities, bool(cfg.dataset.get("pooled", False)))
        # refusals that need only the split sizes, for every entity before the first model trains
        check_sizes(cfg, groups, detector.spec_, detector.trainer_.val_ratio)
        bar = tqdm(groups, desc=f"{cfg.dataset.name} entities", unit="model",
                   disable=True if len(groups) == 1 else bar_disabled(detector.trainer_.progress))
        for group in bar:
            label = group[0].name if len(group) == 1 else f"pooled[{len(group)}]"
            bar.set_postfix_str(label)
            fitted = detector.fit_group(group, label, on_epoch=self.results.on_epoch(label))
            score_s = detector.score_into(self.results, fitted, group, desc=f"{label} score test")
            vals = [r["val_loss"] for r in fitted.history if np.isfinite(r["val_loss"])]
            # one line per model, so a sweep without progress bars (trainer.progress=false) still shows progress
            log.info("%s: %d epochs in %.0f s (best val_loss %.4g), scored in %.0f s", label, len(fitted.history),
                     fitted.fit_seconds, min(vals) if vals else float("nan"), score_s)
        return self.results.evaluate_protocols()


def _already_done(cfg: DictConfig, hash_: str, run_dir: Path) -> Path | None:
    """With skip_done (null, the default: on in multiruns, off in single runs), the run dir
    under the sweep root that already holds an ``ok`` result for this config_hash, else None.

    The sweep root is the parent of ``hydra.sweep.dir`` (``${paths.output_dir}/multirun``):
    re-running a sweep command gets a new timestamped sweep dir beside the old ones, so only
    what no earlier sweep finished runs again; failed runs never count as done. A single run
    with ``skip_done=true`` looks under ``paths.output_dir`` (runs/ and multirun/)."""
    skip = cfg.get("skip_done")
    multirun_root = _multirun_root()
    if skip is None:
        skip = multirun_root is not None
    if not skip:
        return None
    from madbench.tracking.collect import find_ok_run

    root = multirun_root or Path(cfg.paths.output_dir)
    done = find_ok_run(root, hash_, exclude=run_dir)
    # absolute, so skipped.json points at it from any working directory (the collector follows it)
    return done.resolve() if done is not None else None


def _multirun_root() -> Path | None:
    """The directory that holds every sweep (sweep dirs are its children)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir).parent
    except ValueError:  # not under Hydra (tests, API use)
        return None
    return None


def _rescore(run_dir: Path, cfg: DictConfig) -> None:
    """The job's ``rescore`` variants of ``run_dir`` (this job's, or the earlier run a
    skipped job points at). Variants that already have an ok result are left as they
    are, so a re-run writes only the missing ones (a new rescore list, or a re-scoring
    that was killed)."""
    from madbench.rescoring import rescore_all

    done, errors = rescore_all([run_dir], list(cfg.rescore), progress=False, parent_cfg=cfg)
    log.info("rescore: %d variant(s) written under %s%s", len(done), run_dir / "rescored",
             f", {len(errors)} failed (their rows say why)" if errors else "")


def main(cfg: DictConfig, run_dir: Path | str) -> pd.DataFrame:
    """Run one job; returns its results (also written to ``run_dir/results.csv``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record_device_type(cfg)
    job = Job(cfg, run_dir)
    done = _already_done(cfg, job.results.hash, run_dir)
    if done is not None:
        log.info("skip_done: config_hash %s already has an ok result in %s", job.results.hash, done)
        rundir.atomic_write(run_dir / "skipped.json", lambda p: Path(p).write_text(
            json.dumps({"config_hash": job.results.hash, "done_in": str(done)})))
        if cfg.get("rescore"):  # the variants it asks for may be new, or a killed re-scoring left some out
            _rescore(done, cfg)
        return rundir.read_results(done)
    rundir.write_config(run_dir, cfg)
    with task_wrapper(job.results) as started:
        df = job.results.publish(job.run(), started)
    if cfg.get("rescore"):
        _rescore(run_dir, cfg)
    return df
