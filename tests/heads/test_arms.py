"""The appendix Table 3 arms (configs/arm/): each is defined by what it trains and what it
scores, and on tiny data they really differ in both."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

import madbench
from madbench.checks import validate
from madbench.errors import ConfigError
from madbench.run import load_entities
from tests.conftest import CONFIGS, compose_cfg

ARMS = ("deepsvdd", "clustering", "madcluster")


def fit_arm(arm: str, *extra):
    cfg = compose_cfg(["backbone=deepsvdd", f"arm={arm}", "dataset.n_systems=1", "trainer.epochs=2",
                       "trainer.patience=null", *extra])
    (entity,) = load_entities(cfg)
    # the same config and seed without an epoch: the model as it was before training
    (before,) = madbench.Detector(config=cfg, trainer={"epochs": 0}).fit(entity).models_
    det = madbench.Detector.from_config(cfg).fit(entity)
    (model,) = det.models_
    moved = any(not torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.backbone.state_dict().items())
    return cfg, model, det.history_, det.score(entity).series, moved


@pytest.fixture(scope="module")
def arms():
    return {arm: fit_arm(arm) for arm in ARMS}


def test_each_arm_trains_exactly_its_loss_terms(arms):
    logged = {arm: {k for k in hist[0] if k.startswith("train_")} for arm, (_, _, hist, _, _) in arms.items()}
    # Deep SVDD: the one-class objective alone (no head, so no parts)
    assert logged["deepsvdd"] == {"train_loss"}
    # Clustering: the head's cluster loss alone; the objective contributes exactly nothing
    assert logged["clustering"] == {"train_loss", "train_objective_loss", "train_clustering_only_cluster"}
    assert all(h["train_objective_loss"] == 0.0 for h in arms["clustering"][2])
    # MADCluster: the one-class objective, the head's distance mapping and its cluster loss
    assert logged["madcluster"] == {"train_loss", "train_objective_loss", "train_madcluster_map",
                                    "train_madcluster_cluster"}
    assert all(h["train_objective_loss"] > 0 for h in arms["madcluster"][2])
    # every arm trains its base embedder, the clustering arm through the head's loss alone
    assert all(moved for (*_, moved) in arms.values())
    assert arms["madcluster"][1].heads[0].mapping == "one-class" and arms["clustering"][1].heads[0].mapping == "none"


def test_each_arm_scores_by_its_own_score(arms):
    dsvdd, clus, mc = (arms[a][3] for a in ARMS)
    # Deep SVDD: the distance to the fixed centre, nothing else
    assert dsvdd.score_mode == "backbone" and set(dsvdd.components) == {"backbone"}
    # Clustering: f, and no distance part at all (no mapping); its objective's score is constant
    assert clus.score_mode == "head" and set(clus.components) == {"backbone", "head", "product", "f"}
    np.testing.assert_array_equal(clus.window, clus.window_components["f"])
    assert np.all(clus.window_components["backbone"] == 1.0)
    # MADCluster: the reference's product, the backbone's distance × f per window
    assert mc.score_mode == "product" and set(mc.components) == {"backbone", "head", "product", "d", "f", "df"}
    np.testing.assert_allclose(mc.window, mc.window_components["backbone"] * mc.window_components["f"], rtol=1e-6)
    # ... and the arms' final scores rank the test windows differently
    for a, b in ((dsvdd, clus), (dsvdd, mc), (clus, mc)):
        assert stats.spearmanr(a.window, b.window).statistic < 0.99


def test_an_arm_that_trains_nothing_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="^objective=none has no loss and head=none adds none: nothing would train "
                                          "backbone=deepsvdd") as e:
        validate(compose_cfg(["backbone=deepsvdd", "arm=clustering", "head=none"]))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="^head.mapping=none with head.clustering=false leaves the head nothing"):
        validate(compose_cfg(["backbone=deepsvdd", "arm=clustering", "head.clustering=false"]))
    with pytest.raises(ConfigError, match="^head.score='d': head=clustering_only does not give it"):
        validate(compose_cfg(["backbone=deepsvdd", "arm=clustering", "head.score=d"]))


def test_table_3_sweeps_the_arms_with_the_authors_one_class_mapping():
    sweep = OmegaConf.load(CONFIGS / "experiment" / "madcluster_t3.yaml").hydra.sweeper.params
    assert sorted(str(sweep.arm).split(",")) == sorted(ARMS)
    for arm, objective, head, score in (("deepsvdd", "one_class", "none", "backbone"),
                                        ("clustering", "none", "clustering_only", "head"),
                                        ("madcluster", "one_class", "madcluster", "product")):
        cfg = compose_cfg(["experiment=madcluster_t3", f"arm={arm}"], tiny=False)
        validate(cfg)
        assert (cfg.backbone.name, cfg.objective.name, cfg.head.name, cfg.head.score, cfg.arm) == (
            "deepsvdd", objective, head, score, arm)
        if head != "none":
            assert cfg.head.mapping == ("none" if arm == "clustering" else "one-class")
        assert cfg.dataset.stride == 1 and cfg.trainer.epochs == 30 and cfg.trainer.patience == 5
    # Table 2's head=madcluster is unchanged (soft-boundary, scored as the product)
    t2 = compose_cfg(["experiment=madcluster_t2", "backbone=deepsvdd"], tiny=False)
    assert (t2.head.mapping, t2.head.score, t2.objective.name) == ("soft-boundary", "product", "one_class")
