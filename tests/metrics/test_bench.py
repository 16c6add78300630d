"""Smoke test of scripts/bench_metrics.py (tiny sizes; the real run is `make bench`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "scripts" / "bench_metrics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_main_prints_one_table(capsys):
    bench = _load()
    rows = bench.main(["--sizes", "3000", "--big", "--metrics", "affiliation", "--no-reference", "--window", "10"])
    out = capsys.readouterr().out
    assert [r["metric"] for r in rows] == ["affiliation", "all_metrics"]
    assert out.count("speed-up") == 1 and "3,000" in out
    assert all(r["ours_s"] > 0 for r in rows)


def test_worker_agrees_with_reference():
    pytest.importorskip("vus")
    bench = _load()
    for metric in ("vus", "r_auc", "affiliation"):
        ours = bench._worker("madbench", metric, 1500, 6, 1)["values"]
        ref = bench._worker("vus", metric, 1500, 6, 1)["values"]
        assert ours.keys() == ref.keys()
        assert all(abs(ours[k] - ref[k]) < 1e-9 for k in ours), (metric, ours, ref)
