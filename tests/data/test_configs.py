"""Every dataset config composes and instantiates on the fixture files."""

from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from madbench.data.entity import Entity

CONFIG_DIR = Path(__file__).parents[2] / "configs" / "dataset"
MINE = ["msl", "smap", "smd", "psm", "multisystem", "msl_merged", "smap_merged", "smd_merged"]
KEYS = ["name", "window", "stride", "pooled", "shard", "entities", "sensors", "anomaly_ratio", "scaler", "loader"]
EXPECTED = {  # dataset -> (n entities on the fixtures, columns)
    "msl": (2, 55),
    "smap": (1, 25),
    "smd": (3, 38),
    "psm": (1, 25),
    "multisystem": (2, None),
    "msl_merged": (1, 55),
    "smap_merged": (1, 25),
    "smd_merged": (1, 38),
}


def _compose(name, data_dir, **overrides):
    ds = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    ds.update(overrides)
    return OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "dataset": ds})


@pytest.mark.parametrize("name", MINE)
def test_config_shape(name):
    ds = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    assert list(ds) == KEYS and ds["name"] == name
    assert ds["scaler"] in ("minmax", "standard", "none") and ds["sensors"] in ("first", "all")
    assert ds["loader"]["_convert_"] == "all" and ds["loader"]["min_length"] == "${dataset.window}"


@pytest.mark.parametrize("name", MINE)
def test_config_instantiates(name, data_dir):
    cfg = _compose(name, data_dir)
    entities = instantiate(cfg.dataset.loader)
    n, dims = EXPECTED[name]
    assert len(entities) == n and all(isinstance(e, Entity) for e in entities)
    if dims is not None:
        assert all(e.train.shape[1] == dims for e in entities)


def test_overrides_reach_the_loader(data_dir):
    cfg = _compose("msl", data_dir, entities=["M-6"], sensors="all")
    (e,) = instantiate(cfg.dataset.loader)
    assert e.name == "M-6" and e.sensors == e.columns
    cfg = _compose("smd", data_dir, entities=["machine-2-1", "machine-1-2"])
    assert [e.name for e in instantiate(cfg.dataset.loader)] == ["machine-2-1", "machine-1-2"]


def test_window_is_the_min_length(data_dir):
    from hydra.errors import InstantiationException

    from madbench.errors import DataError

    cfg = _compose("psm", data_dir, window=10_000)
    # Hydra wraps the loader's error; the runner shows the DataError it carries
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.dataset.loader)
    assert isinstance(info.value.__cause__, DataError) and "at least 10000" in str(info.value.__cause__)
