"""What a researcher is told before any work: a sweep run without -m, and the search space
of an Optuna search."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from madbench.cli import sweep_without_m
from tests.conftest import CONFIGS, ROOT

BIN = Path(sys.executable).parent


def hydra_node(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")
                                              if "sweeper:" in p.read_text() or p.stem == "m2ad_reference"))
def test_every_sweep_experiment_is_named_as_one_without_m(experiment):
    note = sweep_without_m(hydra_node([f"experiment={experiment}"]))
    assert note is not None and "\n" not in note
    assert note.startswith(f"madbench: warning: experiment={experiment} is a sweep over ")
    assert "only one of its jobs runs" in note and f"madbench -m experiment={experiment}" in note


def test_a_single_job_config_gets_no_sweep_warning():
    assert sweep_without_m(hydra_node(["debug=tiny"])) is None
    assert sweep_without_m(hydra_node(["experiment=dcdetector_paper"])) is None


@pytest.mark.slow
def test_a_sweep_without_m_says_so_before_anything_runs(tmp_path):
    """`madbench experiment=m2ad_table2` used to run one of its 110 jobs without a word; the
    warning comes first (here before a refusal, so that nothing trains). Run through the
    wrapper pip installed, then in-process as the other tests of the app are."""
    env = os.environ | {"WANDB_MODE": "offline"}
    p = subprocess.run([str(BIN / "madbench"), "experiment=madcluster_t2", "debug=tiny", "+bakbone=lstm",
                        f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=ROOT, env=env)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1
    assert [ln for ln in lines if "warning" in ln] == [
        "madbench: warning: experiment=madcluster_t2 is a sweep over head; without -m only one of its jobs runs "
        "(one value of each). For the whole sweep: madbench -m experiment=madcluster_t2 ..."]
    assert lines[-1].startswith("madbench: error: bakbone: unknown key")
    # the Hydra app's one real subprocess job test: the other app tests run it in-process
    # (tests.conftest.script), which answers alike
    from tests.conftest import script

    q = script("madbench", *p.args[1:], cwd=ROOT)
    assert (q.returncode, q.stderr) == (1, p.stderr)
    assert not (tmp_path / "run").exists()


#: what the validation loss is measured on: the data and its split, the windows (which steps
#: are predicted, from what context), the loss itself. A search that varies one of these
#: ranks trials by losses of different prediction problems.
TARGET_GROUPS = ("dataset", "objective", "head", "scoring", "protocol", "trainer.val_ratio")
TARGET_WORDS = ("window", "horizon", "gap", "stride", "lag", "forecast", "val_ratio")


def test_optuna_default_space_leaves_the_validation_target_comparable():
    """The default space searched `dataset.window`, then ranked trials of different windows by
    their validation losses."""
    opt = hydra_node(["hparams_search=optuna"])
    cfg = OmegaConf.load(CONFIGS / "hparams_search" / "optuna.yaml")
    keys = list(opt.sweeper.params)
    assert keys and keys == list(cfg.hydra.sweeper.params)
    for key in keys:
        assert not any(key == g or key.startswith(g + ".") for g in TARGET_GROUPS), key
        assert not any(w in key.rsplit(".", 1)[-1] for w in TARGET_WORDS), key
    from tests.conftest import compose_cfg

    composed = compose_cfg(["hparams_search=optuna"], tiny=False)
    assert all(OmegaConf.select(composed, k) is not None for k in keys)  # each key exists in the default job


def test_readme_config_group_table_lists_every_group_and_option():
    """README.md is the user's whole documentation: its config-group table lists every group
    `madbench --help` lists (the folders of configs/ but hydra) and every option in it."""
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `") and line.count("|") >= 4}
    for group in sorted(p for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra"):
        assert group.name in rows, f"README config-group table lacks {group.name}"
        for option in sorted(f.stem for f in group.glob("*.yaml")):
            assert f"`{option}`" in rows[group.name], f"README: group {group.name} lacks option {option}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["madbench-eval", "madbench-tables", "madbench-collect"])
def test_each_argparse_console_script_runs_from_its_installed_wrapper(name):
    """The other tests run these scripts in-process (tests.conftest.script); this one runs
    each through the wrapper pip installed, and checks that the in-process call answers alike."""
    from tests.conftest import script

    p = subprocess.run([str(BIN / name), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith(f"usage: {name}") and not p.stderr, p.stderr
    q = script(name, "--help")
    assert (q.returncode, q.stdout, q.stderr) == (0, p.stdout, "")
