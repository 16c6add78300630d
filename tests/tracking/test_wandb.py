"""W&B sink settings (mode, job_type, tags) and madbench-wandb-sync, without a network."""
import subprocess

import pytest

from madbench.tracking import wandb as tw


def test_mode_is_offline_unless_logged_in(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert tw.resolve_mode(None) == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert tw.resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tw.resolve_mode(None) == "disabled" and tw.resolve_mode("offline") == "offline"


def test_job_type_is_the_experiment():
    assert tw.default_job_type({"experiment": "m2ad_table2", "hparams_search": None}) == "m2ad_table2"
    assert tw.default_job_type({"experiment": None, "hparams_search": "optuna"}) == "optuna"
    assert tw.default_job_type({}) == "run"
    assert tw.default_job_type() == "run"  # outside Hydra
    assert tw._choice_tags({"experiment": "m2ad_table2", "hparams_search": None}) == ["experiment=m2ad_table2"]


def _offline(root, name, synced=False):
    d = root / "wandb" / f"offline-run-20260101_000000-{name}"
    d.mkdir(parents=True)
    (d / f"run-{name}.wandb").write_bytes(b":W&B")
    if synced:
        (d / f"run-{name}.wandb.synced").write_text("")
    return d


def test_sync_finds_offline_runs_not_yet_synced(tmp_path, capsys):
    a = _offline(tmp_path / "multirun" / "s" / "0_x", "aaa")
    _offline(tmp_path / "multirun" / "s" / "1_x", "bbb", synced=True)
    c = _offline(tmp_path / "runs" / "r", "ccc")
    assert tw.offline_runs([tmp_path]) == [a, c]
    assert len(tw.offline_runs([tmp_path], include_synced=True)) == 3
    tw.sync_main([str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert str(a) in out and str(c) in out and "bbb" not in out and "2 offline run(s) to sync" in out


def test_sync_calls_wandb_sync_when_logged_in(tmp_path, monkeypatch, capsys):
    a = _offline(tmp_path, "aaa")
    calls = []
    monkeypatch.setattr(tw, "logged_in", lambda: True)
    monkeypatch.setattr(tw.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    tw.sync_main([str(tmp_path), "--project", "p"])
    assert len(calls) == 1 and calls[0][1:] == ["sync", "--project", "p", str(a)]
    assert "synced 1 offline run(s)" in capsys.readouterr().out


def test_sync_refuses_without_login(tmp_path, monkeypatch, capsys):
    _offline(tmp_path, "aaa")
    monkeypatch.setattr(tw, "logged_in", lambda: False)
    with pytest.raises(SystemExit) as e:
        tw.sync_main([str(tmp_path)])
    assert e.value.code == 1 and "not logged in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tw.sync_main([str(tmp_path / "absent")])
    assert e.value.code == 2
