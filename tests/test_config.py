"""Every config group is composed and instantiated; bad values fail before training."""
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from madbench.checks import validate
from madbench.config import config_hash
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
    if cfg.backbone.get("baseline"):
        model.fit(torch.rand(50, 5))  # a baseline's statistics (on_fit_start in a job)
    out = model(torch.zeros(2, cfg.dataset.window, 5))
    if "embedding" in cfg.backbone.provides:
        assert out.embedding.shape[:2] == (2, cfg.dataset.window)
    else:  # only the trivial baselines give none (a head on them is refused)
        assert cfg.backbone.baseline and out.embedding is None
    for field in cfg.backbone.provides:
        assert getattr(out, field, None) is not None or field in out.extras, f"{name} claims {field}"
    # its natural objective comes with it, and fits it
    assert cfg.objective.name == cfg.backbone.objectives[0]
    validate(cfg)


@pytest.mark.parametrize("name", options("objective"))
def test_every_objective_instantiates_from_its_whole_node(name):
    from madbench.objectives.base import Objective
    from madbench.run import build_objective

    cfg = compose_cfg([f"objective={name}"])
    obj = build_objective(cfg)
    assert isinstance(obj, Objective) and isinstance(obj.requires, tuple)
    # every parameter in the YAML reaches the objective
    for key, value in cfg.objective.items():
        if key not in ("name", "_target_"):
            assert getattr(obj, key) == value, key


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
    # scoring, protocol and logger parameters are refused at compose time too, never after training
    ("scoring=m2ad scoring.calibration=gama", "scoring.calibration"),
    ("scoring=m2ad scoring.n_components=0", "scoring.n_components"),
    ("scoring=m2ad scoring.alpha=2", "scoring.alpha"),
    ("scoring=m2ad +scoring.com=-1", "scoring.com"),   # com = 0 (no smoothing) is allowed
    ("scoring=m2ad +scoring.dx=0", "scoring.dx"),
    ("protocol.strict.threshold.method=foo", "protocol.strict.threshold.method"),
    ("protocol=[tslib] protocol.tslib.range_window=abc", "protocol.tslib.range_window"),
    ("protocol=[m2ad] +protocol.m2ad.calibration=pot", "protocol.m2ad.calibration"),
    ("scoring.calibration=gamma", "scoring.calibration"),
    ("logger=[csv,wandb] logger.wandb.mode=offlne", "logger.wandb.mode"),
    ("trainer.num_threads=0", "trainer.num_threads"),
])
def test_bad_values_fail_with_the_field_named(override, field):
    cfg = compose_cfg(override.split())
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg and "expected" in msg


def test_incompatible_backbone_and_objective_refused_naming_the_objective_to_use():
    cfg = compose_cfg(["backbone=lstm_ae", "objective=forecast"])
    with pytest.raises(ConfigError, match="objective=forecast needs a backbone that gives 'forecast'.*"
                                          "use objective=reconstruct$"):
        validate(cfg)
    with pytest.raises(ConfigError, match="use objective=one_class or soft_boundary$"):
        validate(compose_cfg(["backbone=deepsvdd", "objective=forecast"]))


@pytest.mark.parametrize("backbone,objective", [("lstm", "forecast"), ("lstm_ae", "reconstruct"),
                                                ("deepsvdd", "one_class")])
def test_a_backbone_brings_its_natural_objective_and_the_command_line_overrides_it(backbone, objective):
    assert compose_cfg([f"backbone={backbone}"]).objective.name == objective
    assert compose_cfg([f"backbone={backbone}", "objective=soft_boundary"]).objective.name == "soft_boundary"
    # an experiment that names both keeps its own choice
    assert compose_cfg([f"backbone={backbone}", "experiment=m2ad_table2"]).objective.name == "forecast"


def test_config_hash_ignores_paths_and_logger_but_not_choices():
    a = compose_cfg()
    b = compose_cfg(["paths.output_dir=/elsewhere", "logger=[csv,wandb]", "trainer.progress=true"])
    c = compose_cfg(["seed=1"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 12


def test_config_hash_keeps_the_device_type_a_job_trained_on(monkeypatch):
    """Determinism is on only on CPU (run.seed_everything), so a CPU and a CUDA result are not the
    same result: the job records the device type it trains on, and the hash keeps it. Which CUDA
    device, and whether it was asked for as `auto`, does not change the hash."""
    import copy

    import torch

    from madbench import run

    base = compose_cfg()

    def recorded(device):
        cfg = copy.deepcopy(base)
        cfg.trainer.device = device
        run.record_device_type(cfg)
        return cfg

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu, auto_cpu = recorded("cpu"), recorded("auto")
    assert cpu.device_type == auto_cpu.device_type == "cpu" and config_hash(cpu) == config_hash(auto_cpu)
    # an unusable device is left to validate(), which fails the job with its failed rows
    assert "device_type" not in recorded("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    auto_gpu, gpu1 = recorded("auto"), recorded("cuda:1")
    assert auto_gpu.device_type == gpu1.device_type == "cuda" and config_hash(auto_gpu) == config_hash(gpu1)
    assert config_hash(auto_gpu) != config_hash(cpu)
    # a config without it (composed, never run) hashes as before: device is ignored
    other = copy.deepcopy(base)
    other.trainer.device = "cpu"
    assert "device_type" not in base and config_hash(other) == config_hash(base)


@pytest.mark.parametrize("override, message", [
    ("+protocol.strict.alhpa=0.1", "protocol.strict.alhpa: unknown key; expected one of range_window, threshold"),
    ("+protocol.strict.threshold.quantile=0.9", "protocol.strict.threshold.quantile: unknown key"),
    ("+scoring.two_sided=true", "scoring.two_sided: unknown key; expected one of calibration, alpha, pot_level"),
])
def test_unknown_scoring_and_protocol_keys_are_refused_naming_them(override, message):
    """A key a protocol or scorer does not take would be ignored (or change the config_hash
    and nothing else): refused at compose time with the key named."""
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([override]))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("override,msg", [
    ("protocol.m2ad.grouping=backward", "protocol.m2ad.grouping='backward'; expected one of padding, forward, none"),
    ("protocol.m2ad.bridge=-1", "protocol.m2ad.bridge=-1; expected an integer >= 0"),
    ("+protocol.m2ad.gruping=forward", "protocol.m2ad.gruping: unknown key; expected one of"),
    ('rescore=["protocol.m2ad.grouping=forward,backward"]', "protocol.m2ad.grouping='backward'"),
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


def _sweep_params(experiment: str) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


def test_madcluster_t1_sweeps_k_1_to_10_on_dcdetector_over_the_four_datasets():
    params = _sweep_params("madcluster_t1")
    assert params["head.k"] == [str(k) for k in range(1, 11)] and params["dataset"] == ["msl", "smap", "smd", "psm"]
    for k in (1, 4):
        cfg = compose_cfg(["experiment=madcluster_t1", f"head.k={k}"], tiny=False)
        validate(cfg)
        assert (cfg.backbone.name, cfg.objective.name, cfg.head.name, cfg.head.k) == ("dcdetector", "contrastive",
                                                                                      "madcluster", k)
        assert list(cfg.protocol) == ["madcluster", "strict"] and cfg.name == f"madcluster_t1-msl-dcdetector-k{k}"
        assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.dataset.window) == (30, 128, 100)
    # the other reading of the appendix (its k = 1 row is Table 3's DeepSVDD-based one): the backbone brings its objective
    assert compose_cfg(["experiment=madcluster_t1", "backbone=deepsvdd"], tiny=False).objective.name == "one_class"


def test_grid_asks_for_the_m2ad_arm_exactly_where_the_objective_has_residuals():
    """The grid reads each objective's has_residuals from its class (mb.if_residuals): no
    table restates it, so a new objective needs no edit of the experiment."""
    from hydra.utils import get_class

    assert "grid_rescore" not in OmegaConf.load(CONFIGS / "experiment" / "grid.yaml")
    for name in options("objective"):
        target = OmegaConf.load(CONFIGS / "objective" / f"{name}.yaml")._target_
        has = get_class(target).has_residuals
        cfg = compose_cfg(["experiment=grid", f"objective={name}"], tiny=False)
        assert list(cfg.rescore) == (["scoring=m2ad"] if has else []), name
    params = _sweep_params("grid")
    # every trained backbone; the baselines have no embedding for the head, and run on their own
    trained = [b for b in options("backbone") if not OmegaConf.load(CONFIGS / "backbone" / f"{b}.yaml").get("baseline")]
    assert sorted(params["backbone"]) == trained and params["head"] == ["none", "madcluster"]
    for backbone, rescore in (("lstm", ["scoring=m2ad"]), ("dcdetector", []), ("thoc", [])):
        cfg = compose_cfg(["experiment=grid", f"backbone={backbone}", "head=madcluster"], tiny=False)
        validate(cfg)  # the rescore list is checked here too: nothing the sweep runs is refused
        assert list(cfg.rescore) == rescore and cfg.scoring.name == "raw"
        assert list(cfg.protocol) == ["strict", "madcluster", "m2ad", "tslib"]


# -- no key survives composition that nothing reads (issue 28) --------------------------------
@pytest.mark.parametrize("override, message", [
    # Hydra's own hint for the typo `bakbone=lstm` is "+bakbone=lstm", which ran the default backbone
    ("+bakbone=lstm", "bakbone: unknown key, nothing reads it; did you mean backbone=lstm? top-level keys: arm, "),
    # a TypeError from Trainer.__init__ after the data was read, before
    ("+trainer.epoch=1", "trainer.epoch: unknown key; expected one of epochs, batch_size, "),
    ("+trainer.optimizer.lrr=0.1", "trainer.optimizer.lrr: unknown key; expected one of lr, betas, "),
    # a backbone's own keys; the sizes the runner gives (n_inputs, n_outputs, window) are not offered
    ("+backbone.model.hiden=8", "backbone.model.hiden: unknown key; expected one of horizon, hidden, layers, dropout "
                                "(did you mean hidden?)"),
    ("+dataset.windw=50", "dataset.windw: unknown key, nothing reads it; did you mean window? dataset keys: "),
    ("+dataset.loader.n_system=3", "dataset.loader.n_system: unknown key; expected one of n_systems, "),
    ("+objective.alpha=1", "objective.alpha: unknown key; expected one of (none)"),  # forecast takes none
    ("+logger.csv.plot=false", "logger.csv.plot: unknown key, nothing reads it; did you mean plots? logger.csv keys: "
                               "plots"),
])
def test_a_key_nothing_reads_is_refused_in_the_users_words(override, message):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([override]))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_keys_a_config_file_sets_or_reads_are_known():
    """What the shipped configs set, what an interpolation reads (`backbone.recipe.lr`), the
    keys madbench.keys declares and a job's own `device_type` are all accepted."""
    from madbench.checks import check_known_keys
    from madbench.config import declared_keys

    declared = declared_keys()
    # set by an experiment (a _global_ package), placed by a defaults entry (sizes@backbone.model),
    # read by an interpolation only (no backbone sets grad_clip in its recipe)
    assert {"dataset.forecast_gap", "pipeline_name", "backbone.model.hidden",
            "backbone.recipe.grad_clip", "logger.csv.plots"} <= declared
    assert not any(k.startswith("hydra.") or k.endswith(".defaults") or k == "defaults" for k in declared)
    cfg = compose_cfg(["+dataset.forecast_gap=1", "+backbone.recipe.grad_clip=1.0", "+tags=[a]"])
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.device_type = "cpu"
    check_known_keys(cfg)


@pytest.mark.parametrize("group", ["backbone", "experiment", "pipeline", "arm", "dataset", "head", "scoring",
                                   "objective"])
def test_every_shipped_option_has_only_known_keys(group):
    from madbench.checks import check_known_keys

    for opt in options(group):
        check_known_keys(compose_cfg([f"{group}={opt}"]))
    check_known_keys(compose_cfg(["hparams_search=optuna"]))
