"""scripts/gpu_check.sh, the prepared GPU check: its --dry mode runs every part of it on the
CPU (fit and score rows in the three modes, the M2AD run) and prints one table; the
configs of the real run compose to each backbone's published size on one MSL channel."""
import importlib.util
import os
import subprocess
import sys
from argparse import Namespace

import pytest
from omegaconf import OmegaConf

from madbench.checks import validate
from tests.conftest import CONFIGS, ROOT


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_dry_run_prints_one_table_with_every_mode_and_the_m2ad_run(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    out = tmp_path / "table.md"
    p = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--dry", "--backbones", "anomaly_transformer",
                        "--out", str(out)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    table = [ln for ln in out.read_text().splitlines() if ln.startswith("|")]
    assert table[0].startswith("| backbone | mode | device | params M | warm-up s | fit s/epoch | score s | peak GiB")
    rows = {tuple(c.strip() for c in ln.strip("|").split("|"))[:2]: ln for ln in table[2:]}
    for backbone in ("anomaly_transformer",):
        for mode in ("fp32", "bf16", "compile"):
            cells = [c.strip() for c in rows[(backbone, mode)].strip("|").split("|")]
            assert cells[2] == "cpu" and cells[-1] == "ok", rows[(backbone, mode)]
            assert all(float(c) >= 0 for c in cells[3:8])
    assert "| ok: 2 of 2 channels in " in rows[("M2AD MSL run, 1 seed", "fp32")]
    assert len(rows) == 3 + 1


def test_without_cuda_the_real_check_refuses_in_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert gpu_check().main(["--root", str(ROOT)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("gpu_check: no CUDA device here; --dry runs the check on the CPU")


@pytest.mark.parametrize("mode", ["fp32", "bf16", "compile"])
def test_the_real_rows_are_table_2_at_the_published_sizes_on_one_msl_channel(mode):
    gc = gpu_check()
    a = Namespace(dry=False, channel="C-1", root="/data")
    for backbone in gc.BACKBONES:
        cfg = gc.compose([*gc.base_overrides(a), f"backbone={backbone}", *gc.PAPER.get(backbone, []),
                          *gc.MODES[mode]])
        assert (cfg.experiment_name, cfg.dataset.name, list(cfg.dataset.entities)) == ("madcluster_t2", "msl", ["C-1"])
        assert (cfg.dataset.sensors, cfg.dataset.window, cfg.dataset.stride, cfg.head.name) == ("all", 100, 1, "none")
        assert (cfg.trainer.device, cfg.trainer.epochs, cfg.trainer.patience) == ("cuda", 2, None)
        assert str(cfg.trainer.precision) == ("bf16" if mode == "bf16" else "32")
        assert cfg.trainer.compile is (mode == "compile")
        # the YAML's published sizes (no CPU-test sizes), USAD's published latent
        published = OmegaConf.to_container(OmegaConf.load(CONFIGS / "backbone" / f"{backbone}.yaml").model)
        for key, value in published.items():
            if key.startswith("_") or str(value).startswith("${"):
                continue
            expected = {"hidden": 100, "wide_latent": True}.get(key, value) if backbone == "usad" else value
            if backbone == "timesnet":   # TSLib's MSL sizes (configs/per_dataset/timesnet_msl.yaml)
                per_dataset = OmegaConf.load(CONFIGS / "per_dataset" / "timesnet_msl.yaml").get("model", {})
                expected = per_dataset.get(key, value)
            assert cfg.backbone.model[key] == expected, (backbone, key)
        cfg.trainer.device = "cpu"   # no CUDA here: the rest of the config is checked as a job would
        validate(cfg)
