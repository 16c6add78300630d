"""One-epoch runs on the real MSL and SMD files (skipped when ../shared/datasets is absent).
A missing dataset needs no real data: tests/test_run.py checks it."""
import pandas as pd
import pytest

from madbench import run
from tests.conftest import SHARED_DATA, compose_cfg

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not found (real datasets)")]

FAST = ["trainer.epochs=1", "trainer.progress=false", "backbone.model.hidden=8", "dataset.window=20",
        "logger.csv.plots=false"]


def test_msl_channel_one_epoch(tmp_path):
    cfg = compose_cfg(["dataset=msl", "dataset.entities=[C-1]", f"paths.data_dir={SHARED_DATA}",
                       "protocol=[strict,m2ad]", "scoring.calibration=pot", *FAST], tiny=False)
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all()
    row = df[(df.entity == "C-1") & (df.protocol == "strict")].iloc[0]
    assert row.n_train == 2158 and row.n_test == 2264 and row.n_sensors == 1 and row.n_inputs == 55
    m2ad = df[(df.entity == "C-1") & (df.protocol == "m2ad")].iloc[0]
    assert m2ad.event_tp + m2ad.event_fn == 2  # C-1 has two labelled events


def test_smd_machine_one_epoch(tmp_path):
    cfg = compose_cfg(["dataset=smd", "dataset.entities=[machine-1-2]", f"paths.data_dir={SHARED_DATA}",
                       "dataset.stride=10", *FAST], tiny=False)
    df = run.main(cfg, tmp_path)
    assert (df.status == "ok").all()
    row = df[df.entity == "machine-1-2"].iloc[0]
    assert row.n_train == 23694 and row.n_sensors == 38
    assert pd.notna(row.auc_roc)
