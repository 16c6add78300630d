"""Every backbone × objective × head that composes is fitted for one epoch on tiny data
(ARCHITECTURE.md): the loss is finite, every head parameter receives a gradient, the
Detector's state_dict round-trips into a freshly built one (same scores), and the scores
are aligned to the labels. Combinations that do not compose are refused at compose time
with one line."""
import functools
import itertools

import numpy as np
import pytest
import torch
from hydra.utils import get_class
from torch.utils._pytree import tree_leaves
from omegaconf import OmegaConf

import madbench
from madbench.checks import validate
from madbench.data.entity import Entity
from madbench.detector import FitContext
from madbench.errors import ConfigError
from madbench.run import load_entities
from tests.conftest import CONFIGS, compose_cfg


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@functools.cache   # read-only here; called about 400 times at collection
def _backbone(name):
    return OmegaConf.load(CONFIGS / "backbone" / f"{name}.yaml")


@functools.cache
def _objective(name):
    return get_class(OmegaConf.load(CONFIGS / "objective" / f"{name}.yaml")._target_)


def fits(backbone: str, objective: str) -> bool:
    """The compose-time rule, read straight from the YAML files (cheap, for collection):
    the objective's ``requires`` are all in the backbone's ``provides``."""
    return set(_objective(objective).requires) <= set(_backbone(backbone).provides)


def trains(backbone: str, objective: str, head: str) -> bool:
    """Something trains it: the objective's loss, a head's, or (a baseline) nothing is
    needed. A head needs the backbone's embedding."""
    if head != "none" and "embedding" not in _backbone(backbone).provides:
        return False
    return _objective(objective).has_loss or head != "none" or bool(_backbone(backbone).get("baseline"))


PAIRS = [(b, o) for b, o in itertools.product(options("backbone"), options("objective")) if fits(b, o)]
FITTED = [(b, o, h) for (b, o), h in itertools.product(PAIRS, options("head")) if trains(b, o, h)]


def compose(backbone, objective, head):
    return compose_cfg([f"backbone={backbone}", f"objective={objective}", f"head={head}", "dataset.n_systems=1",
                        "trainer.epochs=1", "trainer.batch_size=32"])


def composes(backbone, objective, head, make=compose) -> bool:
    try:
        validate(make(backbone, objective, head))
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        return False
    return True


def spliced(backbone, objective, head):
    """``compose(backbone, objective, head)`` without a Hydra composition per pair: the
    backbone composed with its natural objective, its ``objective`` node replaced by the
    objective's (an objective YAML has no defaults list and no package: its node is the
    file's content whatever the backbone; checked against Hydra below)."""
    cfg = compose(backbone, _backbone(backbone).objectives[0], head)
    cfg.objective = compose("lstm", objective, "none").objective
    return cfg


def test_splicing_an_objective_in_is_what_hydra_composes():
    """The premise of :func:`spliced`, for every objective, each with a backbone other than the
    one its node was taken from (LSTM), with and without a head: the whole config equals
    Hydra's composition."""
    for objective in options("objective"):
        for backbone, head in (("deepsvdd", "madcluster"), ("usad", "none")):
            want = OmegaConf.to_container(compose(backbone, objective, head))
            assert OmegaConf.to_container(spliced(backbone, objective, head)) == want, (backbone, objective, head)


def test_validate_agrees_with_the_rule_and_every_natural_objective_fits():
    for backbone, objective in itertools.product(options("backbone"), options("objective")):
        expected = fits(backbone, objective) and trains(backbone, objective, "none")
        assert composes(backbone, objective, "none", make=spliced) == expected, (backbone, objective)
    for backbone in options("backbone"):
        natural = _backbone(backbone).objectives
        assert natural and all(fits(backbone, o) and trains(backbone, o, "none") for o in natural), backbone


@pytest.mark.parametrize("head", options("head"))
def test_every_head_composes_with_every_backbone_that_has_an_embedding(head):
    for backbone in options("backbone"):
        natural = _backbone(backbone).objectives[0]
        if "embedding" in _backbone(backbone).provides or head == "none":
            assert composes(backbone, natural, head), backbone
        else:  # the trivial baselines: a head would make them trained detectors
            assert _backbone(backbone).baseline
            with pytest.raises(ConfigError, match=f"^head={head} attaches to a per-step embedding .* backbone="
                                                  f"{backbone} does not give"):
                validate(compose(backbone, natural, head))


def test_an_objective_without_loss_and_no_head_is_refused_naming_the_objective():
    for backbone in ("lstm", "deepsvdd", "dcdetector"):
        with pytest.raises(ConfigError, match=f"^objective=none has no loss and head=none adds none: nothing would "
                                              f"train backbone={backbone}; add a head"):
            validate(compose(backbone, "none", "none"))


@pytest.mark.parametrize("backbone,objective,head", FITTED, ids=["-".join(c) for c in FITTED])
def test_fit_one_epoch(backbone, objective, head, monkeypatch, tmp_path):
    cfg = spliced(backbone, objective, head)   # Hydra's composition (above), without one per combination
    (entity,) = load_entities(cfg)

    graded: set[int] = set()
    step = FitContext.step

    def recording_step(self, *names):
        graded.update(id(p) for p in self.detector.parameters() if p.grad is not None)
        return step(self, *names)

    monkeypatch.setattr(FitContext, "step", recording_step)
    fitted = madbench.Detector.from_config(cfg).fit(entity)
    (det,) = fitted.models_
    hist = fitted.history_
    if _backbone(backbone).get("baseline"):  # fitted in on_fit_start: nothing left to train, no epoch
        assert hist == [] and not det.trains_by_gradient
    else:
        assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"]) and np.isfinite(hist[0]["val_loss"])
    for name, p in det.heads.named_parameters():
        if p.requires_grad:
            assert id(p) in graded, f"head parameter {name} received no gradient"

    scores = fitted.score(entity).series
    assert scores.step.shape == entity.labels.shape
    first = cfg.dataset.window if det.objective.horizon else 0  # a forecast leaves the first window unscored
    assert np.isnan(scores.step[:first]).all() and np.isfinite(scores.step[first:]).all()
    assert (scores.residuals is not None) == det.objective.has_residuals
    assert (scores.factor is not None) == (head != "none")

    # the state_dict round-trips into a freshly built Detector (model.pt, loaded without training)
    again = madbench.Detector.load(fitted.save(tmp_path / "saved")).score(entity).series
    np.testing.assert_array_equal(again.step, scores.step)


#: the column count of each on-disk dataset's files (the loaders check them: madbench/data/)
COLUMNS = {"msl": 55, "smap": 25, "smd": 38, "psm": 25, "msl_merged": 55, "smap_merged": 25, "smd_merged": 38}


def dataset_shape(cfg) -> tuple[int, int] | None:
    """(input columns, sensors) of a shipped dataset: synthetic from its generator's sizes,
    NASA by ``dataset.sensors`` (first: one sensor, the rest covariates), every other layout
    with every column a sensor. None where the data decides (multisystem)."""
    d = cfg.dataset
    if d.name == "synthetic":
        return d.n_sensors + d.n_covariates, d.n_sensors
    if d.name not in COLUMNS:
        return None
    return COLUMNS[d.name], 1 if d.get("sensors") == "first" else COLUMNS[d.name]


SHAPED = [name for name in options("dataset") if name != "multisystem"]


@pytest.mark.slow  # paper-size models (USAD at window 100 on MSL: 57M parameters)
@pytest.mark.parametrize("backbone", options("backbone"))
def test_every_backbone_runs_at_its_defaults_on_every_shipped_dataset_shape(backbone):
    """Each backbone alone, at its own default sizes (its per-dataset sizes where it has
    them), with each shipped dataset's window and column counts: the config validates, the
    Detector builds and one forward of two windows is finite. (multisystem's columns come
    from its data.)"""
    assert dataset_shape(compose_cfg(["dataset=multisystem"], tiny=False)) is None
    built = set()
    for dataset in SHAPED:
        cfg = compose_cfg([f"backbone={backbone}", f"dataset={dataset}"], tiny=False)
        validate(cfg)
        n_inputs, n_sensors = dataset_shape(cfg)
        model = OmegaConf.to_yaml(cfg.backbone.model, resolve=True)
        if (n_inputs, n_sensors, cfg.dataset.window, model) in built:
            continue   # the same model at the same shape as an earlier dataset (psm and smap_merged, ...)
        built.add((n_inputs, n_sensors, cfg.dataset.window, model))
        cols = [f"c{j}" for j in range(n_inputs)]
        shape = Entity(name=dataset, system=dataset, labels=np.zeros(0), test=np.zeros((0, n_inputs)),
                       train=np.random.default_rng(0).random((3 * cfg.dataset.window, n_inputs), dtype=np.float32),
                       columns=cols, sensors=cols[:n_sensors], covariates=cols[n_sensors:])
        api = madbench.Detector.from_config(cfg).prepare()
        if cfg.backbone.get("baseline"):  # a baseline's statistics come from its train rows
            det = api.fit_group([shape], f"{backbone} {dataset}").model
        else:
            det = api.new_model(shape)
        det.eval()
        with torch.no_grad():
            out = det(torch.rand(2, cfg.dataset.window, n_inputs))
        tensors = [t for t in tree_leaves([out.embedding, out.forecast, out.reconstruction, out.extras])
                   if isinstance(t, torch.Tensor) and t.is_floating_point()]
        assert tensors and all(torch.isfinite(t).all() for t in tensors), (backbone, dataset)
