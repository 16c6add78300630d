import copy
import io
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = (ROOT / ".." / "shared" / "datasets").resolve()

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# A job small enough for a test (configs/debug/tiny.yaml): 2 systems x 400/400 steps,
# window 20, 2 epochs, the backbone at its CPU-test sizes (configs/sizes/tiny_<backbone>.yaml).
TINY = ["debug=tiny"]
#: compose_cfg's tiny configs draw no plots unless the overrides ask (logger.csv.plots=true:
#: tests/test_run.py's tiny_run and W&B test, tests/test_attribution.py's SMD run,
#: tests/tracking/test_plots.py): matplotlib was a ninth of the suite's CPU time, for figures
#: nothing read. Set after composing: an override would fail where logger=... drops csv.
PLOTS = "logger.csv.plots="
#: the tiny job on a command line (``script("madbench", *TINY_CLI, ...)``): one system, one
#: epoch, no plots
TINY_CLI = ["debug=tiny", "dataset.n_systems=1", "trainer.epochs=1", "logger.csv.plots=false"]


def pytest_collection_modifyitems(config, items):
    """The slow tests first (a stable sort, the same on every worker): pytest-xdist hands
    out tests in collection order, so a sweep test of a minute or more collected last
    (test_sweeps.py) kept one worker busy long after the other had finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_COMPOSED: dict = {}


def compose_cfg(overrides=(), tiny=True):
    """Hydra's composition of configs/ with these overrides (and the tiny job's, which draws
    no plots unless asked: ``PLOTS``), a fresh copy on every call: the same overrides are
    composed once per test process (a compose costs about 0.1 s of Hydra's defaults tree and
    YAML loading, a copy 5 ms; the suite composes about a thousand times, many of them
    alike), and each caller gets its own copy to modify."""
    key = (bool(tiny), tuple(overrides))
    if key not in _COMPOSED:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("config", overrides=(TINY if tiny else []) + list(overrides))
        if tiny and "csv" in cfg.logger and not any(o.lstrip("+").startswith(PLOTS) for o in overrides):
            cfg.logger.csv.plots = False
        _COMPOSED[key] = cfg
    return copy.deepcopy(_COMPOSED[key])


@contextmanager
def _process_state(env=None):
    """What a console script may change in the process that a fresh interpreter would have
    thrown away, put back afterwards: the environment (``env`` replaces it for the call,
    as ``subprocess.run(env=...)`` would), the working directory, torch's thread count,
    warning filters, Hydra's global state, and the logging tree (Hydra's job logging
    points handlers at the run's log file and at the redirected streams)."""
    import logging
    import warnings

    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved = {name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
             for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    environ, here, threads, hydra_cfg = dict(os.environ), os.getcwd(), torch.get_num_threads(), HydraConfig.instance().cfg
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(here)
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = hydra_cfg
        for name, lg in list(logging.Logger.manager.loggerDict.items()):
            if not isinstance(lg, logging.Logger):
                continue
            handlers, level, propagate, disabled = saved.get(name, ([], logging.NOTSET, True, False))
            for h in lg.handlers:
                if h not in handlers:
                    h.close()
            lg.handlers[:] = handlers
            lg.level, lg.propagate, lg.disabled = level, propagate, disabled
        for h in root.handlers:
            if h not in saved_root[0]:
                h.close()
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])


def script(name: str, *args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run one of madbench's console scripts in this process, as its console-script wrapper
    would (``sys.argv``, exit status from ``SystemExit`` or the return value), with its
    stdout and stderr captured: what ``subprocess.run(..., capture_output=True, text=True,
    cwd=cwd, env=env)`` gives, without the 2–4 s of imports a fresh interpreter pays (a
    tiny job itself takes about 0.1 s). That includes the Hydra app ``madbench``: its
    single runs and its sweeps with the basic launcher run here; the joblib and submitit
    launchers still start their jobs in processes of their own. What the script changes in
    the process (environment, cwd, logging, Hydra's globals, torch threads) is put back
    (:func:`_process_state`). The entry point is read from the installed metadata, so a
    renamed or unlisted script fails here too. Each script keeps real subprocess tests (its
    ``--help``; the Hydra app also a job: tests/test_cli_ux.py)."""
    (ep,) = entry_points(group="console_scripts", name=name)
    fn = ep.load()
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [name, *map(str, args)]
    try:
        with _process_state(env):
            if cwd is not None:
                os.chdir(cwd)
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    rc = fn()
                    code = 0 if rc is None else rc
                except SystemExit as e:
                    if e.code is None or isinstance(e.code, int):
                        code = e.code or 0
                    else:   # sys.exit("message"): the message goes to stderr, status 1
                        print(e.code, file=sys.stderr)
                        code = 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess([name, *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture
def cfg_factory():
    return compose_cfg


def assert_refused_before_training(overrides, tmp_path, match: str) -> None:
    """A job with these (tiny) overrides fails with a one-line ConfigError matching ``match``,
    writes failed rows saying so, and no scores."""
    import pandas as pd

    from madbench import run
    from madbench.errors import ConfigError

    with pytest.raises(ConfigError, match=match) as e:
        run.main(compose_cfg(list(overrides)), tmp_path)
    assert "\n" not in str(e.value)
    res = pd.read_csv(tmp_path / "results.csv")
    assert (res.status == "failed").all() and (res.error == str(e.value)).all()
    assert not (tmp_path / "scores.npz").exists()


def stored(run_dir) -> dict:
    """A run dir's scores.npz through the run-dir module: {entity name: StoredEntity}."""
    from madbench.rundir import read_scores

    return {e.name: e for e in read_scores(run_dir).entities}


#: run dirs written by madbench before the run-dir module (scores format version 1): a
#: forecaster scored with M2AD under every protocol, and Deep SVDD with the MADCluster head
V1_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rundir_v1"


def v1_run(tmp_path, name: str = "lstm_m2ad") -> Path:
    """A copy of a committed version-1 run dir (tests may rewrite it)."""
    import shutil

    dst = Path(tmp_path) / f"v1_{name}"
    shutil.copytree(V1_FIXTURES / name, dst)
    return dst


def rewrite_v1_scores(run_dir, drop_suffix: str | None = None, meta_drop: str | None = None) -> None:
    """Rewrite a version-1 scores.npz as an older run would have written it: without the
    arrays ending in ``drop_suffix``, or without the meta key ``meta_drop``."""
    import json

    import numpy as np

    path = Path(run_dir) / "scores.npz"
    z = dict(np.load(path))
    if drop_suffix:
        z = {k: v for k, v in z.items() if not k.endswith(drop_suffix)}
    if meta_drop:
        meta = json.loads(str(z["__meta__"]))
        meta.pop(meta_drop)
        z["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **z)
