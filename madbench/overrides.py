"""Post-score overrides (``madbench-eval`` and a job's ``rescore`` list): Hydra's sweep
syntax expanded to one override list per combination, and applied to a finished run's
saved config. Only keys that change nothing before the score stage may be overridden
(``madbench.keys.rescorable``); which values are valid is ``madbench.checks``' business.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from madbench import keys
from madbench.config import CONFIG_DIR
from madbench.errors import ConfigError

#: config groups an override may select (composed from configs/)
GROUPS = ("scoring", "protocol", "logger")


def key_of(line: str) -> str:
    """The dotted key an override line sets (``+``/``~`` prefixes dropped)."""
    return line.split("=", 1)[0].lstrip("+~")


def under(line: str, group: str) -> bool:
    """Whether the override ``line`` sets ``group`` or a key inside it."""
    return keys.covers(key_of(line), group)


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


def check_rescorable(overrides: list[str]) -> None:
    """Refuse an override of a ``training`` key (``madbench.keys``): it would need training."""
    for line in overrides:
        key = key_of(line)
        if not keys.rescorable(key):
            allowed = ", ".join(keys.POST_SCORE + keys.LABEL + ("logger",))
            what = "changes what is trained" if keys.role(key) == "training" else "means nothing to a re-scoring"
            raise ConfigError(f"{key}: {what}; re-scoring may change only {allowed} (run madbench again for the rest)")


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """A run's saved config with post-score overrides applied (groups composed from
    configs/, dotted keys set); anything that would change training is refused."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    check_rescorable(overrides)
    groups = [o for o in overrides if key_of(o) in GROUPS]
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
        for g in {key_of(o) for o in groups}:
            cfg[g] = OmegaConf.create(OmegaConf.to_container(composed[g], resolve=False))
    for o in OverridesParser.create().parse_overrides([o for o in overrides if key_of(o) not in GROUPS]):
        if o.is_delete():
            raise ConfigError(f"~{o.key_or_group}: deleting keys is not supported when re-scoring")
        if not o.is_add():
            _check_exists(cfg, o.key_or_group)
        with open_dict(cfg):
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
    return cfg


def _check_exists(cfg: DictConfig, key: str) -> None:
    """Refuse a key the config does not have, naming it and what its parent has (the main
    app's "Key 'foo' is not in struct"): an unknown key would otherwise be stored, change
    the config_hash and compute nothing new."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            where = ".".join(parts[:i]) or "the config"
            have = sorted(str(k) for k in node.keys() if not str(k).startswith("_")) if isinstance(node, DictConfig) \
                else []
            hint = f"; {where} has {', '.join(have)}" if have else ""
            raise ConfigError(f"{key}: unknown key (not in the run's config){hint}; a new key needs +{key}=...")
        node = node._get_node(part) if i < len(parts) - 1 else None
