"""One job: load → window → fit → score → scoring → protocols → tracking, per entity (or
pooled across entities). It calls each stage and never does a stage's work itself.

A job always leaves ``results.csv`` in its run dir: ``ok`` rows, or ``failed`` rows that say
why. ``main`` returns the results frame; a failure is re-raised as MadbenchError after the
failed rows are written, so the CLI can exit non-zero with one line.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm.auto import tqdm

from madbench import attribution, rundir
from madbench.checks import check_sizes, validate
from madbench.config import build, node_without
from madbench.data.entity import Entity
from madbench.data.preprocess import Preprocessor
from madbench.data.windows import Windows, WindowSpec
from madbench.detector import Detector
from madbench.errors import ConfigError, DataError
from madbench.fit import bar_disabled
from madbench.results import RunResults, task_wrapper

log = logging.getLogger("madbench")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator. ``deterministic`` (on for CPU runs) makes the same seed give
    identical scores; on CUDA it is off by default because it slows cuDNN down."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


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


def _groups(entities: list[Entity], pooled: bool) -> list[list[Entity]]:
    if not pooled:
        return [[e] for e in entities]
    first = entities[0]
    for e in entities[1:]:
        if e.sensors != first.sensors or e.covariates != first.covariates:
            raise ConfigError(f"dataset.pooled=true needs the same sensors and covariates in every entity; "
                              f"{e.name} differs from {first.name}")
    return [entities]


def build_objective(cfg: DictConfig):
    """The objective from its whole config node (``_target_`` + its parameters)."""
    return build(node_without(cfg.objective, "name"), f"objective={cfg.objective.name}")


def build_heads(cfg: DictConfig) -> list:
    """The configured heads (``head=none``: no head)."""
    head = cfg.get("head") or {}
    if "_target_" not in head:
        return []
    return [build(node_without(head), f"head={head.name}")]


def build_detector(cfg: DictConfig, n_inputs: int, n_sensors: int, window: int) -> Detector:
    model = build(cfg.backbone.model, f"backbone={cfg.backbone.name}")(
        n_inputs=n_inputs, n_outputs=n_sensors, window=window)
    return Detector(model, build_objective(cfg), build_heads(cfg))


class Job:
    """One job's data flow (load → window → fit → score), handing each entity's scores to
    the post-score stages (``madbench.results.RunResults``)."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.results = RunResults(cfg, run_dir)

    def run(self) -> list[dict]:
        cfg = self.cfg
        validate(cfg)
        entities = load_entities(cfg)
        # the M2AD reference's data quirks are the dataset's (experiment=m2ad_reference), never a backbone's
        pre = Preprocessor(scaler=cfg.dataset.get("scaler", "minmax"),
                           refit_on_test=bool(cfg.dataset.get("refit_scaler_on_test", False)))
        entities = [pre.apply(e) for e in entities]
        horizon = build_objective(cfg).horizon
        spec = WindowSpec(window=cfg.dataset.window, stride=cfg.dataset.get("stride", 1),
                          horizon=horizon, gap=int(cfg.dataset.get("forecast_gap", 0)) if horizon else 0)
        score_spec = WindowSpec(window=spec.window, stride=1, horizon=spec.horizon, gap=spec.gap)
        trainer = build(cfg.trainer, "trainer")
        groups = _groups(entities, bool(cfg.dataset.get("pooled", False)))
        check_sizes(cfg, groups, spec, trainer.val_ratio)
        bar = tqdm(groups, desc=f"{cfg.dataset.name} entities", unit="model",
                   disable=True if len(groups) == 1 else bar_disabled(trainer.progress))
        for group in bar:
            label = group[0].name if len(group) == 1 else f"pooled[{len(group)}]"
            bar.set_postfix_str(label)
            self.fit_and_score(group, label, spec, score_spec, trainer)
        return self.results.evaluate_protocols()

    def fit_and_score(self, group: list[Entity], label: str, spec, score_spec, trainer) -> None:
        cfg = self.cfg
        first = group[0]
        seed_everything(int(cfg.seed), deterministic=trainer.device.type == "cpu")
        detector = build_detector(cfg, first.n_inputs, first.n_sensors, spec.window)
        inputs, sensors = first.input_idx, first.sensor_idx
        train_w = Windows([e.train for e in group], spec, device=trainer.device)
        t0 = time.perf_counter()
        history = trainer.fit(detector, train_w, inputs, sensors, desc=label, on_epoch=self.results.on_epoch(label))
        fit_s = time.perf_counter() - t0
        val_start = train_w.val_start(trainer.val_ratio)
        t0 = time.perf_counter()
        tr_scores = trainer.score(detector, train_w.restrided(score_spec), inputs, sensors, desc=f"{label} score train")
        test_w = Windows([e.test for e in group], score_spec, device=trainer.device)
        te_scores = trainer.score(detector, test_w, inputs, sensors, desc=f"{label} score test")
        score_s = time.perf_counter() - t0
        # the gradient attribution needs the trained model: now, before it is dropped
        t0 = time.perf_counter()
        grads = attribution.gradients(cfg, detector, trainer, test_w, inputs, sensors, group)
        attribution_s = time.perf_counter() - t0
        vals = [r["val_loss"] for r in history if np.isfinite(r["val_loss"])]
        best = min(vals) if vals else float("nan")
        # one line per model, so a sweep without progress bars (trainer.progress=false) still shows progress
        log.info("%s: %d epochs in %.0f s (best val_loss %.4g), scored in %.0f s", label, len(history), fit_s, best,
                 score_s)
        for e, tr, te, vs, grad in zip(group, tr_scores, te_scores, val_start, grads):
            val_mask = np.zeros(len(e.train), dtype=bool)
            val_mask[vs:] = True
            sizes = {"n_train": len(e.train), "n_test": len(e.test), "n_sensors": e.n_sensors, "n_inputs": e.n_inputs,
                     "epochs_run": len(history), "trained": bool(history) or not detector.trains_by_gradient,
                     "fit_seconds": fit_s / len(group), "score_seconds": score_s / len(group)}
            if grad is not None:
                sizes["attribution_seconds"] = attribution_s / len(group)
            self.results.add_scores(e.name, e.labels, e.sensors, e.meta.get("groups"), tr, te, val_mask, spec.window,
                                    sizes, interpretation=attribution.truth(e), gradient=grad)


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


def record_device_type(cfg: DictConfig) -> None:
    """Set ``cfg.device_type`` to the type of device the job trains on (``trainer.device``
    resolved, ``auto`` included: cpu, cuda or mps). config_hash keeps it: determinism is
    on only on CPU (``seed_everything``), so a CPU and a CUDA result are not the same
    result. Which CUDA device (cuda:0 or cuda:1), and whether it was asked for as ``auto``,
    does not change the hash. An unusable device is left to ``validate``, which fails the
    job with its failed rows."""
    from madbench.fit import resolve_device

    try:
        dev = resolve_device(OmegaConf.select(cfg, "trainer.device", default="auto") or "auto")
    except ConfigError:
        return
    with open_dict(cfg):
        cfg.device_type = dev.type


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
