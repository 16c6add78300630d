"""`madbench-data` check / prepare / synth."""

import shutil
import sys
import types

import numpy as np
import pytest

from madbench.data import check
from madbench.data.entity import Entity

from .conftest import write_merged, write_nasa, write_psm, write_smd


def _run(capsys, *argv):
    rc = check.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_ok_prints_table(capsys, data_dir):
    rc, out, err = _run(capsys, "check", "--dataset", "msl", "--root", str(data_dir / "NASA"))
    assert rc == 0 and "C-1" in out and "M-6" in out and "msl: 2 entities, 3 events" in out
    # the data dir above the dataset folder works too
    rc, out, _ = _run(capsys, "check", "--dataset", "smd", "--root", str(data_dir), "--window", "100")
    assert rc == 0 and "machine-1-10" in out


def test_check_failure_is_one_line_no_traceback(capsys, data_dir):
    (data_dir / "SMD" / "test_label" / "machine-2-1.txt").write_text("0\n1\n")
    rc, out, err = _run(capsys, "check", "--dataset", "smd", "--root", str(data_dir))
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: ") and "test_label/machine-2-1.txt" in lines[0]
    assert "2 labels" in lines[0] and "150 rows" in lines[0]


def _cut_nasa_test_file(data_dir, chan="M-6", n=140):
    path = data_dir / "NASA" / "test" / f"{chan}.npy"
    np.save(path, np.load(path)[:n])
    return path


def test_check_refuses_a_cut_short_nasa_test_file(capsys, data_dir):
    """Issue 10: the cut-short file used to pass `madbench-data check` (exit 0, a normal table)."""
    path = _cut_nasa_test_file(data_dir)
    rc, out, err = _run(capsys, "check", "--dataset", "msl", "--root", str(data_dir))
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err and "msl:" not in out
    assert lines[0].startswith(f"error: {path}: 140 rows, but {data_dir / 'NASA' / 'labeled_anomalies.csv'}")
    assert "num_values 150 for M-6" in lines[0]


def test_training_refuses_a_cut_short_nasa_test_file_before_training(data_dir, tmp_path):
    """The runner loads through the same loader: a failed row, the same line, nothing trained."""
    import pandas as pd

    from madbench import run
    from madbench.errors import DataError
    from tests.conftest import compose_cfg

    path = _cut_nasa_test_file(data_dir)
    cfg = compose_cfg(["dataset=msl", f"paths.data_dir={data_dir}", "dataset.window=20", "trainer.epochs=1",
                       "trainer.progress=false", "logger.csv.plots=false"], tiny=False)
    with pytest.raises(DataError) as info:
        run.main(cfg, tmp_path / "run")
    assert str(info.value).startswith(f"{path}: 140 rows") and "num_values 150" in str(info.value)
    res = pd.read_csv(tmp_path / "run" / "results.csv")
    assert (res.status == "failed").all() and "num_values 150" in res.error.iloc[0]
    assert not (tmp_path / "run" / "scores.npz").exists()
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 0  # not one epoch was trained


def test_check_window_too_long(capsys, data_dir):
    rc, _, err = _run(capsys, "check", "--dataset", "psm", "--root", str(data_dir), "--window", "500")
    assert rc == 1 and "PSM/train.csv" in err and "at least 500" in err


def test_check_warns_about_p2(capsys, data_dir):
    rc, out, err = _run(capsys, "check", "--dataset", "smap", "--root", str(data_dir), "--entities", "P-2,A-1")
    assert rc == 0 and "warning:" in err and "P-2" in out


def test_prepare_nasa(capsys, tmp_path):
    raw = tmp_path / "raw"
    write_nasa(raw / "telemanom" / "data")  # data/{train,test}, CSV beside them
    shutil.move(raw / "telemanom" / "data" / "labeled_anomalies.csv", raw / "labeled_anomalies.csv")
    out = tmp_path / "datasets" / "NASA"
    rc, text, _ = _run(capsys, "prepare", "--dataset", "msl", "--raw", str(raw), "--out", str(out))
    assert rc == 0 and (out / "train" / "C-1.npy").is_file() and (out / "labeled_anomalies.csv").is_file()
    assert "msl: 2 entities" in text


def test_prepare_smd_symlink(capsys, tmp_path):
    raw = tmp_path / "OmniAnomaly"
    write_smd(raw / "ServerMachineDataset")
    out = tmp_path / "SMD"
    rc, text, _ = _run(capsys, "prepare", "--dataset", "smd", "--raw", str(raw), "--out", str(out), "--symlink")
    assert rc == 0 and (out / "test" / "machine-1-10.txt.gz").is_symlink()
    assert (out / "interpretation_label" / "machine-1-2.txt").exists() and "smd: 3 entities" in text


def test_prepare_psm_and_merged(capsys, tmp_path):
    write_psm(tmp_path / "raw" / "PSM")
    rc, _, _ = _run(capsys, "prepare", "--dataset", "psm", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "P"))
    assert rc == 0 and (tmp_path / "P" / "PSM" / "test_label.csv").is_file()  # --out is the data dir
    write_merged(tmp_path / "raw2" / "dataset" / "SMAP", "SMAP", 25)
    rc, _, _ = _run(
        capsys, "prepare", "--dataset", "smap_merged", "--raw", str(tmp_path / "raw2"), "--out", str(tmp_path / "S")
    )
    assert rc == 0 and (tmp_path / "S" / "SMAP" / "SMAP_test_label.npy").is_file()


def test_prepare_missing_pieces(capsys, tmp_path):
    (tmp_path / "raw").mkdir()
    rc, _, err = _run(
        capsys, "prepare", "--dataset", "msl", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "o")
    )
    assert rc == 1 and "labeled_anomalies.csv" in err and "expected" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(
        capsys, "prepare", "--dataset", "psm", "--raw", str(tmp_path / "nope"), "--out", str(tmp_path / "o")
    )
    assert rc == 1 and "nope" in err


def _fake_synthetic(**kw):
    rng = np.random.default_rng(kw["seed"])
    out = []
    for k in range(kw["n_systems"]):
        cols = [f"s{i}" for i in range(kw["n_sensors"])] + [f"c{i}" for i in range(kw["n_covariates"])]
        y = np.zeros(kw["test_len"])
        y[150:160] = 1
        out.append(
            Entity(
                name=f"sys{k}",
                system=f"sys{k}",
                train=rng.normal(size=(kw["train_len"], len(cols))),
                test=rng.normal(size=(kw["test_len"], len(cols))),
                labels=y,
                columns=cols,
                sensors=cols[: kw["n_sensors"]],
                covariates=cols[kw["n_sensors"] :],
                meta={
                    "events": [{"start": 150, "end": 159, "kind": "spike", "sensors": ["s0"]}],
                    "groups": {"g0": {"weight": 1.0, "sensors": cols[: kw["n_sensors"]]}},
                },
            )
        )
    return out


def test_synth_with_a_fake_generator(capsys, tmp_path, monkeypatch):
    fake = types.ModuleType("madbench.data.synthetic")
    fake.load = _fake_synthetic
    monkeypatch.setitem(sys.modules, "madbench.data.synthetic", fake)
    import madbench.data as pkg

    monkeypatch.setattr(pkg, "synthetic", fake, raising=False)
    rc, out, _ = _run(
        capsys,
        "synth",
        "--out",
        str(tmp_path / "ms"),
        "--systems",
        "3",
        "--sensors",
        "2",
        "--covariates",
        "1",
        "--train-len",
        "200",
        "--test-len",
        "300",
        "--seed",
        "4",
    )
    assert rc == 0 and (tmp_path / "ms" / "systems" / "sys2" / "test.csv").is_file()
    assert "multisystem: 3 entities, 3 events" in out


def test_synth_with_the_real_generator(capsys, tmp_path):
    pytest.importorskip("madbench.data.synthetic")
    rc, out, err = _run(
        capsys,
        "synth",
        "--out",
        str(tmp_path / "ms"),
        "--systems",
        "2",
        "--sensors",
        "3",
        "--covariates",
        "1",
        "--train-len",
        "300",
        "--test-len",
        "400",
    )
    assert rc == 0, err
    assert "multisystem: 2 entities" in out


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    eps = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert eps.get("madbench-data") == "madbench.data.check:main"


# -- issue 16: --out as the README gives it, --entities, the data dir, constant sensors --------
def test_prepare_out_is_the_data_dir_training_reads(capsys, tmp_path):
    """README.md said `--out datasets`, datasets/README.md `--out datasets/NASA`: following the
    first, training with paths.data_dir=datasets failed on labeled_anomalies.csv. Both work."""
    from madbench import run
    from tests.conftest import compose_cfg

    write_nasa(tmp_path / "raw" / "data")
    data = tmp_path / "datasets"
    rc, _, err = _run(capsys, "prepare", "--dataset", "msl", "--raw", str(tmp_path / "raw"), "--out", str(data))
    assert rc == 0 and (data / "NASA" / "labeled_anomalies.csv").is_file()
    assert f"prepared msl in {data / 'NASA'} (train with paths.data_dir={data})" in err
    cfg = compose_cfg(["dataset=msl", "dataset.entities=[C-1]", f"paths.data_dir={data}"], tiny=False)
    (entity,) = run.load_entities(cfg)
    assert entity.name == "C-1"
    # the dataset's own folder as --out: the same place
    rc, _, _ = _run(capsys, "prepare", "--dataset", "msl", "--raw", str(tmp_path / "raw"), "--out", str(data / "NASA"))
    assert rc == 0 and not (data / "NASA" / "NASA").exists()


def test_prepare_links_only_the_entities_asked_for(capsys, tmp_path):
    write_smd(tmp_path / "raw" / "ServerMachineDataset")
    rc, out, _ = _run(capsys, "prepare", "--dataset", "smd", "--raw", str(tmp_path / "raw"), "--out",
                      str(tmp_path / "d"), "--entities", "machine-1-2", "--symlink")
    assert rc == 0 and "smd: 1 entities" in out
    for sub in ("train", "test", "test_label", "interpretation_label"):
        assert sorted(p.name for p in (tmp_path / "d" / "SMD" / sub).iterdir()) == ["machine-1-2.txt"], sub
    rc, _, err = _run(capsys, "prepare", "--dataset", "smd", "--raw", str(tmp_path / "raw"), "--out",
                      str(tmp_path / "e"), "--entities", "machine-9-9")
    assert rc == 1 and "no file for --entities machine-9-9" in err and len(err.strip().splitlines()) == 1


def test_check_names_the_dataset_folder_under_the_data_dir(capsys, tmp_path):
    """`check --dataset psm --root datasets` named datasets/train.csv, not datasets/PSM/..."""
    (tmp_path / "datasets").mkdir()
    rc, _, err = _run(capsys, "check", "--dataset", "psm", "--root", str(tmp_path / "datasets"))
    d = tmp_path / "datasets"
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert f"neither {d / 'test_label.csv'} nor {d / 'PSM' / 'test_label.csv'} exists" in err


def test_const_sensors_are_counted_not_named_value(capsys, data_dir):
    """A NASA channel's one sensor is called `value`: the column used to print just that."""
    path = data_dir / "NASA" / "train" / "C-1.npy"
    x = np.load(path)
    x[:, 0] = 0.5
    np.save(path, x)
    rc, out, _ = _run(capsys, "check", "--dataset", "msl", "--root", str(data_dir))
    row = next(ln for ln in out.splitlines() if "C-1" in ln)
    assert rc == 0 and " 1/1 " in row and "value" not in row
