"""On the real files in ../shared/datasets (skipped when they are not there)."""

import numpy as np
import pytest

from madbench.data.nasa import load_nasa
from madbench.data.smd import load_smd

pytestmark = pytest.mark.realdata


def test_msl_c1(shared_data):
    (e,) = load_nasa(shared_data / "NASA", "MSL", entities=["C-1"], min_length=100)
    assert e.train.shape == (2158, 55) and e.test.shape == (2264, 55)
    assert len(e.meta["events"]) == 2
    assert e.labels.sum() == sum(ev["end"] - ev["start"] + 1 for ev in e.meta["events"])


@pytest.mark.parametrize("spacecraft, channels, events", [("MSL", 27, 36), ("SMAP", 53, 67)])
def test_nasa_counts_match_the_m2ad_paper(shared_data, spacecraft, channels, events):
    es = load_nasa(shared_data / "NASA", spacecraft, min_length=100)
    assert len(es) == channels and "P-2" not in [e.name for e in es]
    assert sum(len(e.meta["events"]) for e in es) == events


def test_smd_machine_1_2(shared_data):
    root = shared_data / "SMD"
    if not (root / "test" / "machine-1-2.txt.gz").exists() and not (root / "test" / "machine-1-2.txt").exists():
        pytest.skip(f"machine-1-2 not in {root}")
    (e,) = load_smd(root, entities=["machine-1-2"], min_length=100)
    assert e.train.shape == (23694, 38) and e.test.shape == (23694, 38)
    expected = np.loadtxt(root / "test_label" / "machine-1-2.txt", dtype=np.int8)
    np.testing.assert_array_equal(e.labels, expected)
    assert len(e.meta["events"]) == 10
