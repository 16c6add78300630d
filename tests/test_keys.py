"""The one declaration of config key roles (madbench.keys) and what reads it: the
config_hash, the re-scoring allow-list and the pairing of runs in paired tables."""
import pytest
from omegaconf import OmegaConf, open_dict

from madbench import keys
from madbench.config import config_hash
from madbench.errors import ConfigError
from madbench.overrides import check_rescorable
from tests.conftest import compose_cfg


@pytest.mark.parametrize("key, role", [
    ("name", "label"), ("tags", "label"), ("experiment_name", "label"),
    ("paths.data_dir", "runtime"), ("logger.wandb.mode", "runtime"), ("trainer.num_threads", "runtime"),
    ("trainer.device", "runtime"), ("trainer.eval_batch_size", "runtime"), ("rescore", "runtime"),
    ("trainer.deterministic", "runtime"),
    ("scoring.alpha", "post_score"), ("protocol.m2ad.padding", "post_score"), ("attribution", "post_score"),
    ("dataset.anomaly_ratio", "post_score"), ("head.score", "post_score"),
    ("trainer.epochs", "training"), ("dataset.window", "training"), ("head.k", "training"), ("seed", "training"),
    ("device_type", "training"), ("backbone.model.d_model", "training"),
])
def test_every_key_has_one_role_the_most_specific_declaration_wins(key, role):
    assert keys.role(key) == role


def test_keep_roles_drops_labels_and_runtime_keys_but_keeps_their_training_siblings():
    tree = {"name": "x", "trainer": {"epochs": 3, "num_threads": 2, "progress": True},
            "scoring": {"alpha": 0.1}, "paths": {"data_dir": "d"}, "seed": 1}
    assert keys.hashed(tree) == {"trainer": {"epochs": 3}, "scoring": {"alpha": 0.1}, "seed": 1}


def _with(cfg, **values):
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        for k, v in values.items():
            OmegaConf.update(cfg, k, v, force_add=True)
    return cfg


def test_the_hash_ignores_labels_and_runtime_keys_and_reads_every_other_key():
    cfg = compose_cfg([])
    h = config_hash(cfg)
    for k, v in {"name": "other", "experiment_name": "e", "tags": ["t"], "trainer.num_threads": 1,
                 "trainer.progress": False, "trainer.device": "cpu", "trainer.deterministic": False,
                 "paths.output_dir": "/x",
                 "skip_done": True, "rescore": ["scoring=m2ad"]}.items():
        assert config_hash(_with(cfg, **{k: v})) == h, k
    for k, v in {"trainer.epochs": 7, "scoring.name": "other", "protocol.strict.range_window": 7,
                 "dataset.anomaly_ratio": 3.0, "seed": 9, "device_type": "cuda"}.items():
        assert config_hash(_with(cfg, **{k: v})) != h, k


def test_rescoring_may_change_post_score_keys_labels_and_loggers_only():
    check_rescorable(["scoring.alpha=0.1", "protocol.m2ad.padding=0", "name=x", "tags=[a]", "logger=[csv]",
                      "attribution=residual", "dataset.anomaly_ratio=2", "+head.score=head"])
    for line in ("trainer.epochs=3", "dataset.window=50", "head.k=2", "seed=1"):
        with pytest.raises(ConfigError, match="changes what is trained"):
            check_rescorable([line])
    with pytest.raises(ConfigError, match="paths.data_dir: means nothing to a re-scoring"):
        check_rescorable(["paths.data_dir=x"])
