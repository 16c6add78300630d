"""The config leaf: the ``config_hash`` that identifies a job across re-runs, the key check
every ``_target_`` node gets, and building objects from config nodes.

Nothing here imports another stage of madbench: the checks of a whole composed config,
which need every stage, are in ``madbench.checks``.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from madbench import keys
from madbench.errors import ConfigError, MadbenchError

#: configs/ sits beside the package (editable installs and source checkouts)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _if_residuals(objective_target: str, variants):
    """``${mb.if_residuals:${objective._target_},[...]}``: ``variants`` when that objective
    gives per-sensor residuals (its class's ``has_residuals``), else none. A config reads the
    fact from the code instead of restating it per objective (experiment=grid's re-scoring)."""
    from hydra.utils import get_class

    try:
        has = get_class(str(objective_target)).has_residuals
    except Exception as e:
        raise ConfigError(f"objective._target_={objective_target!r}: cannot import it ({e})") from None
    return list(variants) if has else []


OmegaConf.register_new_resolver("mb.if_residuals", _if_residuals, replace=True)


def config_hash(cfg: DictConfig) -> str:
    """sha1 of the resolved config's ``training`` and ``post_score`` keys
    (``madbench.keys``): labels and runtime settings never change it; ``device_type``,
    when the job recorded it, is part of it."""
    return keys.digest(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


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


def build(node, what: str, prefix: str | None = None, **kwargs):
    """hydra.utils.instantiate, with the loader's or constructor's own one-line error
    instead of Hydra's wrapped traceback. ``name`` and other plain metadata keys of a
    group's node are dropped by the caller. With ``prefix`` (the node's config path, e.g.
    ``scoring``), a key the target does not take is refused as ``<prefix>.<key>``."""
    from hydra.errors import InstantiationException
    from hydra.utils import get_object, instantiate

    if prefix is not None and "_target_" in node:
        try:
            target = get_object(str(node["_target_"]))
        except Exception as e:
            raise ConfigError(f"{prefix}._target_={node['_target_']!r}: cannot import it ({e})") from None
        check_keys(target, {k: v for k, v in dict(node).items() if k not in kwargs}, prefix)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, MadbenchError):
            raise cause from None
        raise ConfigError(f"{what}: {cause or e}") from None


def node_without(node, *keys_) -> dict:
    """A config node as a container, minus metadata keys (``name``, ...), for instantiate."""
    c = OmegaConf.to_container(node, resolve=True) if not isinstance(node, dict) else dict(node)
    return {k: v for k, v in c.items() if k not in keys_}
