"""Every config group is composed and instantiated; bad values fail before training."""
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from madbench.config import config_hash, validate
from madbench.errors import ConfigError
from tests.conftest import CONFIGS, compose_cfg


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_default_composes_and_validates():
    cfg = compose_cfg(tiny=False)
    assert cfg.dataset.name == "synthetic" and cfg.backbone.name == "lstm" and list(cfg.protocol) == ["strict"]
    validate(cfg)


@pytest.mark.parametrize("name", options("backbone"))
def test_every_backbone_instantiates(name):
    import torch

    cfg = compose_cfg([f"backbone={name}"])
    model = instantiate(cfg.backbone.model)(n_inputs=5, n_outputs=3, window=cfg.dataset.window)
    out = model(torch.zeros(2, cfg.dataset.window, 5))
    assert out.embedding.shape[:2] == (2, cfg.dataset.window)
    for field in cfg.backbone.provides:
        assert getattr(out, field) is not None, f"{name} claims {field}"


@pytest.mark.parametrize("name", options("objective"))
def test_every_objective_instantiates(name):
    cfg = compose_cfg([f"objective={name}"])
    obj = instantiate({"_target_": cfg.objective._target_})
    assert obj.requires == cfg.objective.requires
    assert obj.has_residuals == cfg.objective.residuals


@pytest.mark.parametrize("name", options("scoring"))
def test_every_scoring_instantiates(name):
    cfg = compose_cfg([f"scoring={name}"])
    scorer = instantiate({k: v for k, v in cfg.scoring.items() if k not in ("name", "needs_residuals")})
    assert hasattr(scorer, "fit") and hasattr(scorer, "transform")


@pytest.mark.parametrize("name", options("protocol"))
def test_every_protocol_builds(name):
    from madbench import protocols as P

    cfg = compose_cfg([f"protocol={name}"])
    proto = P.build(name, OmegaConf.to_container(cfg.protocol[name], resolve=True))
    assert proto.name == name


@pytest.mark.parametrize("group", ["trainer", "head", "logger", "paths", "hydra"])
def test_other_groups_compose(group):
    for opt in options(group):
        cfg = compose_cfg([f"{group}={opt}"] if group not in ("hydra",) else [])
        assert cfg is not None
    cfg = compose_cfg()
    trainer = instantiate(cfg.trainer)
    assert trainer.epochs == 2


def test_all_protocols_and_loggers_compose_together():
    cfg = compose_cfg(["protocol=[strict,madcluster,m2ad,tslib]", "logger=[csv,wandb]"])
    assert list(cfg.protocol) == ["strict", "madcluster", "m2ad", "tslib"]
    assert set(cfg.logger) == {"csv", "wandb"}


def test_unknown_choice_lists_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as e:
        compose_cfg(["backbone=nope"])
    assert "lstm_ae" in str(e.value)


@pytest.mark.parametrize("override,field", [
    ("dataset.window=1", "dataset.window"),
    ("dataset.stride=500", "dataset.stride"),
    ("trainer.epochs=-1", "trainer.epochs"),
    ("trainer.val_ratio=1.5", "trainer.val_ratio"),
    ("trainer.val_ratio=0", "trainer.val_ratio"),
    ("protocol.strict.threshold.q=1.2", "protocol.strict.threshold.q"),
    ("trainer.device=tpu", "trainer.device"),
    ("trainer.precision=fp8", "trainer.precision"),
    ("dataset.anomaly_ratio=150", "dataset.anomaly_ratio"),
    ("trainer.batch_size=0", "trainer.batch_size"),
])
def test_bad_values_fail_with_the_field_named(override, field):
    cfg = compose_cfg([override])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg and "expected" in msg


def test_incompatible_backbone_and_objective_refused():
    cfg = compose_cfg(["backbone=lstm_ae", "objective=forecast"])
    with pytest.raises(ConfigError, match="objective=forecast needs a backbone that gives 'forecast'"):
        validate(cfg)


def test_config_hash_ignores_paths_and_logger_but_not_choices():
    a = compose_cfg()
    b = compose_cfg(["paths.output_dir=/elsewhere", "logger=[csv,wandb]", "trainer.progress=true"])
    c = compose_cfg(["seed=1"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 12


@pytest.mark.parametrize("override,msg", [
    ("protocol.m2ad.grouping=backward", "protocol.m2ad.grouping=backward; expected one of padding, forward, none"),
    ("protocol.m2ad.bridge=-1", "protocol.m2ad.bridge=-1; expected an integer >= 0"),
    ("+protocol.m2ad.gruping=forward", "protocol.m2ad.gruping: unknown key; expected one of"),
    ('rescore=["protocol.m2ad.grouping=forward,backward"]', "protocol.m2ad.grouping=backward"),
    ('rescore=["protocol.m2ad.gruping=forward"]', "protocol.m2ad.gruping: unknown key"),
])
def test_protocol_parameters_are_checked_at_compose_time(override, msg):
    """Before any data is read: the job's own protocols and every variant of its rescore list."""
    cfg = compose_cfg(["scoring=m2ad", "protocol=[m2ad]", override])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)
    validate(compose_cfg(["scoring=m2ad", "protocol=[m2ad]", "protocol.m2ad.grouping=forward",
                          "protocol.m2ad.bridge=0", 'rescore=["protocol.m2ad.grouping=none"]']))
