"""Progress in a log without a terminal: a line at most every trainer.log_every_s seconds per
long stage (issue 28: SMD printed nothing for 176 s of scoring, THOC for 300 s of training);
tqdm bars stay on terminals."""
import logging
import time

import pytest

from madbench import progress
from madbench.errors import ConfigError
from madbench.progress import Progress, heartbeat
from tests.conftest import compose_cfg


def _lines(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_job_without_a_terminal_logs_its_epochs_validation_and_scoring(tmp_path, caplog, monkeypatch):
    from madbench import run

    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="madbench")
    # a line after every batch: any stage lasts longer than a nanosecond
    run.main(compose_cfg(["dataset.n_systems=1", "trainer.epochs=1", "trainer.batch_size=64",
                          "trainer.eval_batch_size=100", "logger.csv.plots=false", "trainer.log_every_s=1e-9"]),
             tmp_path)
    fit = _lines(caplog, "sys0 epoch 1/1: ")
    # 304 training windows in batches of 64: 5 batches, each a line with the running loss
    assert [m.split(",")[0] for m in fit] == [f"sys0 epoch 1/1: {i}/5 batches" for i in range(1, 6)]
    assert all(", loss=" in m for m in fit)
    assert _lines(caplog, "sys0 epoch 1 validation: 1/1 batches")
    assert _lines(caplog, "sys0 score test: 1/4 batches") and _lines(caplog, "sys0 score test: 4/4 batches")


def test_lines_come_at_most_every_n_seconds_and_none_with_0(caplog, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="madbench")
    for _ in Progress(range(1000), "quick", every_s=3600):
        pass
    for _ in Progress(range(3), "off", every_s=0):
        time.sleep(0.002)
    assert not _lines(caplog, "quick") and not _lines(caplog, "off")
    for _ in Progress(range(4), "slow", every_s=0.01):
        time.sleep(0.015)
    assert len(_lines(caplog, "slow: ")) == 4


def test_a_bar_on_a_terminal_and_no_lines(caplog, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="madbench")
    p = Progress(range(3), "tty", every_s=1e-9)
    assert p.bar is not None and list(p) == [0, 1, 2]
    p.close()
    assert not _lines(caplog, "tty")
    assert Progress(range(3), "off", bar=False).bar is None  # trainer.progress=false: lines, never a bar


def test_a_stage_that_is_one_call_says_it_is_still_running(caplog):
    caplog.set_level(logging.INFO, logger="madbench")
    with heartbeat("sys0: scoring=m2ad", 0.01):
        time.sleep(0.08)
    assert _lines(caplog, "sys0: scoring=m2ad: still running after ")
    n = len(caplog.records)
    time.sleep(0.03)  # stopped with the stage
    assert len(caplog.records) == n


@pytest.mark.parametrize("value", [-1, "often", True])
def test_log_every_s_is_checked_at_compose_time(value):
    from madbench.checks import validate

    with pytest.raises(ConfigError, match=r"^trainer.log_every_s=.*expected seconds >= 0"):
        validate(compose_cfg([f"trainer.log_every_s={value}"]))
