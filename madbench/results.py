"""The stages after the score stage, shared by a trained job (``madbench.run``) and by
re-scoring (``madbench.rescoring``): the scoring stage (a scorer fitted on each entity's
train scores), the protocols, and the run-dir outputs (results.csv, scores.npz,
train_log.csv, anomalies.csv, plots) plus the loggers.

``task_wrapper`` is the one place that turns an error into ``failed`` rows and always
closes the loggers.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from madbench import attribution as A
from madbench import protocols as P
from madbench import rundir
from madbench.config import config_hash
from madbench.errors import ConfigError, DataError, MadbenchError
from madbench.progress import heartbeat
from madbench.scoring import build_scorer
from madbench.tracking.loggers import instantiate_loggers
from madbench.tracking.plots import plot_attribution, plot_entity

log = logging.getLogger("madbench")


#: the warning of a result row whose detector ran no epoch (trainer.epochs=0)
UNTRAINED = "untrained: trainer.epochs=0 scored the initial weights"


def trained(sizes: dict) -> bool:
    """Whether an entity's detector was trained (its ``trained`` size; true when the row
    does not say, as rows written before the column existed)."""
    v = sizes.get("trained", True)
    return not (v is False or str(v).strip().lower() in ("false", "0", "0.0"))


def default_score_part(head_name: str) -> str:
    """``head.score`` when a config does not say: the objective's score alone without a
    head, the reference's product with one."""
    return "backbone" if head_name in (None, "none") else "product"


def final_part(cfg: DictConfig, series):
    """``series`` with the part ``head.score`` names as its final score (the score stage keeps
    every part, so this needs no model; madbench.scoring.base.SeriesScores.select). Scores
    that say nothing of their parts (built by hand) are taken as the default part."""
    head = cfg.get("head") or {}
    mode = head.get("score") or default_score_part(head.get("name"))
    if series.score_mode is None and series.components is None and mode == default_score_part(head.get("name")):
        return series
    return series.select(str(mode))


def choices(cfg: DictConfig) -> dict:
    """The choices a result row names: the run's label, the row of a paper table it is
    (``pipeline``: M2AD Table 2; ``arm``: MADCluster Table 3; empty otherwise), and the
    config groups."""
    return {
        "name": cfg.get("name"),
        "pipeline": cfg.get("pipeline_name"),
        "arm": cfg.get("arm"),
        "dataset": cfg.dataset.name,
        "backbone": cfg.backbone.name,
        "objective": cfg.objective.name,
        "head": cfg.head.name,
        "scoring": cfg.scoring.name,
    }


class EntityScoring:
    """The scoring stage of one entity: the configured scorer, fitted on the entity's
    train-split scores (the score stage's output, with ``head.score``'s part final), then
    applied to any split. A job, a re-scoring and the Python API all score through it."""

    def __init__(self, cfg: DictConfig, name: str, sensors: list[str], groups: dict | None = None):
        self.cfg, self.name, self.sensors, self.groups = cfg, name, list(sensors), groups

    def _fail(self, err: ValueError) -> DataError:
        return DataError(f"entity {self.name}: scoring={self.cfg.scoring.name}: {err}")

    def fit(self, train, val_mask: np.ndarray) -> "EntityScoring":
        """Fit on ``train`` (SeriesScores; ``val_mask`` marks its validation steps, which a
        raw score's calibration reads); ``train_``/``scored_train_`` keep it and its
        scoring."""
        self.train_ = final_part(self.cfg, train)
        self.scorer_ = build_scorer(self.cfg)
        every = OmegaConf.select(self.cfg, "trainer.log_every_s", default=30.0) or 0.0
        try:
            with heartbeat(f"{self.name}: scoring={self.cfg.scoring.name}", float(every)):  # M2AD's fit can take minutes
                self.scorer_.fit(self.train_, sensors=self.sensors, groups=self.groups, val_mask=val_mask)
                self.scored_train_ = self.scorer_.transform(self.train_)
        except ValueError as err:
            raise self._fail(err) from None
        return self

    def transform(self, series):
        """(``series`` with ``head.score``'s part final, its scoring: a ``Scored``); the
        scorer's notes are logged."""
        series = final_part(self.cfg, series)
        try:
            scored = self.scorer_.transform(series)
        except ValueError as err:
            raise self._fail(err) from None
        for note in scored.notes:
            log.warning("entity %s: %s", self.name, note)
        return series, scored


class RunResults:
    """One run dir's results, from the score stage's output onwards (``run_dir`` None: rows
    only, nothing written, as the Python API evaluates)."""

    def __init__(self, cfg: DictConfig, run_dir: Path | None):
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_id = uuid.uuid4().hex[:12]
        self.hash = config_hash(cfg)
        self.train_log: list[dict] = []
        self.loggers = []
        self.entity_scores: list[P.EntityScores] = []
        self.sizes: dict[str, dict] = {}
        #: per entity, what scores.npz keeps (madbench.rundir)
        self.stored: dict[str, rundir.StoredEntity] = {}
        self.anomalies: list[dict] | None = None
        #: how much of the train split the score stage scored (madbench.train_scores), kept in scores.npz
        self.train_scored = "all"
        #: protocol -> entity -> what it flagged (madbench.protocols.Decision), for the plots
        self.decisions: dict[str, dict[str, P.Decision]] = {}

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
        cfg = self.cfg
        tags = [f"{k}={v}" for k, v in choices(cfg).items() if k != "name" and v is not None] + list(cfg.get("tags") or [])
        for lg in instantiate_loggers(cfg):
            self.loggers.append(lg.start(
                OmegaConf.to_container(cfg, resolve=True) | {"config_hash": self.hash},
                self.run_dir, f"{cfg.name}-s{cfg.seed}-{self.hash[:6]}", sweep_name(), tags, self.run_id))

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

    # -- the scoring stage ------------------------------------------------------------
    def add_scores(self, name: str, labels: np.ndarray, sensors: list[str], groups: dict | None, tr, te,
                   val_mask: np.ndarray, window: int, sizes: dict, interpretation=None, gradient=None) -> None:
        """Fit the configured scorer on one entity's train-split scores, transform both
        splits, keep the result for the protocols and scores.npz. ``tr``/``te`` are the
        score stage's SeriesScores (from a trained model, or rebuilt from a run dir's
        scores.npz when re-scoring). ``interpretation`` (spans, sensor sets) is the
        entity's ground truth for the attribution metrics and ``gradient`` the job's
        gradient attribution [T, S] (``madbench.attribution``)."""
        scoring = EntityScoring(self.cfg, name, sensors, groups).fit(tr, val_mask)
        self.add_scored(name, labels, scoring, te, val_mask, window, sizes, interpretation, gradient)

    def add_scored(self, name: str, labels: np.ndarray, scoring: EntityScoring, te, val_mask: np.ndarray,
                   window: int, sizes: dict, interpretation=None, gradient=None) -> None:
        """Keep one entity whose scoring stage is fitted already (``scoring``: on its train
        split) for the protocols and scores.npz; ``te`` is the score stage's test output."""
        cfg = self.cfg
        sensors, groups = scoring.sensors, scoring.groups
        tr, s_tr = scoring.train_, scoring.scored_train_
        te, s_te = scoring.transform(te)
        es = P.EntityScores(name=name, labels=labels, score=s_te.score, train_score=s_tr.score,
                            val_mask=val_mask, window_score=te.window, window_start=te.window_start,
                            window=window, window_offsets=te.offsets, p=s_te.p, flags=s_te.flags,
                            status=s_te.status)
        es.extras.update(A.keep(cfg, name, labels, interpretation, te.residuals, s_te.sensor_p, gradient,
                                s_te.sensor_logp))
        self.entity_scores.append(es)
        self.sizes[name] = sizes
        self.stored[name] = rundir.StoredEntity(
            name=name, labels=labels, sensors=list(sensors), val_mask=val_mask, train=tr, test=te, score=es.score,
            train_score=es.train_score, p=s_te.p, flags=s_te.flags, sensor_p=s_te.sensor_p, status=es.status,
            groups=groups or None, extras=es.extras)

    # -- the protocols ------------------------------------------------------------------
    def evaluate_protocols(self) -> list[dict]:
        """Every configured protocol on the kept entity scores → result rows. A protocol
        that refuses the scores (a MadbenchError) fails its own rows only: one ``failed``
        row that says why, and the other protocols' rows stay ``ok``."""
        cfg = self.cfg
        rows = []
        ratio = cfg.dataset.get("anomaly_ratio")
        for name, pcfg in cfg.protocol.items():
            proto = P.build(name, OmegaConf.to_container(pcfg, resolve=True))
            try:
                found = proto.evaluate(self.entity_scores, anomaly_ratio=ratio)
            except MadbenchError as e:
                log.error("protocol %s failed: %s", name, e)
                rows.append({"entity": "ALL", "aggregate": "", "protocol": name, "status": "failed", "error": str(e)})
                continue
            rows += P.attach_interpretation(found, self.entity_scores)
            self.decisions[name] = proto.decisions
            if isinstance(proto, P.M2ADProtocol):
                self.anomalies = [{"entity": k, "start": a, "end": b, "score": sc,
                                   "top_sensors": self._drivers(k, a, b)}
                                  for k, found in proto.detected.items() for a, b, sc in found]
        notes = {es.name: [f"{es.status}: the scoring stage could not calibrate this entity's scores (no variance or no tail in "
                          f"its train/validation scores); nothing flagged"] if es.status != "ok" else []
                 for es in self.entity_scores}
        untrained = [name for name, s in self.sizes.items() if not trained(s)]
        for name in untrained:
            notes.setdefault(name, []).append(UNTRAINED)
        for r in rows:
            r.update(self.sizes.get(r["entity"], {}))
            if notes.get(r["entity"]):
                r["warning"] = "; ".join(notes[r["entity"]])
            if r["entity"] == "ALL":
                r.setdefault("n_entities", len(self.entity_scores))
                r["trained"] = not untrained
                if untrained:
                    r["warning"] = UNTRAINED
        return rows

    def _drivers(self, entity: str, start: int, end: int) -> str:
        """The sensors that drove an alarm (strongest per-sensor p-values over it), ';'-joined."""
        kept = self.stored.get(entity)
        if kept is None or kept.sensor_p is None:
            return ""
        from madbench.scoring.m2ad import top_sensors

        return ";".join(top_sensors(kept.sensor_p, start, end, kept.sensors))

    # -- outputs ----------------------------------------------------------------------
    def rows(self, rows: list[dict], status: str, error: str, started: float) -> list[dict]:
        """The protocols' rows with the run's ids, choices, status and timing: the rows of
        results.csv."""
        base = {"run_id": self.run_id, "config_hash": self.hash, "seed": int(self.cfg.seed), **choices(self.cfg),
                "status": status, "error": error, "total_seconds": time.perf_counter() - started,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
        if not rows:  # failed before any entity was evaluated: one row per protocol
            rows = [{"entity": "ALL", "aggregate": "", "protocol": p} for p in (self.cfg.get("protocol") or {"none": 0})]
        for r in rows:  # a protocol that failed on its own keeps its failed row (evaluate_protocols)
            own = r.get("status") == "failed"
            r.update({k: v for k, v in base.items() if k not in r or (k in ("status", "error") and not own)})
        return rows

    def finalize(self, rows: list[dict], status: str, error: str, started: float) -> pd.DataFrame:
        rows = self.rows(rows, status, error, started)
        if self.stored:
            rundir.write_scores(self.run_dir, rundir.StoredScores(
                entities=list(self.stored.values()), window=int(self.cfg.dataset.window), config_hash=self.hash,
                train_scored=self.train_scored))
        rundir.write_train_log(self.run_dir, self.train_log)
        if self.anomalies is not None:
            self.write_anomalies()
        return rundir.write_results(self.run_dir, rows)

    def write_anomalies(self) -> None:
        rundir.write_anomalies(self.run_dir, self.anomalies)

    def publish(self, rows: list[dict], started: float) -> pd.DataFrame:
        """The ``ok`` outputs: run-dir files, plots, and the results to every logger."""
        df = self.finalize(rows, "ok", "", started)
        self.plots()
        for lg in self.loggers:
            lg.log_results(df)
        return df

    def plots(self) -> None:
        lc = self.cfg.get("logger") or {}
        if not lc.get("csv", {}).get("plots", True) and not self.loggers:
            return
        for es in self.entity_scores:
            # every requested protocol that decided on this entity, in the config's order (a
            # protocol that refused the scores has no panel; its failed row says why)
            decisions = [d[es.name] for d in self.decisions.values() if es.name in d]
            path = plot_entity(self.run_dir / "plots" / f"{es.name}.png", es.name, es.score, es.labels, decisions)
            for lg in self.loggers:
                lg.log_image(es.name, path)
            self.plot_attribution(es)

    def plot_attribution(self, es: P.EntityScores, event: int | None = None) -> Path | None:
        """``plots/<entity>_attribution.png``: one ground-truth event (default: the one
        with the most labelled steps), its sensors ranked by attribution."""
        shown = A.event_profile(es.extras, es.labels, event)
        if shown is None:
            return None
        i, span, values, truth = shown
        sensors = self.stored[es.name].sensors
        return plot_attribution(self.run_dir / "plots" / f"{es.name}_attribution.png", es.name, span, values,
                                sensors, truth, es.extras.get("attribution_kind", ""))


@contextmanager
def task_wrapper(results: RunResults):
    """Start the loggers; on any error write ``failed`` rows (with the reason) and re-raise;
    always close the loggers. The one place a job or a re-scored variant fails."""
    started = time.perf_counter()
    exit_code = 0
    try:
        results.start_loggers()
        yield started
    except MadbenchError as e:
        exit_code = 1
        results.finalize([], "failed", str(e), started)
        raise
    except Exception as e:  # an unexpected bug: still failed rows, with the type named
        exit_code = 1
        results.finalize([], "failed", f"{type(e).__name__}: {e}", started)
        raise
    finally:
        results.finish_loggers(exit_code)


def sweep_name() -> str | None:
    """The sweep dir's name in a multirun (the W&B group), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir).name
    except ValueError:  # not under Hydra (tests, API use)
        return None
    return None
