"""Re-run the last stages of finished runs from their ``scores.npz``, without training.

    madbench-eval RUN_DIR protocol=[strict,tslib] protocol.m2ad.alpha=0.01
        re-evaluates the protocols in place: their rows in RUN_DIR/results.csv are
        replaced (other rows are kept; the config_hash stays the run's).
    madbench-eval RUN_OR_SWEEP_DIR scoring.distribution=gmm,normal scoring.calibration=gamma,chi2
        re-runs the scoring stage from the kept train/test residuals, once per combination
        (Hydra's sweep syntax), and writes each variant as a run dir of its own under
        ``<run dir>/rescored/<variant>/`` with its own config_hash, so ``madbench-collect``
        and ``madbench-tables`` see it like any job. A directory without scores.npz is
        searched for run dirs (a sweep).
    madbench-eval --variants RUN_OR_SWEEP_DIR protocol.m2ad.grouping=forward protocol.m2ad.bridge=50
        writes protocol-only overrides as variant dirs too, instead of in place (a search
        over protocol parameters keeps every combination).

Only what happens after the score stage may change: ``scoring.*``, ``protocol``,
``name``/``experiment_name``/``tags``, ``logger``, ``dataset.anomaly_ratio``. A variant is
logged like a job (one W&B run of its own when the logger has wandb). Anything else changes
training and is refused with the key named; so is an unknown or bad protocol key (e.g. a
typo ``protocol.m2ad.gruping``), for every combination before any is written.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from madbench import protocols as P
from madbench.errors import ConfigError, DataError, MadbenchError
from madbench.scoring.base import SeriesScores
from madbench.tracking import csv as tcsv

log = logging.getLogger("madbench")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: config groups an override may select (composed from configs/)
GROUPS = ("scoring", "protocol", "logger")
#: what may change without retraining: the scoring stage and everything after it
RESCORABLE = ("scoring", "protocol", "name", "experiment_name", "tags", "logger", "dataset.anomaly_ratio")
#: per-entity size/timing columns a variant inherits from the run it re-scores
SIZE_COLUMNS = ("n_train", "n_test", "n_sensors", "n_inputs", "epochs_run", "fit_seconds", "score_seconds")


# -- reading a run dir ---------------------------------------------------------------------
def _npz(run_dir: Path):
    path = Path(run_dir) / "scores.npz"
    if not path.exists():
        raise DataError(f"{path}: missing; expected the scores.npz a completed run writes")
    z = np.load(path, allow_pickle=False)
    return z, json.loads(str(z["__meta__"]))


def load_scores(run_dir: Path) -> list[P.EntityScores]:
    """The scored entities of a run dir, as the protocols take them."""
    z, meta = _npz(run_dir)
    out = []
    for name in meta["entities"]:
        k = f"{name}__"
        out.append(P.EntityScores(
            name=name, labels=z[k + "labels"], score=z[k + "score"], train_score=z[k + "train_score"],
            val_mask=z[k + "val_mask"].astype(bool), window_score=z[k + "window_score"],
            window_start=z[k + "window_start"], window=int(meta["window"]),
            p=z[k + "p"] if k + "p" in z else None, flags=z[k + "flags"] if k + "flags" in z else None))
    return out


def load_series(run_dir: Path, needs_residuals: bool) -> list[dict]:
    """Per entity, what the score stage handed to the scoring stage: train and test
    SeriesScores, labels, sensor names, groups, validation mask."""
    z, meta = _npz(run_dir)
    path = Path(run_dir) / "scores.npz"
    out = []
    for name in meta["entities"]:
        k = f"{name}__"
        need = ["train_residuals", "residuals"] if needs_residuals else ["train_step", "step"]
        missing = [n for n in need if k + n not in z]
        if missing:
            what = "per-sensor residuals" if needs_residuals else "step scores"
            raise DataError(f"{path}: entity {name} has no {', '.join(missing)}; re-scoring needs the train and test "
                            f"{what}, which runs written before re-scoring existed lack (re-run the job)")
        def res(n: str, k: str = k) -> np.ndarray | None:
            return z[k + n].astype(np.float64) if k + n in z else None

        empty = np.zeros(0)
        out.append({
            "name": name, "labels": z[k + "labels"], "sensors": [str(s) for s in z[k + "sensors"]],
            "groups": (meta.get("groups") or {}).get(name),
            "val_mask": z[k + "val_mask"].astype(bool), "window": int(meta["window"]),
            # a residual-based scorer never reads the step scores: NaN stands in where absent
            "train": SeriesScores(step=res("train_step") if k + "train_step" in z else np.full(len(z[k + "val_mask"]), np.nan),
                                  residuals=res("train_residuals"), window=empty, window_start=empty.astype(int)),
            "test": SeriesScores(step=z[k + "step"], residuals=res("residuals"), window=z[k + "window_score"],
                                 window_start=z[k + "window_start"]),
        })
    return out


def read_results(run_dir: Path) -> pd.DataFrame:
    """The run's ``results.csv``, or an empty frame when it has none."""
    return tcsv.read_results(run_dir) if (Path(run_dir) / "results.csv").exists() else pd.DataFrame()


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


# -- overrides -----------------------------------------------------------------------------
def expand(overrides: list[str]) -> list[list[str]]:
    """Hydra's sweep syntax (``k=a,b``, ``k=range(…)``) → one override list per combination,
    in the basic sweeper's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not overrides:
        return [[]]
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # hydra's OverrideParseException carries a multi-line message
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {str(e).splitlines()[0]}") from None
    return [combo for batch in BasicSweeper.split_arguments(parsed, None) for combo in batch]


def _key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """A run's saved config with post-score overrides applied (groups composed from
    configs/, dotted keys set); anything that would change training is refused."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    check_rescorable(overrides)
    groups = [o for o in overrides if _key(o) in GROUPS]
    if groups:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.initialize import get_gh_backup, restore_gh_from_backup

        # inside a Hydra app (a job's rescore list, run from the CLI) the app's instance is
        # set and a second initialisation would fail: set it aside and put it back after
        backup = get_gh_backup()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                try:
                    composed = compose("config", overrides=groups, return_hydra_config=False)
                except Exception as e:
                    raise ConfigError(f"{groups}: {str(e).splitlines()[0]}") from None
        finally:
            restore_gh_from_backup(backup)
        for g in {_key(o) for o in groups}:
            cfg[g] = OmegaConf.create(OmegaConf.to_container(composed[g], resolve=False))
    for o in OverridesParser.create().parse_overrides([o for o in overrides if _key(o) not in GROUPS]):
        if o.is_delete():
            raise ConfigError(f"~{o.key_or_group}: deleting keys is not supported when re-scoring")
        with open_dict(cfg):
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
    return cfg


def check_rescorable(overrides: list[str]) -> None:
    """Refuse an override of anything the score stage depends on (it would need training)."""
    for line in overrides:
        key = _key(line)
        if not any(key == r or key.startswith(r + ".") for r in RESCORABLE):
            raise ConfigError(f"{key}: changes what is trained; re-scoring may change only {', '.join(RESCORABLE)} "
                              "(run madbench again for the rest)")


def check_variants(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse, before anything is written, overrides (sweep syntax) that no combination
    could run: keys that change training, and protocol keys or values the protocols
    refuse (an unknown key would otherwise be ignored, giving variants equal to the run)."""
    from madbench.config import check_protocols

    check_rescorable(overrides)
    for combo in expand(overrides):
        check_protocols(apply_overrides(cfg, combo))


def _slug(overrides: list[str], hash_: str) -> str:
    # labels (name, tags, ...) say nothing about the variant: the hash keeps dirs apart
    parts = [f"{_key(o).split('.')[-1]}-{o.split('=', 1)[1]}" for o in overrides
             if _key(o) not in ("name", "experiment_name", "tags", "logger")]
    text = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(parts))[:80].strip("_") or "variant"
    return f"{text}-{hash_[:6]}"


# -- re-scoring ----------------------------------------------------------------------------
def rescore(run_dir: Path, overrides: list[str], out_dir: Path | None = None) -> tuple[Path, pd.DataFrame] | None:
    """Re-run the scoring stage (then every protocol) of ``run_dir`` with ``overrides``;
    the variant is written as a run dir of its own. Returns (dir, results), or None when
    the overrides leave the run's config unchanged. On bad input the variant dir still gets
    its ``failed`` rows, then the error is raised."""
    from madbench.config import config_hash, validate
    from madbench.run import Job

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise DataError(f"{cfg_path}: missing; expected a madbench run dir")
    parent = OmegaConf.load(cfg_path)
    cfg = apply_overrides(parent, overrides)
    with open_dict(cfg):
        cfg.pop("rescore", None)
        cfg["rescored_from"] = str(run_dir.resolve())
    hash_ = config_hash(cfg)
    if hash_ == config_hash(parent):
        return None
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "rescored" / _slug(overrides, hash_)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tcsv.atomic_write(out_dir / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=False))
    job = Job(cfg, out_dir)
    exit_code = 0
    try:
        validate(cfg)
        job.start_loggers()
        sizes = entity_sizes(read_results(run_dir), SIZE_COLUMNS)
        for ent in load_series(run_dir, needs_residuals=bool(cfg.scoring.get("needs_residuals"))):
            job.add_scores(ent["name"], ent["labels"], ent["sensors"], ent["groups"], ent["train"], ent["test"],
                           ent["val_mask"], ent["window"], sizes.get(ent["name"], {}))
        if (run_dir / "train_log.csv").exists():
            job.train_log = pd.read_csv(run_dir / "train_log.csv").to_dict("records")
        df = job.finalize(job.evaluate(), "ok", "", started)
        for lg in job.loggers:
            lg.log_results(df)
    except MadbenchError as e:
        exit_code = 1
        job.finalize([], "failed", str(e), started)
        raise
    except Exception as e:  # an unexpected bug: still failed rows, with the type named
        exit_code = 1
        job.finalize([], "failed", f"{type(e).__name__}: {e}", started)
        raise
    finally:
        job.finish_loggers(exit_code)
    return out_dir, df


def rescore_all(paths: list[Path], overrides: list[str], progress: bool = True) -> tuple[list[Path], list[str]]:
    """Every variant of ``overrides`` (sweep syntax) for every run dir under ``paths``.
    A failed variant is recorded (its dir has ``failed`` rows), reported and skipped; the
    rest go on. Returns (variant dirs written, one-line errors)."""
    from tqdm.auto import tqdm

    check_rescorable(overrides)  # once, up front: the same for every run dir
    runs = [r for p in paths for r in find_run_dirs(Path(p))]
    for r in runs:  # every combination's protocol keys, on each run's own config
        cfg_path = r / "config.yaml"
        if cfg_path.exists():
            check_variants(OmegaConf.load(cfg_path), overrides)
    combos = expand(overrides)
    done, errors = [], []
    tasks = [(r, c) for r in runs for c in combos]
    for run_dir, combo in tqdm(tasks, desc="re-scoring", unit="variant", disable=not progress or len(tasks) == 1):
        try:
            out = rescore(run_dir, combo)
        except Exception as e:  # a variant never takes down the others, nor the job that asked for it
            shown = " ".join(combo).replace("$\\{", "${").replace("\\}", "}")  # the sweeper's escapes
            errors.append(f"{run_dir} [{shown}]: {e if isinstance(e, MadbenchError) else f'{type(e).__name__}: {e}'}")
            log.error("re-scoring failed: %s", errors[-1])
            continue
        if out is not None:
            done.append(out[0])
    return done, errors


# -- in-place protocol re-evaluation -------------------------------------------------------
def reevaluate(run_dir: Path, overrides: list[str]) -> pd.DataFrame:
    """The protocols named by ``overrides`` on the run's own scores; their rows in
    ``results.csv`` are replaced and the rest kept."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise DataError(f"{cfg_path}: missing; expected a madbench run dir")
    cfg = apply_overrides(OmegaConf.load(cfg_path), overrides)
    entities = load_scores(run_dir)
    ratio = OmegaConf.select(cfg, "dataset.anomaly_ratio", default=None)
    old = read_results(run_dir)
    ident = old.iloc[0].to_dict() if len(old) else {}
    sizes = entity_sizes(old, tcsv.SIZE_COLUMNS)  # the protocols do not recompute them
    rows = []
    for name, pcfg in cfg.protocol.items():
        for r in P.build(name, OmegaConf.to_container(pcfg, resolve=True)).evaluate(entities, anomaly_ratio=ratio):
            base = {k: ident.get(k) for k in tcsv.ID_COLUMNS if k not in r}
            base.update({"status": "ok", "error": ""})
            base.update({k: v for k, v in sizes.get(r["entity"], {}).items() if k not in r})
            rows.append(base | r)
    new = tcsv.results_frame(rows)
    kept = old[~old["protocol"].isin(list(cfg.protocol))] if len(old) else old
    df = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    tcsv.write_results(run_dir, df.to_dict("records"))
    return new


USAGE = ("usage: madbench-eval [--variants] RUN_OR_SWEEP_DIR [protocol=...] [protocol.NAME.key=value] "
         "[scoring.key=a,b ...]")


def main(argv: list[str]) -> pd.DataFrame | list[Path]:
    argv = list(argv)
    variants = "--variants" in argv  # protocol-only overrides as variant dirs, not in place
    argv = [a for a in argv if a != "--variants"]
    if not argv or argv[0].startswith("-"):
        raise ConfigError(USAGE)
    path, overrides = Path(argv[0]), list(argv[1:])
    combos = expand(overrides)
    in_place = not variants and len(combos) == 1 and all(
        _key(o) == "protocol" or _key(o).startswith("protocol.") for o in combos[0])
    if in_place:
        from madbench.tracking.summary import print_summary

        frames = []
        for run_dir in find_run_dirs(path):
            new = reevaluate(run_dir, combos[0])
            print_summary(new, run_dir)
            frames.append(new)
        return pd.concat(frames, ignore_index=True)
    done, errors = rescore_all([path], overrides)
    for d in done:
        print(f"re-scored: {d}")
    if errors:
        raise DataError(f"{len(errors)} variant(s) failed; first: {errors[0]}")
    if not done:
        print("nothing to do: every variant equals the run it would re-score", file=sys.stderr)
    return done
