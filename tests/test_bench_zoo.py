"""Smoke test of scripts/bench_zoo.py (``bench.py zoo``): one in-process measurement at the
CPU-test sizes, the table, and the command line's refusals. No timing is asserted."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("bench_zoo")


def test_every_registered_backbone_has_a_config_and_a_loadable_reference_runner():
    bench = _load()
    for name, entry in bench.ZOO.items():
        assert (ROOT / "configs" / "backbone" / f"{name}.yaml").exists(), name
        if entry.reference:
            module, function = entry.reference.split(":")
            assert callable(getattr(importlib.import_module(module), function)), entry.reference


def test_one_measurement_and_the_table(capsys):
    import torch

    bench = _load()
    deterministic = torch.are_deterministic_algorithms_enabled()
    spec = {"impl": "madbench", "backbone": "beatgan",
            "overrides": ["backbone=beatgan", "head=madcluster", "debug=tiny", "dataset.n_systems=1",
                          "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu"]}
    try:
        r = bench._worker(spec)
    finally:  # the worker is meant for its own process: leave this one as it was
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    assert r["n_train"] > 0 and r["windows_per_s"] > 0 and r["peak_rss_mib"] > 0 and len(r["seconds"]) == 1
    rows = bench.render({("beatgan", "madcluster", "madbench"): [r],
                         ("usad", "none", "madbench"): [{"error": "ConfigError: x"}]})
    out = capsys.readouterr().out
    assert out.count("| beatgan | madcluster | madbench |") == 1 and "failed: ConfigError: x" in out
    assert rows[0]["windows_per_s"] == r["windows_per_s"]


def test_command_line_refuses_unknown_backbones_and_references():
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--backbones", "nope"])
    with pytest.raises(SystemExit):
        bench.main(["--backbones", "beatgan", "--reference", "beatgan=/tmp/x"])
