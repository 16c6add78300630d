"""configs/pipeline/<row>.yaml: every row of the M2AD paper's Table 2 composes, passes the
config checks, carries the settings docs/m2ad_table2_pipelines.md gives for it, counts its
scorer's intervals as they are (no second padding), and runs end to end under debug=tiny."""
import numpy as np
import pytest
from omegaconf import OmegaConf

from madbench import run
from madbench.checks import validate
from madbench.scoring import build_scorer
from tests.conftest import CONFIGS, compose_cfg, stored

ROWS = sorted(p.stem for p in (CONFIGS / "pipeline").glob("*.yaml"))

#: row -> (pipeline_name, backbone, objective, scoring, window, flags come from the scorer)
EXPECTED = {
    "m2ad": ("M2AD", "lstm", "forecast", "m2ad", 100),
    "lstm_dynamic_threshold": ("lstm_dynamic_threshold", "lstm_dt", "forecast", "dynamic_threshold", 250),
    "lstm_autoencoder": ("lstm_autoencoder", "lstm_ae", "reconstruct", "dynamic_threshold", 100),
    "vae": ("vae", "vae", "vae", "dynamic_threshold", 100),
    "fits": ("fits", "fits", "reconstruct", "percentile_threshold", 200),
    "timesnet": ("timesnet", "timesnet", "reconstruct", "percentile_threshold", 100),
    "anomaly_transformer": ("anomaly_transformer", "anomaly_transformer", "association", "percentile_threshold", 100),
    "usad": ("USAD", "usad", "usad", "dynamic_threshold", 12),
    "oa": ("OA", "omnianomaly", "omnianomaly", "raw", 100),
    # the trivial floor: M2AD's scoring of training-free predictors' residuals (not paper rows)
    "floor_persistence": ("floor_persistence", "persistence", "forecast", "m2ad", 100),
    "floor_train_mean": ("floor_train_mean", "train_mean", "forecast", "m2ad", 100),
}
FLOORS = ("floor_persistence", "floor_train_mean")


def test_every_table2_row_has_a_pipeline():
    assert set(ROWS) == set(EXPECTED)
    import pandas as pd

    paper = set(pd.read_csv(CONFIGS.parent / "madbench" / "paper" / "m2ad_table2.csv").pipeline)
    assert {v[0] for k, v in EXPECTED.items() if k not in FLOORS} == paper


def test_the_table2_experiment_sweeps_every_row_and_the_floors():
    sweep = OmegaConf.load(CONFIGS / "experiment" / "m2ad_table2.yaml").hydra.sweeper.params
    assert sorted(str(sweep.pipeline).split(",")) == sorted(ROWS)
    cfg = compose_cfg(["experiment=m2ad_table2"], tiny=False)
    assert (cfg.pipeline_name, cfg.name) == ("M2AD", "m2ad_table2-msl-M2AD")


@pytest.mark.parametrize("row", ROWS)
def test_row_composes_with_its_settings(row):
    cfg = compose_cfg([f"pipeline={row}", "dataset=msl"], tiny=False)
    validate(cfg)
    name, backbone, objective, scoring, window = EXPECTED[row]
    assert (cfg.pipeline_name, cfg.backbone.name, cfg.objective.name, cfg.scoring.name, cfg.dataset.window) == (
        name, backbone, objective, scoring, window)
    assert list(cfg.protocol) == ["m2ad"] and cfg.dataset.sensors == "first" and cfg.dataset.stride == 1
    # a scorer whose flags are finished intervals (padded and merged, no p-value) must not be
    # padded again by the protocol; the others' flags are single steps, padded ±50
    finished = type(build_scorer(cfg)).__name__ in ("DynamicThresholdScoring", "PercentileThresholdScoring")
    assert (cfg.protocol.m2ad.grouping == "none") == finished, row
    assert finished == (scoring in ("dynamic_threshold", "percentile_threshold"))


def test_orion_settings_of_the_lstm_rows():
    cfg = compose_cfg(["pipeline=lstm_dynamic_threshold"], tiny=False)
    s = cfg.scoring
    assert (s.smoothing, s.smoothing_window, s.window_size, s.window_step, s.fixed_threshold, s.k, s.min_percent,
            s.anomaly_padding) == ("ewma", 0.01, 0.33, 0.1, True, 4.0, 0.13, 50)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.patience, cfg.trainer.min_delta) == (35, 64, 10,
                                                                                                       3e-4)
    for row in ("lstm_autoencoder", "vae"):
        cfg = compose_cfg([f"pipeline={row}"], tiny=False)
        assert cfg.scoring.smoothing == "rolling" and cfg.scoring.fixed_threshold
    cfg = compose_cfg(["pipeline=lstm_autoencoder"], tiny=False)
    assert (cfg.backbone.model.hidden, cfg.backbone.model.latent) == (60, None)


def test_a_pipeline_overrides_an_experiment():
    cfg = compose_cfg(["experiment=m2ad_table2", "pipeline=fits"], tiny=False)
    assert (cfg.backbone.name, cfg.scoring.name, cfg.dataset.window, cfg.trainer.epochs, cfg.trainer.batch_size) == (
        "fits", "percentile_threshold", 200, 10, 64)


@pytest.mark.parametrize("row", ROWS)
def test_row_runs_tiny(row, tmp_path):
    cfg = compose_cfg([f"pipeline={row}", "trainer.epochs=1"])
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all(), df.error.iloc[0]
    m = df[(df.protocol == "m2ad") & (df.entity == "ALL")].iloc[0]
    # every labelled event is counted once, as a hit or a miss
    from madbench.data.entity import label_events

    events = sum(len(label_events(e.labels)) for e in stored(tmp_path).values())
    assert m.event_tp + m.event_fn == events
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.pipeline_name == EXPECTED[row][0]
