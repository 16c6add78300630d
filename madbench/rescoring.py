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

Only what happens after the score stage may change: ``scoring.*``, ``protocol``,
``name``/``experiment_name``/``tags``, ``logger``, ``dataset.anomaly_ratio``, ``attribution``
(residual and p-value attributions are rebuilt; a gradient one is read back as it was). A variant is
logged like a job (one W&B run of its own when the logger has wandb). Anything else changes
training and is refused with the key named.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from madbench import attribution as A
from madbench import protocols as P
from madbench.errors import ConfigError, DataError, MadbenchError
from madbench.results import RunResults, task_wrapper
from madbench.scoring.base import SeriesScores
from madbench.tracking import csv as tcsv

log = logging.getLogger("madbench")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: config groups an override may select (composed from configs/)
GROUPS = ("scoring", "protocol", "logger")
#: what may change without retraining: the scoring stage and everything after it
RESCORABLE = ("scoring", "protocol", "name", "experiment_name", "tags", "logger", "dataset.anomaly_ratio",
              "attribution")
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
            p=z[k + "p"] if k + "p" in z else None, flags=z[k + "flags"] if k + "flags" in z else None,
            extras=A.from_npz(z, k)))
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
        kept = A.from_npz(z, k)
        out.append({
            # ground-truth sensors, and a gradient attribution (which needs the model) as it was computed
            "interpretation": A.interpretation_of(kept), "gradient": A.stored_gradient(kept, len(z[k + "labels"])),
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
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            try:
                composed = compose("config", overrides=groups, return_hydra_config=False)
            except Exception as e:
                raise ConfigError(f"{groups}: {str(e).splitlines()[0]}") from None
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
    tcsv.atomic_write(out_dir / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=False))
    results = RunResults(cfg, out_dir)
    with task_wrapper(results) as started:
        validate(cfg)
        sizes = entity_sizes(read_results(run_dir), SIZE_COLUMNS)
        for ent in load_series(run_dir, needs_residuals=bool(cfg.scoring.get("needs_residuals"))):
            results.add_scores(ent["name"], ent["labels"], ent["sensors"], ent["groups"], ent["train"], ent["test"],
                               ent["val_mask"], ent["window"], sizes.get(ent["name"], {}),
                               interpretation=ent["interpretation"], gradient=ent["gradient"])
        if (run_dir / "train_log.csv").exists():
            results.train_log = pd.read_csv(run_dir / "train_log.csv").to_dict("records")
        df = results.publish(results.evaluate_protocols(), started)
    return out_dir, df


def rescore_all(paths: list[Path], overrides: list[str], progress: bool = True) -> tuple[list[Path], list[str]]:
    """Every variant of ``overrides`` (sweep syntax) for every run dir under ``paths``.
    A failed variant is recorded (its dir has ``failed`` rows), reported and skipped; the
    rest go on. Returns (variant dirs written, one-line errors)."""
    from tqdm.auto import tqdm

    check_rescorable(overrides)  # once, up front: the same for every run dir
    runs = [r for p in paths for r in find_run_dirs(Path(p))]
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
        proto = P.build(name, OmegaConf.to_container(pcfg, resolve=True))
        for r in P.attach_interpretation(proto.evaluate(entities, anomaly_ratio=ratio), entities):
            base = {k: ident.get(k) for k in tcsv.ID_COLUMNS if k not in r}
            base.update({"status": "ok", "error": ""})
            base.update({k: v for k, v in sizes.get(r["entity"], {}).items() if k not in r})
            rows.append(base | r)
    new = tcsv.results_frame(rows)
    kept = old[~old["protocol"].isin(list(cfg.protocol))] if len(old) else old
    df = pd.concat([kept, new], ignore_index=True) if len(kept) else new
    tcsv.write_results(run_dir, df.to_dict("records"))
    return new


USAGE = "usage: madbench-eval RUN_OR_SWEEP_DIR [protocol=...] [protocol.NAME.key=value] [scoring.key=a,b ...]"


def main(argv: list[str]) -> pd.DataFrame | list[Path]:
    if not argv or argv[0].startswith("-"):
        raise ConfigError(USAGE)
    path, overrides = Path(argv[0]), list(argv[1:])
    combos = expand(overrides)
    in_place = len(combos) == 1 and all(_key(o) == "protocol" or _key(o).startswith("protocol.") for o in combos[0])
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
