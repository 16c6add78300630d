"""The config leaf: the ``config_hash`` that identifies a job across re-runs, the key check
every ``_target_`` node gets, and building objects from config nodes.

Nothing here imports another stage of madbench: the checks of a whole composed config,
which need every stage, are in ``madbench.checks``.
"""
from __future__ import annotations

import functools
import inspect
import re
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


def check_keys(target, params: dict, prefix: str, partial: bool = False) -> None:
    """Refuse a key that ``target`` (a class or function) does not take, naming it: a typo
    (``protocol.m2ad.alhpa``) would otherwise be ignored or silently become a new config.
    Hydra's own keys (``_target_``, ``_partial_``, ...) are not parameters. ``partial``: the
    node is a ``_partial_`` whose caller gives the parameters without a default (a
    backbone's ``n_inputs``): the config may not set them, and the message does not offer
    them."""
    params_ = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params_):
        return
    allowed = [p.name for p in params_ if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
               and not (partial and p.default is p.empty)]
    unknown = [k for k in params if not str(k).startswith("_") and k not in allowed]
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; expected one of {', '.join(allowed) or '(none)'}"
                          f"{did_you_mean(unknown[0], allowed)}")


def close_match(key, known) -> str | None:
    """The known key a typo most likely meant, if one is close."""
    import difflib

    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.75)
    return close[0] if close else None


def did_you_mean(key, known) -> str:
    close = close_match(key, known)
    return f" (did you mean {close}?)" if close else ""


#: an interpolation's key: ``${dataset.window}``, ``${oc.select:backbone.recipe.lr,1e-3}``
_READ = re.compile(r"\$\{(?:oc\.select:)?([A-Za-z_][\w.]*)")
#: a defaults-list entry that places a group elsewhere: ``optional per_dataset@backbone``
_PLACED = re.compile(r"^(?:optional\s+|override\s+)*/?([\w/]+)@([\w.]+)")
_HEADER = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


def _package(header: str | None, group: str) -> str:
    """The dotted node a group file's keys land in (Hydra's ``@package`` rules)."""
    if header is None:
        return group.replace("/", ".")
    for alias, to in (("_global_", ""), ("_group_", group.replace("/", "."))):
        if header == alias or header.startswith(alias + "."):
            rest = header[len(alias):].lstrip(".")
            return ".".join(p for p in (to, rest) if p)
    return header


@functools.lru_cache(maxsize=None)
def declared_keys(config_dir: Path = CONFIG_DIR) -> frozenset[str]:
    """Every dotted key that some file under ``config_dir`` sets (in the node its group's
    package puts it, ``@package`` headers and ``group@node`` defaults entries included) or
    reads through an interpolation (``${oc.select:backbone.recipe.lr,...}``), with every
    node above it. A composed config's key outside this set was added by hand (``+key``)
    and nothing reads it; ``madbench.checks`` refuses it. The ``hydra`` group is Hydra's."""
    import yaml

    files = sorted(Path(config_dir).rglob("*.yaml"))
    texts = {f: f.read_text() for f in files}
    placed = {}
    for text in texts.values():
        for entry in (yaml.safe_load(text) or {}).get("defaults") or []:
            m = _PLACED.match(next(iter(entry)) if isinstance(entry, dict) else str(entry))
            if m:
                placed[m.group(1)] = _package(m.group(2), m.group(1))
    out: set[str] = set()

    def add(path: str) -> None:
        parts = [p for p in path.split(".") if p]
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))

    def reads(value) -> None:
        if isinstance(value, str):
            for key in _READ.findall(value):
                if not key.startswith(("oc.", "now", "hydra")):
                    add(key.rstrip("."))
        elif isinstance(value, list):
            for v in value:
                reads(v)

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if not prefix and k == "hydra":  # Hydra's own config (a sweep's params, its mode)
                continue
            add(f"{prefix}{k}")
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                reads(v)

    for f, text in texts.items():
        group = "/".join(f.relative_to(config_dir).parts[:-1])
        if group.split("/")[0] == "hydra":
            continue
        header = _HEADER.search(text.split("\n\n")[0])  # Hydra reads it in the file's first comment block
        pkg = _package(header.group(1) if header else None, group) if group else ""
        if not header and group in placed:
            pkg = placed[group]
        content = yaml.safe_load(text) or {}
        content.pop("defaults", None)  # the defaults list chooses groups; it sets no key
        walk(content, f"{pkg}." if pkg else "")
    return frozenset(out)


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
