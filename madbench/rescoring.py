"""Re-run the last stages of finished runs from their ``scores.npz``, without training.

    madbench-eval RUN_DIR protocol=[tslib,m2ad] protocol.m2ad.padding=0
        re-evaluates the protocols in place: their rows in RUN_DIR/results.csv are
        replaced (other rows are kept), config.yaml records the protocols now evaluated
        (anomalies.csv too, for m2ad), and every row carries the config_hash of that
        updated config.
    madbench-eval RUN_OR_SWEEP_DIR scoring.n_components=1,3 scoring.calibration=gamma,chi2
        re-runs the scoring stage from the kept train/test residuals, once per combination
        (Hydra's sweep syntax), and writes each variant as a run dir of its own under
        ``<run dir>/rescored/<variant>/`` with its own config_hash, so ``madbench-collect``
        and ``madbench-tables`` see it like any job. A directory without scores.npz is
        searched for run dirs (a sweep). A variant that already has an ``ok`` result is
        left as it is (``--redo`` re-scores it), so an interrupted re-scoring resumes; one
        config_hash never gets two dirs. Every variant skipped is said (it equals the run,
        or is already done), and variants whose scores are identical although their
        ``scoring`` overrides differ are warned about.
    madbench-eval --variants RUN_OR_SWEEP_DIR protocol.m2ad.grouping=forward protocol.m2ad.bridge=50
        writes protocol-only overrides as variant dirs too, instead of in place (a search
        over protocol parameters keeps every combination).

Only what happens after the score stage may change: ``scoring.*``, ``protocol``,
``name``/``experiment_name``/``tags``, ``logger``, ``dataset.anomaly_ratio``, ``attribution``
(residual and p-value attributions are rebuilt; a gradient one is read back as it was). A variant is
logged like a job (one W&B run of its own when the logger has wandb). Anything else changes
training and is refused with the key named; so is a key the run's config does not have
(as the main app refuses it), unless given as ``+key=value``. Unknown keys and bad values
are refused for every combination before any variant dir is written.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from madbench import attribution as A
from madbench import protocols as P
from madbench import rundir, train_scores
from madbench.checks import check_variants, validate_after_score
from madbench.config import config_hash
from madbench.errors import ConfigError, DataError, MadbenchError
from madbench.overrides import apply_overrides, check_rescorable, expand, key_of, under
from madbench.results import RunResults, task_wrapper
from madbench.tracking.collect import find_ok_run
from madbench.tracking.summary import print_summary

log = logging.getLogger("madbench")
#: per-entity size/timing columns a variant inherits from the run it re-scores
SIZE_COLUMNS = ("n_train", "n_test", "n_sensors", "n_inputs", "epochs_run", "trained", "fit_seconds", "score_seconds")


# -- reading a run dir ---------------------------------------------------------------------
def load_scores(run_dir: Path) -> list[P.EntityScores]:
    """The scored entities of a run dir, as the protocols take them (``madbench.rundir``)."""
    return rundir.read_scores(run_dir).entity_scores()


def _check_rescorable_scores(run_dir: Path, e: rundir.StoredEntity, needs_residuals: bool) -> None:
    """What the scoring stage will read must be there: residuals for a residual scorer, the
    step scores of both splits for the others."""
    if needs_residuals:
        missing = [n for n, s in (("train_residuals", e.train), ("residuals", e.test)) if s.residuals is None]
        what = "per-sensor residuals"
    else:
        missing = [n for n, s in (("train_step", e.train), ("step", e.test)) if s.step is None]
        what = "step scores"
    if missing:
        raise DataError(f"{Path(run_dir) / 'scores.npz'}: entity {e.name} has no {', '.join(missing)}; re-scoring "
                        f"needs the train and test {what}, which runs written before re-scoring existed lack "
                        "(re-run the job)")


def check_train_scores(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse (one line) a variant whose scoring stage or protocols read train scores the
    run did not keep (``score_train=auto`` scores the train split only as far as the job's
    own stages read it: ``madbench.train_scores``)."""
    train_scores.check_stored(rundir.read_train_scored(run_dir), cfg, str(Path(run_dir) / "scores.npz"))


def entity_sizes(results: pd.DataFrame, columns) -> dict[str, dict]:
    """Per entity, the ``columns`` its result rows carry (sizes, timings)."""
    if "entity" not in results:
        return {}
    return {ent: {c: g[c].iloc[0] for c in columns if c in g and g[c].notna().any()}
            for ent, g in results.groupby("entity")}


def find_run_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a run dir, else every run dir below it (variants under
    ``rescored/`` excluded: they hold no residuals to re-score)."""
    path = Path(path)
    if (path / "scores.npz").exists():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: not a directory; expected a run dir or a sweep dir")
    found = sorted(p.parent for p in path.rglob("scores.npz")
                   if "rescored" not in p.relative_to(path).parts[:-1] and (p.parent / "config.yaml").exists())
    if not found:
        raise DataError(f"{path}: no run dir (config.yaml + scores.npz) found below it")
    return found


def _slug(overrides: list[str], hash_: str) -> str:
    # labels (name, tags, ...) say nothing about the variant: the hash keeps dirs apart
    parts = [f"{key_of(o).split('.')[-1]}-{o.split('=', 1)[1]}" for o in overrides
             if key_of(o) not in ("name", "experiment_name", "tags", "logger")]
    text = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(parts))[:80].strip("_") or "variant"
    return f"{text}-{hash_[:6]}"


# -- re-scoring ----------------------------------------------------------------------------
class Skipped(str):
    """Why a variant was not written: it equals the run, or it already has an ok result."""


def _variant_dir(run_dir: Path, hash_: str) -> Path | None:
    """The dir under ``run_dir/rescored/`` that already holds the variant ``hash_`` (ok,
    failed or cut short: its config.yaml says), else None."""
    root = Path(run_dir) / "rescored"
    for d in sorted(root.glob(f"*-{hash_[:6]}")) if root.is_dir() else []:
        try:
            if config_hash(rundir.read_config(d)) == hash_:
                return d
        except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException, DataError):  # unreadable: not this variant's dir
            continue
    return None


def rescore(run_dir: Path, overrides: list[str], out_dir: Path | None = None, parent_cfg: DictConfig | None = None,
            redo: bool = True) -> tuple[Path, pd.DataFrame] | Skipped:
    """Re-run the scoring stage (then every protocol) of ``run_dir`` with ``overrides``;
    the variant is written as a run dir of its own. Returns (dir, results), or ``Skipped``
    (a one-line reason) when the overrides compute nothing new: the run's own config, or a
    change of labels only; with ``redo=False`` also when the variant already has an ``ok``
    result under ``run_dir/rescored/`` (a partial or failed one is redone, in its own dir:
    one config_hash never gets two dirs). A refused config (unknown key, bad value) raises
    before any dir is written; an error while re-scoring leaves the variant dir with
    ``failed`` rows, then is raised.

    ``parent_cfg`` is the config the variant starts from (default: the run's config.yaml);
    a job skipped by skip_done passes its own, which has the run's config_hash."""
    run_dir = Path(run_dir)
    parent = rundir.migrate_config(parent_cfg) if parent_cfg is not None else rundir.read_config(run_dir)
    cfg = apply_overrides(parent, overrides)
    with open_dict(cfg):
        cfg.pop("rescore", None)
        cfg["rescored_from"] = str(run_dir.resolve())
    validate_after_score(cfg)
    check_train_scores(run_dir, cfg)
    hash_ = config_hash(cfg)
    if hash_ == config_hash(parent):  # labels and runtime keys are outside the hash
        return Skipped(f"equals the run itself ({run_dir})")
    if out_dir is None:
        if not redo:
            existing = find_ok_run(run_dir / "rescored", hash_)
            if existing is not None:
                return Skipped(f"already has an ok result in {existing} (--redo re-scores it)")
        # a partial or failed earlier attempt (maybe spelled differently) is redone in its own dir
        out_dir = _variant_dir(run_dir, hash_) or run_dir / "rescored" / _slug(overrides, hash_)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out_dir, cfg)
    results = RunResults(cfg, out_dir)
    with task_wrapper(results) as started:
        sizes = entity_sizes(rundir.read_results(run_dir), SIZE_COLUMNS)
        stored = rundir.read_scores(run_dir)
        results.train_scored = stored.train_scored
        for e in stored.entities:
            _check_rescorable_scores(run_dir, e, bool(cfg.scoring.get("needs_residuals")))
            # ground-truth sensors, and a gradient attribution (it needs the model) as it was computed
            results.add_scores(e.name, e.labels, e.sensors, e.groups, e.train, e.test, e.val_mask, stored.window,
                               sizes.get(e.name, {}), interpretation=A.interpretation_of(e.extras),
                               gradient=A.stored_gradient(e.extras, len(e.labels)))
        results.train_log = rundir.read_train_log(run_dir)
        df = results.publish(results.evaluate_protocols(), started)
    return out_dir, df


def scores_digest(run_dir: Path) -> str | None:
    """A digest of the scoring stage's output in ``run_dir/scores.npz`` (every entity's
    final train and test score, p-values and flags): equal digests, the same scoring model."""
    import hashlib

    if not (Path(run_dir) / "scores.npz").exists():
        return None
    h = hashlib.sha1()
    for e in rundir.read_scores(run_dir).entities:
        for field, v in (("score", e.score), ("train_score", e.train_score), ("p", e.p), ("flags", e.flags)):
            if v is not None:
                h.update(f"{e.name}/{field}".encode())
                h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _scoring_overrides(combo: list[str]) -> list[str]:
    """The overrides of ``combo`` that reach the scores (``scoring...``); the rest (protocol,
    attribution, logger, names) change what is read from the scores, never the scores."""
    return sorted(o for o in combo if under(o, "scoring"))


def warn_identical(run_dir: Path, variants: list[tuple[Path, list[str]]]) -> list[str]:
    """One warning per variant whose scores equal the run's or an earlier variant's although
    their ``scoring`` overrides differ: those overrides change nothing for this run (e.g.
    ``scoring.distribution=normal`` is ``gmm`` when ``scoring.n_components=1``). Variants
    that differ only outside ``scoring`` (``protocol.m2ad.padding=0,50``) share their scores
    by construction and are not warned about."""
    seen = {scores_digest(run_dir): (run_dir, [])}
    warnings = []
    for d, combo in variants:
        digest = scores_digest(d)
        if digest is None:
            continue
        if digest in seen:
            other, other_combo = seen[digest]
            if _scoring_overrides(combo) == _scoring_overrides(other_combo):
                continue
            what = "the run itself" if other == run_dir else f"[{' '.join(other_combo)}] ({other.name})"
            warnings.append(f"{d}: [{' '.join(combo)}] gives the same scores as {what}; the overrides that tell "
                            "them apart change nothing for this run")
            log.warning("re-scoring: %s", warnings[-1])
        else:
            seen[digest] = (d, combo)
    return warnings


def rescore_all(paths: list[Path], overrides: list[str], progress: bool = True, redo: bool = False,
                parent_cfg: DictConfig | None = None, notes: list[str] | None = None
                ) -> tuple[list[Path], list[str]]:
    """Every variant of ``overrides`` (sweep syntax) for every run dir under ``paths``.
    A failed variant is reported and the rest go on (its dir has ``failed`` rows when it
    failed while re-scoring; a refused config writes none). A variant that already has an
    ``ok`` result is left as it is unless ``redo``, so an interrupted re-scoring resumes
    where it stopped. Returns (variant dirs written, one-line errors); ``notes``, when
    given, receives one line per variant skipped and per pair of identical variants."""
    from tqdm.auto import tqdm

    from madbench.fit import bar_disabled

    check_rescorable(overrides)  # once, up front: the same for every run dir
    runs = [r for p in paths for r in find_run_dirs(Path(p))]
    for r in runs:  # every combination, on each run's own config: a refused one writes nothing at all
        if parent_cfg is not None or (r / "config.yaml").exists():
            base = parent_cfg if parent_cfg is not None else rundir.read_config(r)
            check_variants(base, overrides)
            if (r / "scores.npz").exists() and rundir.read_train_scored(r) != train_scores.ALL:
                for combo in expand(overrides):
                    check_train_scores(r, apply_overrides(rundir.migrate_config(base), combo))
    combos = expand(overrides)
    done, errors, said = [], [], []
    written: dict[Path, list[tuple[Path, list[str]]]] = {}
    tasks = [(r, c) for r in runs for c in combos]
    for run_dir, combo in tqdm(tasks, desc="re-scoring", unit="variant",
                               disable=True if len(tasks) == 1 else bar_disabled(progress)):
        shown = " ".join(combo).replace("$\\{", "${").replace("\\}", "}")  # the sweeper's escapes
        try:
            out = rescore(run_dir, combo, parent_cfg=parent_cfg, redo=redo)
        except Exception as e:  # a variant never takes down the others, nor the job that asked for it
            errors.append(f"{run_dir} [{shown}]: {e if isinstance(e, MadbenchError) else f'{type(e).__name__}: {e}'}")
            log.error("re-scoring failed: %s", errors[-1])
            continue
        if isinstance(out, Skipped):
            said.append(f"skipped [{shown}]: {out}")
            log.info("re-scoring %s", said[-1])
            continue
        done.append(out[0])
        written.setdefault(run_dir, []).append((out[0], combo))
    for run_dir, variants in written.items():
        said += warn_identical(run_dir, variants)
    if notes is not None:
        notes += said
    return done, errors


# -- in-place protocol re-evaluation -------------------------------------------------------
def reevaluate(run_dir: Path, overrides: list[str]) -> pd.DataFrame:
    """The protocols named by ``overrides`` on the run's own scores; their rows in
    ``results.csv`` are replaced and the rest kept. The protocols run through the job's own
    ``RunResults.evaluate_protocols`` (entity status and its warning, sizes, anomalies.csv
    with its drivers), so re-evaluating a run with its own config reproduces its rows.
    ``config.yaml`` gets the protocols as now evaluated (so an alpha used is on record), and
    every row the config_hash of that updated config (the old one no longer describes the
    run dir)."""
    run_dir = Path(run_dir)
    saved = rundir.read_config(run_dir)
    cfg = apply_overrides(saved, overrides)
    validate_after_score(cfg)
    check_train_scores(run_dir, cfg)
    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=False))
    with open_dict(merged):
        for name, node in cfg.protocol.items():
            merged.protocol[name] = node
    hash_ = config_hash(merged)
    results = RunResults(cfg, run_dir)
    stored = rundir.read_scores(run_dir)
    results.entity_scores = stored.entity_scores()
    results.stored = {e.name: e for e in stored.entities}  # the anomalies' drivers (sensor_p)
    old = rundir.read_results(run_dir)
    ident = old.iloc[0].to_dict() if len(old) else {}
    results.sizes = entity_sizes(old, SIZE_COLUMNS)  # the protocols do not recompute them
    carried = entity_sizes(old, ("total_seconds", "finished_at"))
    rows = []
    for r in results.evaluate_protocols():
        base = {k: ident.get(k) for k in rundir.ID_COLUMNS if k not in r}
        base.update({"status": "ok", "error": ""})
        base.update({k: v for k, v in carried.get(r["entity"], {}).items() if k not in r})
        rows.append(base | r | {"config_hash": hash_})
    new = rundir.results_frame(rows)
    kept = old[~old["protocol"].isin(list(cfg.protocol))].assign(config_hash=hash_) if len(old) else old
    df = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    rundir.write_config(run_dir, merged)
    if results.anomalies is not None:
        results.write_anomalies()
    rundir.write_results(run_dir, df.to_dict("records"))
    return new


USAGE = ("usage: madbench-eval [--variants] RUN_OR_SWEEP_DIR [protocol=...] [protocol.NAME.key=value] "
         "[scoring.key=a,b ...] [--redo]")


def main(argv: list[str]) -> pd.DataFrame | list[Path]:
    if argv and argv[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{__doc__.split(chr(10), 2)[2]}")
        return []
    # --redo: re-score variants that already have an ok result too (default: leave them)
    redo = "--redo" in argv
    # --variants: protocol-only overrides as variant dirs, not in place
    variants = "--variants" in argv
    argv = [a for a in argv if a not in ("--redo", "--variants")]
    if not argv or argv[0].startswith("-"):
        raise ConfigError(USAGE)
    path, overrides = Path(argv[0]), list(argv[1:])
    combos = expand(overrides)
    in_place = not variants and len(combos) == 1 and all(under(o, "protocol") for o in combos[0])
    if in_place:
        frames = []
        for run_dir in find_run_dirs(path):
            new = reevaluate(run_dir, combos[0])
            print_summary(new, run_dir)
            frames.append(new)
        return pd.concat(frames, ignore_index=True)
    notes: list[str] = []
    done, errors = rescore_all([path], overrides, redo=redo, notes=notes)
    for d in done:
        print(f"re-scored: {d}")
    for note in notes:
        print(note, file=sys.stderr)
    if errors:
        raise DataError(f"{len(errors)} variant(s) not written; first: {errors[0]}")
    if not done:
        print("nothing to do: no variant computes anything new", file=sys.stderr)
    return done
