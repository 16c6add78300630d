"""Checks of a composed config, done before any data is read or model trained, and the
stable ``config_hash`` that identifies a job across re-runs of a sweep."""
from __future__ import annotations

import hashlib
import inspect
import json

from omegaconf import DictConfig, OmegaConf

from madbench.errors import ConfigError

#: top-level keys that never change what a job computes
HASH_EXCLUDE = ("paths", "logger", "hydra", "skip_done", "name", "optimize_metric", "rescore", "rescored_from")
#: trainer keys that change how, not what. ``trainer.device`` as written (auto, cuda:0,
#: cuda:1) is left out; the device *type* a job trained on is kept, as the top-level
#: ``device_type`` the job records (madbench.run.record_device_type): determinism is on
#: only on CPU, so a CPU and a CUDA result are different results.
TRAINER_EXCLUDE = ("progress", "eval_batch_size", "device", "num_threads", "eval_batch_bytes", "allocator")


def config_hash(cfg: DictConfig) -> str:
    """sha1 of the resolved config minus paths, logger, launcher and progress settings
    (``device_type``, when the job recorded it, is part of it)."""
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for k in HASH_EXCLUDE:
        c.pop(k, None)
    if c.get("attribution", "auto") == "auto":
        # the default leaves the hash as it was before the key existed (resumed sweeps skip what is done)
        c.pop("attribution", None)
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
    from madbench.fit import PRECISIONS, resolve_device, resolve_num_threads
    from madbench.attribution import check as check_attribution

    check_attribution(cfg, objective_class(cfg).has_residuals)

    resolve_device(_num(cfg, "trainer.device") or "auto")
    prec = str(_num(cfg, "trainer.precision"))
    if prec not in PRECISIONS:
        raise ConfigError(f"trainer.precision={prec}; expected one of {list(PRECISIONS)}")
    threads = _num(cfg, "trainer.num_threads")
    resolve_num_threads("auto" if threads is None else threads)
    validate_after_score(cfg)
    if cfg.get("rescore"):  # the job's variants: refused now, not after training
        from madbench.rescoring import check_variants

        check_variants(cfg, [str(o) for o in cfg.rescore])
    check_compatible(cfg)


def validate_after_score(cfg: DictConfig) -> None:
    """The checks of what may change without training (scoring, protocols, loggers), also
    run before re-scoring: the scorer, each protocol and each logger is built once here, so
    an unknown key or a bad value is a one-line ConfigError before anything runs, never
    after the model has trained."""
    from madbench import protocols as P
    from madbench.results import build_scorer, instantiate_loggers

    if not (cfg.get("protocol") or {}):
        raise ConfigError(f"protocol is empty; expected one or more of {', '.join(P.REGISTRY)}")
    for name, pcfg in cfg.protocol.items():
        P.build(str(name), OmegaConf.to_container(pcfg, resolve=True) if pcfg is not None else {})
    build_scorer(cfg)
    instantiate_loggers(cfg)


def check_keys(target, params: dict, prefix: str) -> None:
    """Refuse a key that ``target`` (a class or function) does not take, naming it: a typo
    (``protocol.m2ad.alhpa``) would otherwise be ignored or silently become a new config.
    Hydra's own keys (``_target_``, ``_partial_``, ...) are not parameters."""
    params_ = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params_):
        return
    allowed = [p.name for p in params_ if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    unknown = [k for k in params if not str(k).startswith("_") and k not in allowed]
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; expected one of {', '.join(allowed) or '(none)'}")


def objective_class(cfg: DictConfig):
    """The objective's class (it declares ``requires`` and ``has_residuals``)."""
    from hydra.utils import get_class

    target = OmegaConf.select(cfg, "objective._target_", default=None)
    try:
        return get_class(target)
    except Exception as e:
        raise ConfigError(f"objective={cfg.objective.name}: cannot import {target!r} ({e})") from None


def check_compatible(cfg: DictConfig) -> None:
    """Refuse combinations that cannot work, with a one-line reason."""
    provides = list(cfg.backbone.get("provides") or [])
    natural = list(cfg.backbone.get("objectives") or [])
    obj = objective_class(cfg)
    missing = [r for r in obj.requires if r not in provides]
    if missing:
        hint = f"; use objective={' or '.join(natural)}" if natural else ""
        raise ConfigError(
            f"objective={cfg.objective.name} needs a backbone that gives '{missing[0]}', but backbone={cfg.backbone.name} "
            f"gives {provides}{hint}")
    if cfg.scoring.get("needs_residuals") and not obj.has_residuals:
        raise ConfigError(
            f"scoring={cfg.scoring.name} needs per-sensor residuals, which objective={cfg.objective.name} does not give; "
            "use scoring=raw or a forecast/reconstruct objective")
    head = cfg.get("head") or {}
    if head.get("name", "none") != "none":
        if "embedding" not in provides:
            raise ConfigError(f"head={head.name} attaches to a per-step embedding [B, L, d], which backbone="
                              f"{cfg.backbone.name} does not give (it gives {provides})")
        # the head's own parameter checks (one-line ConfigErrors naming head.<key>)
        from madbench.results import build, node_without

        build(node_without(head), f"head={head.name}")
