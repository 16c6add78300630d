import copy
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
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


def pytest_collection_modifyitems(config, items):
    """The slow tests first (a stable sort, the same on every worker): pytest-xdist hands
    out tests in collection order, so a sweep test of a minute or more collected last
    (test_sweeps.py) kept one worker busy long after the other had finished."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_COMPOSED: dict = {}


def compose_cfg(overrides=(), tiny=True):
    """Hydra's composition of configs/ with these overrides (and the tiny job's), a fresh
    copy on every call: the same overrides are composed once per test process (a compose
    costs about 0.15 s of Hydra's defaults tree and YAML loading, a copy 5 ms; the suite
    composes about a thousand times, many of them alike), and each caller gets its own
    copy to modify."""
    key = (bool(tiny), tuple(overrides))
    if key not in _COMPOSED:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            _COMPOSED[key] = compose("config", overrides=(TINY if tiny else []) + list(overrides))
    return copy.deepcopy(_COMPOSED[key])


def script(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    """Run one of madbench's argparse console scripts (``madbench-eval``, ``madbench-tables``,
    ``madbench-collect``; not the Hydra app) in this process, as its console-script wrapper
    would (``sys.argv``, exit status from ``SystemExit`` or the return value), with its
    stdout and stderr captured: what ``subprocess.run(..., capture_output=True, text=True)``
    gives, without the 2–4 s of imports a fresh interpreter pays. The entry point is read
    from the installed metadata, so a renamed or unlisted script fails here too. Each
    script keeps one real subprocess test (its ``--help``)."""
    (ep,) = entry_points(group="console_scripts", name=name)
    fn = ep.load()
    out, err = io.StringIO(), io.StringIO()
    argv, here = sys.argv, os.getcwd()
    sys.argv = [name, *map(str, args)]
    try:
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
        os.chdir(here)
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
