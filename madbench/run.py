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
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from madbench import protocols as P
from madbench.config import config_hash, validate
from madbench.data.entity import Entity
from madbench.data.preprocess import Preprocessor
from madbench.data.windows import Windows, WindowSpec
from madbench.errors import ConfigError, DataError, MadbenchError
from madbench.tracking import csv as tcsv
from madbench.tracking.plots import plot_entity

log = logging.getLogger("madbench")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator. ``deterministic`` (on for CPU runs) makes the same seed give
    identical scores; on CUDA it is off by default because it slows cuDNN down."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def choices(cfg: DictConfig) -> dict:
    return {
        "name": cfg.get("name"),
        "dataset": cfg.dataset.name,
        "backbone": cfg.backbone.name,
        "objective": cfg.objective.name,
        "head": cfg.head.name,
        "scoring": cfg.scoring.name,
    }


def build(node, what: str, **kwargs):
    """hydra.utils.instantiate, with the loader's or constructor's own one-line error
    instead of Hydra's wrapped traceback."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, MadbenchError):
            raise cause from None
        raise ConfigError(f"{what}: {cause or e}") from None


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


class Job:
    """State of one job while it runs; ``run`` is the whole data flow."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_id = uuid.uuid4().hex[:12]
        self.hash = config_hash(cfg)
        self.train_log: list[dict] = []
        self.loggers = []
        self.entity_scores: list[P.EntityScores] = []
        self.sizes: dict[str, dict] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.anomalies: list[dict] | None = None
        self.groups: dict[str, dict] = {}

    # -- the label-free objective of an hparams search --------------------------------
    def best_val_loss(self) -> float:
        """Mean over entities (or pooled groups) of the best validation loss. It comes from
        the last ``trainer.val_ratio`` of the train split, so a search on it never sees test
        data or labels."""
        return self.mean_best_val_loss(self.train_log)

    @staticmethod
    def mean_best_val_loss(records) -> float:
        """The same from per-epoch records or a run dir's ``train_log.csv`` frame; NaN when
        no entity has a finite validation loss."""
        df = pd.DataFrame(records)
        if df.empty or "val_loss" not in df or "entity" not in df:
            return float("nan")
        val = pd.to_numeric(df["val_loss"], errors="coerce").replace([np.inf, -np.inf], np.nan)
        best = val.groupby(df["entity"]).min().dropna()
        return float(best.mean()) if len(best) else float("nan")

    # -- logging sinks ---------------------------------------------------------------
    def start_loggers(self) -> None:
        lc = self.cfg.get("logger") or {}
        if "wandb" in lc:
            from madbench.tracking.wandb import WandbLogger

            w = lc.wandb
            group = w.group or _sweep_name(self.run_dir)
            tags = [f"{k}={v}" for k, v in choices(self.cfg).items() if k != "name"] + list(self.cfg.get("tags") or [])
            self.loggers.append(WandbLogger(w.project, w.entity, w.mode, group, w.job_type, w.tags).start(
                OmegaConf.to_container(self.cfg, resolve=True) | {"config_hash": self.hash},
                self.run_dir, f"{self.cfg.name}-s{self.cfg.seed}-{self.hash[:6]}", group, tags, self.run_id))

    def finish_loggers(self, exit_code: int) -> None:
        """Always called, on success or failure; a sink that fails to close never masks the
        job's own error."""
        for lg in self.loggers:
            try:
                lg.finish(exit_code)
            except Exception as fe:
                log.warning("logger finish failed: %s", fe)

    def on_epoch(self, entity: str):
        def cb(rec):
            self.train_log.append({"entity": entity, **rec})
            for lg in self.loggers:
                lg.log_epoch(entity, rec)
        return cb

    # -- the data flow ----------------------------------------------------------------
    def run(self) -> list[dict]:
        cfg = self.cfg
        validate(cfg)
        entities = load_entities(cfg)
        quirks = bool(cfg.backbone.get("reference_quirks", False))
        pre = Preprocessor(scaler=cfg.dataset.get("scaler", "minmax"), refit_on_test=quirks)
        entities = [pre.apply(e) for e in entities]
        objective = build({"_target_": cfg.objective._target_}, f"objective={cfg.objective.name}")
        spec = WindowSpec(window=cfg.dataset.window, stride=cfg.dataset.get("stride", 1),
                          horizon=objective.horizon, gap=1 if (quirks and objective.horizon) else 0)
        score_spec = WindowSpec(window=spec.window, stride=1, horizon=spec.horizon, gap=spec.gap)
        trainer = build(cfg.trainer, "trainer")
        groups = _groups(entities, bool(cfg.dataset.get("pooled", False)))
        bar = tqdm(groups, desc=f"{cfg.dataset.name} entities", unit="model", disable=len(groups) == 1 or not trainer.progress)
        for group in bar:
            label = group[0].name if len(group) == 1 else f"pooled[{len(group)}]"
            bar.set_postfix_str(label)
            self.fit_and_score(group, label, objective, spec, score_spec, trainer)
        return self.evaluate()

    def evaluate(self) -> list[dict]:
        """Every configured protocol on the kept entity scores → result rows."""
        cfg = self.cfg
        rows = []
        ratio = cfg.dataset.get("anomaly_ratio")
        for name, pcfg in cfg.protocol.items():
            proto = P.build(name, OmegaConf.to_container(pcfg, resolve=True))
            rows += proto.evaluate(self.entity_scores, anomaly_ratio=ratio)
            if isinstance(proto, P.M2AD):
                self.anomalies = [{"entity": k, "start": a, "end": b, "score": sc,
                                   "top_sensors": self._drivers(k, a, b)}
                                  for k, found in proto.detected.items() for a, b, sc in found]
        status = {es.name: es.status for es in self.entity_scores}
        for r in rows:
            if status.get(r["entity"], "ok") != "ok":
                r["warning"] = f"{status[r['entity']]}: train score has zero variance; nothing flagged"
        for r in rows:
            r.update(self.sizes.get(r["entity"], {}))
            if r["entity"] == "ALL":
                r.setdefault("n_entities", len(self.entity_scores))
        return rows

    def _drivers(self, entity: str, start: int, end: int) -> str:
        """The sensors that drove an alarm (strongest per-sensor p-values over it), ';'-joined."""
        sp = self.arrays.get(f"{entity}__sensor_p")
        if sp is None:
            return ""
        from madbench.scoring.m2ad import top_sensors

        return ";".join(top_sensors(sp, start, end, list(self.arrays[f"{entity}__sensors"])))

    def fit_and_score(self, group: list[Entity], label: str, objective, spec, score_spec, trainer) -> None:
        cfg = self.cfg
        first = group[0]
        seed_everything(int(cfg.seed), deterministic=trainer.device.type == "cpu")
        model = build(cfg.backbone.model, f"backbone={cfg.backbone.name}")(
            n_inputs=first.n_inputs, n_outputs=first.n_sensors, window=spec.window)
        inputs, sensors = first.input_idx, first.sensor_idx
        train_w = Windows([e.train for e in group], spec, device=trainer.device)
        for e, n in zip(group, train_w.lengths):
            if n < spec.span + 1:
                raise DataError(f"{e.meta.get('source', e.name)}: train has {n} rows; expected more than window+target ({spec.span})")
        t0 = time.perf_counter()
        history = trainer.fit(model, objective, train_w, inputs, sensors, desc=label, on_epoch=self.on_epoch(label))
        fit_s = time.perf_counter() - t0
        val_start = train_w.val_start(trainer.val_ratio)
        t0 = time.perf_counter()
        tr_scores = trainer.score(model, objective, train_w.restrided(score_spec), inputs, sensors,
                                  desc=f"{label} score train")
        te_scores = trainer.score(model, objective, Windows([e.test for e in group], score_spec, device=trainer.device), inputs, sensors,
                                  desc=f"{label} score test")
        score_s = time.perf_counter() - t0
        vals = [r["val_loss"] for r in history if np.isfinite(r["val_loss"])]
        best = min(vals) if vals else float("nan")
        # one line per model, so a sweep without progress bars (trainer.progress=false) still shows progress
        log.info("%s: %d epochs in %.0f s (best val_loss %.4g), scored in %.0f s", label, len(history), fit_s, best,
                 score_s)
        for e, tr, te, vs in zip(group, tr_scores, te_scores, val_start):
            val_mask = np.zeros(len(e.train), dtype=bool)
            val_mask[vs:] = True
            self.add_scores(e.name, e.labels, e.sensors, e.meta.get("groups"), tr, te, val_mask, spec.window, {
                "n_train": len(e.train), "n_test": len(e.test), "n_sensors": e.n_sensors, "n_inputs": e.n_inputs,
                "epochs_run": len(history), "fit_seconds": fit_s / len(group), "score_seconds": score_s / len(group)})

    def add_scores(self, name: str, labels: np.ndarray, sensors: list[str], groups: dict | None, tr, te,
                   val_mask: np.ndarray, window: int, sizes: dict) -> None:
        """The scoring stage for one entity: fit the configured scorer on its train split's
        scores, transform both splits, keep the result for the protocols and scores.npz.
        ``tr``/``te`` are the score stage's SeriesScores (also rebuilt from a run dir's
        scores.npz by ``madbench.evaluate.rescore``, which re-runs only this stage)."""
        cfg = self.cfg
        scorer = build({k: v for k, v in cfg.scoring.items() if k not in ("name", "needs_residuals")},
                       f"scoring={cfg.scoring.name}")
        try:
            scorer.fit(tr, sensors=sensors, groups=groups)
            s_tr, s_te = scorer.transform(tr), scorer.transform(te)
        except ValueError as err:
            raise DataError(f"entity {name}: scoring={cfg.scoring.name}: {err}") from None
        for note in s_te.notes:
            log.warning("entity %s: %s", name, note)
        es = P.EntityScores(name=name, labels=labels, score=s_te.score, train_score=s_tr.score,
                            val_mask=val_mask, window_score=te.window, window_start=te.window_start,
                            window=window, p=s_te.p, flags=s_te.flags, status=s_te.status)
        self.entity_scores.append(es)
        self.sizes[name] = sizes
        self._keep_arrays(name, labels, sensors, tr, te, s_te, es)
        if groups:
            self.groups[name] = groups

    def _keep_arrays(self, name: str, labels, sensors, tr, te, s_te, es: P.EntityScores) -> None:
        k = f"{name}__"
        a = self.arrays
        a[k + "labels"] = labels
        a[k + "score"] = es.score
        a[k + "step"] = te.step
        a[k + "train_step"] = tr.step
        a[k + "train_score"] = es.train_score
        a[k + "val_mask"] = es.val_mask
        a[k + "window_score"] = es.window_score
        a[k + "window_start"] = es.window_start
        if te.residuals is not None:
            # both splits' residuals, so the scoring stage can be re-run without training
            a[k + "residuals"] = te.residuals.astype(np.float32)
            a[k + "train_residuals"] = tr.residuals.astype(np.float32)
        if s_te.p is not None:
            a[k + "p"] = s_te.p
        if s_te.flags is not None:
            a[k + "flags"] = s_te.flags
        if s_te.sensor_p is not None:
            a[k + "sensor_p"] = s_te.sensor_p.astype(np.float32)
        a[k + "sensors"] = np.array(sensors)

    # -- outputs ----------------------------------------------------------------------
    def finalize(self, rows: list[dict], status: str, error: str, started: float) -> pd.DataFrame:
        base = {"run_id": self.run_id, "config_hash": self.hash, "seed": int(self.cfg.seed), **choices(self.cfg),
                "status": status, "error": error, "total_seconds": time.perf_counter() - started,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
        if not rows:  # failed before any entity was evaluated: one row per protocol
            rows = [{"entity": "ALL", "aggregate": "", "protocol": p} for p in (self.cfg.get("protocol") or {"none": 0})]
        for r in rows:
            r.update({k: v for k, v in base.items() if k not in r or k in ("status", "error")})
        if self.arrays:
            names = sorted({k.split("__")[0] for k in self.arrays})
            meta = {"entities": names, "window": int(self.cfg.dataset.window), "config_hash": self.hash,
                    "groups": self.groups}
            self.arrays["__meta__"] = np.array(json.dumps(meta))
            tcsv.write_npz(self.run_dir / "scores.npz", self.arrays)
        tcsv.write_train_log(self.run_dir, self.train_log)
        if self.anomalies is not None:
            frame = pd.DataFrame(self.anomalies, columns=["entity", "start", "end", "score", "top_sensors"])
            tcsv.atomic_write(self.run_dir / "anomalies.csv", lambda p: frame.to_csv(p, index=False))
        df = tcsv.write_results(self.run_dir, rows)
        return df

    def plots(self, df: pd.DataFrame) -> None:
        lc = self.cfg.get("logger") or {}
        if not lc.get("csv", {}).get("plots", True) and "wandb" not in lc:
            return
        for es in self.entity_scores:
            thr = df[(df.entity == es.name) & (df.protocol == "strict")]["threshold"]
            path = plot_entity(self.run_dir / "plots" / f"{es.name}.png", es.name, es.score, es.labels,
                               float(thr.iloc[0]) if len(thr) else None)
            for lg in self.loggers:
                lg.log_image(es.name, path)


def _sweep_name(run_dir: Path) -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir).name
    except ValueError:  # not under Hydra (tests, API use)
        return None
    return None


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


def main(cfg: DictConfig, run_dir: Path | str) -> pd.DataFrame:
    """Run one job; returns its results (also written to ``run_dir/results.csv``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    job = Job(cfg, run_dir)
    done = _already_done(cfg, job.hash, run_dir)
    if done is not None:
        log.info("skip_done: config_hash %s already has an ok result in %s", job.hash, done)
        tcsv.atomic_write(run_dir / "skipped.json", lambda p: Path(p).write_text(
            json.dumps({"config_hash": job.hash, "done_in": str(done)})))
        return tcsv.read_results(done)
    tcsv.atomic_write(run_dir / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=False))
    exit_code = 0
    try:
        job.start_loggers()
        rows = job.run()
        df = job.finalize(rows, "ok", "", started)
        job.plots(df)
        for lg in job.loggers:
            lg.log_results(df)
        if cfg.get("rescore"):
            from madbench.evaluate import rescore_all

            done, errors = rescore_all([run_dir], list(cfg.rescore), progress=False)
            log.info("rescore: %d variant(s) written under %s%s", len(done), run_dir / "rescored",
                     f", {len(errors)} failed (their rows say why)" if errors else "")
        return df
    except MadbenchError as e:
        exit_code = 1
        job.finalize([], "failed", str(e), started)
        raise
    except Exception as e:  # an unexpected bug: still a failed row, with the type named
        exit_code = 1
        job.finalize([], "failed", f"{type(e).__name__}: {e}", started)
        raise
    finally:
        job.finish_loggers(exit_code)
