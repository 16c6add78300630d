import gzip

import numpy as np
import pytest

from madbench.data.smd import load_smd, load_smd_merged

from .conftest import N_TEST, N_TRAIN, SMD_EVENTS
from .helpers import raises_data_error, raises_disagreement


def _first_line(path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return np.array(f.readline().strip().split(","), dtype=float)


def test_plain_and_gzip_natural_order_first_row_kept(smd_root):
    es = load_smd(smd_root)
    assert [e.name for e in es] == ["machine-1-2", "machine-1-10", "machine-2-1"]
    for e in es:
        assert e.system == "SMD"
        assert e.train.shape == (N_TRAIN, 38) and e.test.shape == (N_TEST, 38)
        assert e.columns == [f"dim_{i}" for i in range(38)] and e.sensors == e.columns
    gz = es[1]
    assert gz.meta["source"]["train"].endswith("machine-1-10.txt.gz")
    # the headerless first line is data, not a header
    np.testing.assert_allclose(gz.train[0], _first_line(smd_root / "train" / "machine-1-10.txt.gz"), atol=1e-6)
    np.testing.assert_allclose(es[0].test[0], _first_line(smd_root / "test" / "machine-1-2.txt"), atol=1e-6)


def test_labels_events_and_interpretation(smd_root):
    e12, e110, e21 = load_smd(smd_root)
    assert e12.labels[:5].all() and e12.labels[5] == 0 and e12.labels[50:60].all() and e12.labels.sum() == 15
    # file "0-5:1,3" = rows 0..4 (end exclusive), dims 1 and 3 (1-based)
    assert e12.meta["interpretation"] == [
        {"start": 0, "end": 4, "columns": [0, 2], "sensors": ["dim_0", "dim_2"]},
        {"start": 50, "end": 59, "columns": [37], "sensors": ["dim_37"]},
    ]
    assert [(ev["start"], ev["end"], ev["sensors"]) for ev in e12.meta["events"]] == [
        (0, 4, ["dim_0", "dim_2"]),
        (50, 59, ["dim_37"]),
    ]
    assert e110.labels[-1] == 1 and e110.meta["events"][0]["sensors"] == ["dim_1"]
    assert e21.meta["interpretation"] is None and e21.meta["events"] == [] and e21.labels.sum() == 0
    assert [(ev["start"], ev["end"]) for ev in e12.meta["events"]] == SMD_EVENTS["machine-1-2"]


def test_entity_list(smd_root):
    assert [e.name for e in load_smd(smd_root, entities=["machine-2-1"])] == ["machine-2-1"]
    raises_data_error(load_smd, smd_root, entities=["machine-9-9"], file="test", expect="machine-1-2")


def test_missing_train_file(smd_root):
    (smd_root / "train" / "machine-2-1.txt").unlink()
    raises_data_error(load_smd, smd_root, file="train/machine-2-1.txt", expect="machine-2-1.txt.gz")


def test_missing_test_dir(tmp_path):
    raises_data_error(load_smd, tmp_path, file="test", expect="machine-X-Y.txt")


@pytest.mark.parametrize("n", [N_TEST + 3, N_TEST - 20])
def test_label_length_disagrees_with_test_rows(smd_root, n):
    p = smd_root / "test_label" / "machine-2-1.txt"
    p.write_text("\n".join(["0"] * n) + "\n")
    raises_disagreement(
        load_smd,
        smd_root,
        files=(str(p), str(smd_root / "test" / "machine-2-1.txt")),
        values=(f"{n} labels", f"{N_TEST} rows"),
    )


def test_cut_short_gzipped_test_file(smd_root):
    """The test file (gzipped) cut short: its labels no longer match, named with both counts."""
    p = smd_root / "test" / "machine-1-10.txt.gz"
    with gzip.open(p, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(p, "wt") as f:
        f.write("\n".join(lines[: N_TEST - 30]) + "\n")
    raises_disagreement(
        load_smd,
        smd_root,
        files=("test_label/machine-1-10.txt.gz", "test/machine-1-10.txt.gz"),
        values=(f"{N_TEST} labels", f"{N_TEST - 30} rows"),
    )


def test_labels_not_binary(smd_root):
    p = smd_root / "test_label" / "machine-2-1.txt"
    p.write_text("\n".join(["0"] * (N_TEST - 1) + ["3"]) + "\n")
    raises_data_error(load_smd, smd_root, file="machine-2-1.txt", expect="only 0 and 1")


def test_wrong_dims(smd_root):
    p = smd_root / "test" / "machine-2-1.txt"
    p.write_text("\n".join("0.1,0.2,0.3" for _ in range(N_TEST)) + "\n")
    raises_data_error(load_smd, smd_root, file="test/machine-2-1.txt", expect="expected 38")


def test_corrupt_text(smd_root):
    p = smd_root / "train" / "machine-2-1.txt"
    lines = p.read_text().splitlines()
    lines[3] = lines[3].replace("0.", "x.", 1)
    p.write_text("\n".join(lines) + "\n")
    msg = raises_data_error(load_smd, smd_root, file="train/machine-2-1.txt", expect="comma-separated floats")
    assert "row 3" in msg
    with gzip.open(smd_root / "test" / "machine-1-10.txt.gz", "wb") as f:
        f.write(b"")
    (smd_root / "test" / "machine-1-10.txt.gz").write_bytes(b"\x1f\x8b garbage")
    raises_data_error(
        load_smd, smd_root, entities=["machine-1-10"], file="test/machine-1-10.txt.gz", expect="comma-separated floats"
    )


def test_bad_interpretation(smd_root):
    p = smd_root / "interpretation_label" / "machine-1-2.txt"
    p.write_text("0-5:1,3\n10-12\n")
    msg = raises_data_error(load_smd, smd_root, file="interpretation_label/machine-1-2.txt", expect="start-end:dim")
    assert "line 2 '10-12'" in msg                      # the line, by number and content
    p.write_text("0-5:1,3\n\n7-7:2\n")
    msg = raises_data_error(load_smd, smd_root, file="interpretation_label/machine-1-2.txt", expect="start < end")
    assert "line 3" in msg                              # blank lines still count
    p.write_text("0-5:\n")
    raises_data_error(load_smd, smd_root, file="interpretation_label/machine-1-2.txt", expect="start-end:dim")


def test_interpretation_dims_outside_the_columns(smd_root):
    p = smd_root / "interpretation_label" / "machine-1-2.txt"
    for line, dims in (("0-5:0,3", "[0, 3]"), ("0-5:3,39", "[3, 39]")):
        p.write_text(line + "\n")
        raises_disagreement(
            load_smd,
            smd_root,
            files=(str(p), str(smd_root / "test" / "machine-1-2.txt")),
            values=(f"dims {dims}", "38 columns", "1..38"),
        )


def test_interpretation_range_past_the_test_rows(smd_root):
    p = smd_root / "interpretation_label" / "machine-1-2.txt"
    p.write_text(f"0-5:1\n140-{N_TEST + 1}:3\n")
    msg = raises_disagreement(
        load_smd,
        smd_root,
        files=(str(p), str(smd_root / "test" / "machine-1-2.txt")),
        values=(f"140-{N_TEST + 1}", f"{N_TEST} rows"),
    )
    assert "line 2" in msg


def test_gzipped_interpretation_is_read_not_ignored(smd_root):
    """`prepare` copies interpretation_label/*.txt.gz; the loader used to look only for .txt."""
    src = smd_root / "interpretation_label" / "machine-1-2.txt"
    with gzip.open(src.with_name("machine-1-2.txt.gz"), "wt") as f:
        f.write(src.read_text())
    src.unlink()
    e12 = load_smd(smd_root, entities=["machine-1-2"])[0]
    assert e12.meta["interpretation"][0] == {"start": 0, "end": 4, "columns": [0, 2], "sensors": ["dim_0", "dim_2"]}
    assert e12.meta["source"]["interpretation"].endswith("machine-1-2.txt.gz")
    src.with_name("machine-1-2.txt.gz").write_bytes(b"\x1f\x8b garbage")
    raises_data_error(
        load_smd, smd_root, entities=["machine-1-2"], file="interpretation_label/machine-1-2.txt.gz", expect="start-end"
    )


def test_nan_in_test(smd_root):
    p = smd_root / "test" / "machine-2-1.txt"
    lines = p.read_text().splitlines()
    lines[10] = "nan," + lines[10].split(",", 1)[1]
    p.write_text("\n".join(lines) + "\n")
    raises_data_error(load_smd, smd_root, file="test/machine-2-1.txt", expect="finite test values")


def test_min_length(smd_root):
    raises_data_error(
        load_smd, smd_root, min_length=N_TEST + 1, file="train/machine-1-2.txt", expect=f"at least {N_TEST + 1}"
    )


def test_merged(smd_merged_root):
    (e,) = load_smd_merged(smd_merged_root)
    assert (e.name, e.system, e.train.shape, e.test.shape) == ("SMD", "SMD", (N_TRAIN, 38), (N_TEST, 38))
    assert e.sensors == [f"dim_{i}" for i in range(38)] and e.labels.sum() == 10


def test_merged_label_length_disagrees_with_test_rows(smd_merged_root):
    np.save(smd_merged_root / "SMD_test_label.npy", np.zeros(N_TEST + 7))
    raises_disagreement(
        load_smd_merged,
        smd_merged_root,
        files=(str(smd_merged_root / "SMD_test_label.npy"), str(smd_merged_root / "SMD_test.npy")),
        values=(f"{N_TEST + 7} labels", f"{N_TEST} rows"),
    )


def test_merged_wrong_dims(smd_merged_root):
    np.save(smd_merged_root / "SMD_train.npy", np.zeros((N_TRAIN, 37)))
    raises_data_error(load_smd_merged, smd_merged_root, file="SMD_train.npy", expect="expected 38")
