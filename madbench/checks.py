"""Checks of a whole composed config, run before any data is read or model trained (a job)
or any variant is written (re-scoring). Each refusal is one ConfigError line naming the
key and what is allowed.

This module sits above the stages it asks (``fit``, ``attribution``, ``protocols``, the
scorers, the loggers) and below the entry points that call it (``run``, ``rescoring``,
``cli``); nothing below imports it. The stages that need torch (``fit``, ``detector``, ``heads``)
are imported where they are asked, so re-scoring and ``--help`` start without torch.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from madbench import attribution, keys
from madbench import protocols as P
from madbench.config import build, close_match, check_keys, declared_keys, node_without, objective_class
from madbench.errors import ConfigError
from madbench.overrides import apply_overrides, check_rescorable, expand
from madbench.scoring import build_scorer
from madbench.tracking.loggers import instantiate_loggers


def _num(cfg, path: str):
    return OmegaConf.select(cfg, path, default=None)


def _ratio(cfg, path: str) -> None:
    v = _num(cfg, path)
    if v is None:
        return
    if not isinstance(v, (int, float)) or not (0.0 < float(v) < 1.0):
        raise ConfigError(f"{path}={v}; expected a ratio in (0, 1)")


#: nodes whose keys their own builders check (``validate_after_score``): a protocol's
#: class, the scorer (which drops its group's metadata keys), and Hydra's own node
BUILT_ELSEWHERE = ("hydra", "protocol", "scoring")


def check_known_keys(cfg: DictConfig) -> None:
    """No key survives composition that nothing reads. A key is known when some config file
    sets it or an interpolation reads it (``madbench.config.declared_keys``), when
    ``madbench.keys`` declares it, or, inside a node with a ``_target_``, when the target
    takes it (``+trainer.epoch=1`` is refused naming ``trainer.epoch`` and the trainer's
    keys, not with a TypeError after the data is read). Hydra's hint for a typo, "To
    append to your config use +bakbone=lstm", would otherwise run the default backbone."""
    known = set(declared_keys())
    for k in (*keys.ROLES, *keys.RECORDED):
        parts = k.split(".")
        known.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    _check_node(OmegaConf.to_container(cfg, resolve=False), "", known)


def _check_node(node: dict, prefix: str, known: set) -> None:
    if prefix and "_target_" in node:
        _check_target(node, prefix.rstrip("."), known)
        return
    for k, v in node.items():
        path = f"{prefix}{k}"
        if path in BUILT_ELSEWHERE:
            continue
        if path not in known:
            parent = prefix.rstrip(".")
            siblings = sorted({d[len(prefix):] for d in known if d.startswith(prefix) and "." not in d[len(prefix):]}
                              - set(BUILT_ELSEWHERE[:1]))
            close = close_match(k, siblings)
            if close and isinstance(node.get(close), dict) and not isinstance(v, (dict, list)):
                close = f"{close}={v}"  # a group is chosen as group=option
            hint = f"did you mean {close}? " if close else ""
            raise ConfigError(f"{path}: unknown key, nothing reads it; {hint}"
                              f"{parent + ' keys' if parent else 'top-level keys'}: {', '.join(siblings)}")
        if isinstance(v, dict):
            _check_node(v, f"{path}.", known)


def _check_target(node: dict, path: str, known: set) -> None:
    """A ``_target_`` node's keys against what its target takes (a group's ``name`` label,
    which the builder drops, excepted), then its own ``_target_`` sub-nodes."""
    from hydra.utils import get_object

    target = str(node["_target_"])
    if "${" in target:
        return
    try:
        obj = get_object(target)
    except Exception as e:
        raise ConfigError(f"{path}._target_={target!r}: cannot import it ({e})") from None
    params = {k: v for k, v in node.items() if not (k == "name" and f"{path}.name" in known)}
    try:
        check_keys(obj, params, path, partial=bool(node.get("_partial_")))
    except (TypeError, ValueError):  # a signature inspect cannot read (a builtin)
        return
    for k, v in node.items():
        if isinstance(v, dict) and "_target_" in v:
            _check_target(v, f"{path}.{k}", known)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line: the field and what is allowed) on the first bad value."""
    check_known_keys(cfg)
    window = _num(cfg, "dataset.window")
    if not isinstance(window, int) or window <= 1:
        raise ConfigError(f"dataset.window={window}; expected an integer > 1")
    stride = _num(cfg, "dataset.stride") or 1
    if not isinstance(stride, int) or stride < 1 or stride > window:
        raise ConfigError(f"dataset.stride={stride}; expected an integer in [1, dataset.window={window}]")
    gap = _num(cfg, "dataset.forecast_gap")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, int) or gap < 0):
        raise ConfigError(f"dataset.forecast_gap={gap}; expected an integer >= 0 (1: the M2AD reference's skipped step)")
    refit = _num(cfg, "dataset.refit_scaler_on_test")
    if refit is not None and not isinstance(refit, bool):
        raise ConfigError(f"dataset.refit_scaler_on_test={refit}; expected true or false")
    epochs = _num(cfg, "trainer.epochs")
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"trainer.epochs={epochs}; expected an integer >= 0 (0: score the untrained model)")
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
    if ar is None and "tslib" in (cfg.get("protocol") or {}):  # its threshold is that percentile
        raise ConfigError("protocol=tslib needs dataset.anomaly_ratio (a percentage); dataset.anomaly_ratio=null")
    from madbench.fit import PRECISIONS, resolve_deterministic, resolve_device, resolve_num_threads

    attribution.check(cfg, objective_class(cfg).has_residuals)
    device = resolve_device(_num(cfg, "trainer.device") or "auto")
    # a config saved before the key existed lacks it: the Trainer's default, auto
    resolve_deterministic(OmegaConf.select(cfg, "trainer.deterministic", default="auto"), device)
    prec = str(_num(cfg, "trainer.precision"))
    if prec not in PRECISIONS:
        raise ConfigError(f"trainer.precision={prec}; expected one of {list(PRECISIONS)}")
    threads = _num(cfg, "trainer.num_threads")
    resolve_num_threads("auto" if threads is None else threads)
    from madbench.progress import check_every

    check_every(_num(cfg, "trainer.log_every_s"))
    check_compatible(cfg)
    validate_after_score(cfg)
    if cfg.get("rescore"):  # the job's variants: refused now, not after training
        check_variants(cfg, [str(o) for o in cfg.rescore])


def check_sizes(cfg: DictConfig, groups: list, spec, val_ratio: float) -> None:
    """The refusals that need the data's sizes and nothing trained, for every entity before
    the first model trains (an entity too short for one window, or a protocol that could
    not evaluate an entity with its validation split, used to fail after hours of
    training): ``groups`` are the job's lists of entities (one each, or one pooled list),
    ``spec`` the training windows (madbench.data.windows.WindowSpec)."""
    from madbench.data.windows import Windows
    from madbench.errors import DataError
    from madbench.scoring.scorers import RawScorer

    for group in groups:  # before windowing: a series shorter than one window has none
        for e in group:
            for split, n, need in (("train", len(e.train), spec.span + 1), ("test", len(e.test), spec.span)):
                if n < need:
                    raise DataError(f"{e.meta.get('source', e.name)}: {split} has {n} rows; expected at least {need} "
                                    f"for dataset.window={spec.window} (a shorter window, or longer series)")
    # a raw score calibrated on the validation split: the empirical p-value's floor is known
    # from the split sizes (a scorer with p-values of its own, scoring=m2ad, needs none)
    scorer = build_scorer(cfg)
    if not isinstance(scorer, RawScorer) or scorer.calibration != "empirical":
        return
    for group in groups:
        # the validation steps as the job will mark them (the last val_ratio of the training
        # windows' scored steps); CPU windows are views of the arrays, nothing is copied
        starts = Windows([e.train for e in group], spec).val_start(val_ratio)
        for e, start in zip(group, starts):
            try:
                scorer.check_validation_steps(int(len(e.train) - start))
            except ValueError as err:
                raise DataError(f"entity {e.name}: {err}") from None


def validate_after_score(cfg: DictConfig) -> None:
    """The checks of what may change without training (scoring, protocols, loggers), also
    run before re-scoring: the scorer, each protocol and each logger is built once here, so
    an unknown key or a bad value is a one-line ConfigError before anything runs, never
    after the model has trained."""
    if not (cfg.get("protocol") or {}):
        raise ConfigError(f"protocol is empty; expected one or more of {', '.join(P.REGISTRY)}")
    protocols = [P.build(str(name), OmegaConf.to_container(pcfg, resolve=True) if pcfg is not None else {})
                 for name, pcfg in cfg.protocol.items()]
    scorer = build_scorer(cfg)
    for proto in protocols:
        if proto.needs_alarms and not getattr(scorer, "gives_alarms", False):
            hint = ("set scoring.calibration=pot (or empirical)" if cfg.scoring.get("name") == "raw"
                    else "use a scorer that raises alarms")
            raise ConfigError(f"protocol={proto.name} counts the scoring stage's alarms, and scoring={cfg.scoring.name} "
                              f"with these settings raises none; {hint}, or use scoring=m2ad")
    instantiate_loggers(cfg)
    check_head_score(cfg)


def check_head_score(cfg: DictConfig) -> None:
    """``head.score`` names a part of the score the configured head gives (the head checks
    its own parts when it is built; without a head only ``backbone`` exists)."""
    head = cfg.get("head") or {}
    if head.get("name", "none") != "none":
        build(node_without(head), f"head={head.name}")
    else:
        from madbench.heads.base import check_score_mode

        check_score_mode(str(head.get("score", "backbone")), (), "none")


def check_variants(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse, before anything is written, overrides (sweep syntax) that some combination
    could not run on ``cfg``: keys that change training, keys the config does not have,
    and scoring, protocol or logger keys or values their classes refuse
    (``validate_after_score``). A job checks its ``rescore`` list with it at compose time,
    ``madbench.rescoring.rescore_all`` every run's config before the first variant."""
    check_rescorable(overrides)
    for combo in expand(overrides):
        validate_after_score(apply_overrides(cfg, combo))


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
    from madbench.detector import check_composition

    check_composition(cfg, obj)
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
        build(node_without(head), f"head={head.name}")
