"""Checks of a composed config, done before any data is read or model trained, and the
stable ``config_hash`` that identifies a job across re-runs of a sweep."""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from madbench.errors import ConfigError

#: top-level keys that never change what a job computes
HASH_EXCLUDE = ("paths", "logger", "hydra", "skip_done", "name", "optimize_metric", "rescore", "rescored_from")
#: trainer keys that change how, not what
TRAINER_EXCLUDE = ("progress", "eval_batch_size", "device")


def config_hash(cfg: DictConfig) -> str:
    """sha1 of the resolved config minus paths, logger, launcher and progress settings."""
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for k in HASH_EXCLUDE:
        c.pop(k, None)
    for k in TRAINER_EXCLUDE:
        c.get("trainer", {}).pop(k, None)
    blob = json.dumps(c, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _num(cfg, path: str):
    return OmegaConf.select(cfg, path, default=None)


def _ratio(cfg, path: str) -> None:
    v = _num(cfg, path)
    if v is None:
        return
    if not isinstance(v, (int, float)) or not (0.0 < float(v) < 1.0):
        raise ConfigError(f"{path}={v}; expected a ratio in (0, 1)")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line: the field and what is allowed) on the first bad value."""
    window = _num(cfg, "dataset.window")
    if not isinstance(window, int) or window <= 1:
        raise ConfigError(f"dataset.window={window}; expected an integer > 1")
    stride = _num(cfg, "dataset.stride") or 1
    if not isinstance(stride, int) or stride < 1 or stride > window:
        raise ConfigError(f"dataset.stride={stride}; expected an integer in [1, dataset.window={window}]")
    epochs = _num(cfg, "trainer.epochs")
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"trainer.epochs={epochs}; expected an integer >= 0")
    bs = _num(cfg, "trainer.batch_size")
    if not isinstance(bs, int) or bs < 1:
        raise ConfigError(f"trainer.batch_size={bs}; expected an integer >= 1")
    patience = _num(cfg, "trainer.patience")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"trainer.patience={patience}; expected an integer >= 1 or null")
    _ratio(cfg, "trainer.val_ratio")
    ar = _num(cfg, "dataset.anomaly_ratio")
    if ar is not None and not (isinstance(ar, (int, float)) and 0.0 < float(ar) < 100.0):
        raise ConfigError(f"dataset.anomaly_ratio={ar}; expected a percentage in (0, 100)")
    for name in (cfg.get("protocol") or {}):
        _ratio(cfg, f"protocol.{name}.threshold.q")
        _ratio(cfg, f"protocol.{name}.alpha")
        w = _num(cfg, f"protocol.{name}.window")
        if w is not None and (not isinstance(w, int) or w < 1):
            raise ConfigError(f"protocol.{name}.window={w}; expected an integer >= 1")
    if not (cfg.get("protocol") or {}):
        raise ConfigError("protocol is empty; expected one or more of strict, madcluster, m2ad, tslib")
    check_protocols(cfg)
    if cfg.get("rescore"):  # the job's variants: refused now, not after training
        from madbench.evaluate import check_variants

        check_variants(cfg, [str(o) for o in cfg.rescore])
    _ratio(cfg, "scoring.alpha")
    from madbench.fit import PRECISIONS, resolve_device

    resolve_device(_num(cfg, "trainer.device") or "auto")
    prec = str(_num(cfg, "trainer.precision"))
    if prec not in PRECISIONS:
        raise ConfigError(f"trainer.precision={prec}; expected one of {list(PRECISIONS)}")
    check_compatible(cfg)


def check_protocols(cfg: DictConfig) -> None:
    """Build every configured protocol once, so an unknown key or a bad value (e.g.
    ``protocol.m2ad.grouping``, a negative ``protocol.m2ad.bridge``) is refused before
    training, not after it."""
    from madbench import protocols as P

    for name, pcfg in (cfg.get("protocol") or {}).items():
        P.build(str(name), OmegaConf.to_container(pcfg, resolve=True) if pcfg is not None else {})


def check_compatible(cfg: DictConfig) -> None:
    """Refuse combinations that cannot work, with a one-line reason."""
    provides = list(cfg.backbone.get("provides") or [])
    requires = cfg.objective.get("requires")
    if requires and requires not in provides:
        raise ConfigError(
            f"objective={cfg.objective.name} needs a backbone that gives '{requires}', but backbone={cfg.backbone.name} "
            f"gives {provides}")
    if cfg.scoring.get("needs_residuals") and not cfg.objective.get("residuals"):
        raise ConfigError(
            f"scoring={cfg.scoring.name} needs per-sensor residuals, which objective={cfg.objective.name} does not give; "
            "use scoring=raw or a forecast/reconstruct objective")
    head = cfg.get("head") or {}
    if head.get("name", "none") != "none" and "embedding" not in provides:
        raise ConfigError(f"head={head.name} attaches to the backbone embedding, which backbone={cfg.backbone.name} lacks")
