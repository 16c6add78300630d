"""The run-dir format (madbench.rundir): one writer and one reader per file, inverses of
each other; old run dirs read through one migration path; files as the umask says."""
import os
import stat

import numpy as np
import pandas as pd
import pytest

from madbench import rescoring as E
from madbench import rundir
from madbench.errors import DataError
from madbench.scoring.base import SeriesScores
from tests.conftest import v1_run


def _entity(name, rng, residuals=True, factor=False):
    T, Ttr, S = 30, 40, 3
    test = SeriesScores(step=rng.random(T), residuals=rng.random((T, S)) if residuals else None,
                        window=rng.random(10), window_start=np.arange(10), factor=rng.random(T) if factor else None,
                        offsets=np.array([5]))
    train = SeriesScores(step=rng.random(Ttr), residuals=rng.random((Ttr, S)) if residuals else None,
                         window=np.zeros(0), window_start=np.zeros(0, dtype=np.int64),
                         factor=rng.random(Ttr) if factor else None)
    return rundir.StoredEntity(
        name=name, labels=(rng.random(T) > 0.8).astype(np.int8), sensors=["a", "b", "c"],
        val_mask=np.arange(Ttr) >= 30, train=train, test=test, score=rng.random(T), train_score=rng.random(Ttr),
        p=rng.random(T), flags=rng.random(T) > 0.9, sensor_p=rng.random((T, S)), status="uncalibrated",
        groups={"g": {"weight": 1.0, "sensors": ["a", "b"]}},
        extras={"interp_spans": np.array([[3, 6]]), "interp_sensors": np.array([[True, False, True]]),
                "attribution": rng.random((2, S)).astype(np.float32), "attribution_steps": np.array([4, 5]),
                "attribution_kind": "residual"})


def test_write_then_read_gives_back_every_field(tmp_path):
    rng = np.random.default_rng(0)
    # an entity name with the old format's separator in it is no problem: entities are indexed
    written = rundir.StoredScores(entities=[_entity("m__1", rng, factor=True), _entity("C-1", rng, residuals=False)],
                                  window=5, config_hash="abc")
    rundir.write_scores(tmp_path, written)
    read = rundir.read_scores(tmp_path)
    assert (read.window, read.config_hash, read.version) == (5, "abc", rundir.SCORES_VERSION)
    for a, b in zip(written.entities, read.entities):
        assert (a.name, a.sensors, a.status, a.groups) == (b.name, b.sensors, b.status, b.groups)
        for f in ("labels", "val_mask", "score", "train_score", "p", "flags"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        np.testing.assert_allclose(a.sensor_p, b.sensor_p, rtol=1e-6)  # kept as float32
        for split in ("train", "test"):
            sa, sb = getattr(a, split), getattr(b, split)
            np.testing.assert_array_equal(sa.step, sb.step)
            assert (sa.residuals is None) == (sb.residuals is None) and (sa.factor is None) == (sb.factor is None)
            if sa.residuals is not None:
                np.testing.assert_allclose(sa.residuals, sb.residuals, rtol=1e-6)
            if sa.factor is not None:
                np.testing.assert_array_equal(sa.factor, sb.factor)
        np.testing.assert_array_equal(a.test.window, b.test.window)
        assert b.test.offsets.tolist() == [5]
        assert set(a.extras) == set(b.extras) and b.extras["attribution_kind"] == "residual"
        np.testing.assert_array_equal(a.extras["interp_sensors"], b.extras["interp_sensors"])
    # what a protocol takes
    es = read.entity_scores()[0]
    assert es.name == "m__1" and es.window == 5 and es.status == "uncalibrated" and es.window_offsets.tolist() == [5]


def test_a_newer_format_is_refused_in_one_line(tmp_path):
    rundir.write_scores(tmp_path, rundir.StoredScores(entities=[_entity("x", np.random.default_rng(1))], window=5))
    arrays = dict(np.load(tmp_path / "scores.npz"))
    arrays["__meta__"] = np.array(str(arrays["__meta__"]).replace(f'"version": {rundir.SCORES_VERSION}', '"version": 99'))
    np.savez(tmp_path / "scores.npz", **arrays)
    with pytest.raises(DataError, match=r"scores\.npz: scores format version 99; this madbench reads up to 3"):
        rundir.read_scores(tmp_path)
    with pytest.raises(DataError, match="missing"):
        rundir.read_scores(tmp_path / "nope")


@pytest.mark.parametrize("name", ["lstm_m2ad", "deepsvdd_mc"])
def test_a_version_1_run_dir_reads_reevaluates_in_place_and_rescores(tmp_path, name):
    """A run dir written before the run-dir module (committed fixture) still works: its
    protocols re-evaluate in place to the very rows it holds, and it re-scores."""
    d = v1_run(tmp_path, name)
    old = pd.read_csv(d / "results.csv")
    stored = rundir.read_scores(d)
    assert [e.name for e in stored.entities] == ["sys0", "sys1"] and stored.window == 20
    assert all(e.extras.get("attribution_kind") for e in stored.entities)
    protocols = sorted(set(old.protocol))
    E.reevaluate(d, [f"protocol=[{','.join(protocols)}]"])
    new = pd.read_csv(d / "results.csv")
    key = ["protocol", "entity", "aggregate"]
    metrics = [c for c in rundir.RESULT_COLUMNS if c in old and old[c].dtype.kind == "f" and c != "total_seconds"]
    a = old.sort_values(key).reset_index(drop=True)[metrics]
    b = new.sort_values(key).reset_index(drop=True)[metrics]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    if name == "lstm_m2ad":
        out, df = E.rescore(d, ["scoring.calibration=chi2"])
        assert (df.status == "ok").all() and rundir.read_scores(out).version == rundir.SCORES_VERSION
    else:  # a head's factor came along: the v1 `head_factor`
        assert stored.entities[0].test.factor is not None
        out, df = E.rescore(d, ["protocol.madcluster.range_window=50"])
        assert (df.status == "ok").all()


def test_files_get_the_permissions_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        rundir.write_results(tmp_path, [{"entity": "ALL", "protocol": "strict", "status": "ok"}])
        rundir.write_scores(tmp_path, rundir.StoredScores(entities=[_entity("x", np.random.default_rng(2))], window=5))
        os.umask(0o077)
        rundir.write_train_log(tmp_path, [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "scores.npz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "train_log.csv").stat().st_mode) == 0o600


def test_counts_are_written_as_integers(tmp_path):
    rundir.write_results(tmp_path, [{"entity": "a", "n_train": 3000.0, "event_tp": 1.0, "f1": 0.5},
                                    {"entity": "ALL", "n_train": np.nan, "event_tp": 2.0, "f1": 0.25}])
    text = (tmp_path / "results.csv").read_text()
    assert ",3000," in text and ",3000.0," not in text and ",1.0," not in text and ",0.5," in text


def test_train_log_entities_read_back_as_the_text_they_were(tmp_path):
    """A re-scored run copies its source's train_log.csv through read_train_log: an entity
    named 007 or 1e5 came back as the numbers 7 and 100000.0 (where every entity looks like a
    number: machine ids, numbered systems)."""
    records = [{"entity": e, "epoch": 0, "train_loss": 1.0, "val_loss": 2.0, "seconds": 0.1}
               for e in ("007", "1e5")]
    rundir.write_train_log(tmp_path, records)
    back = rundir.read_train_log(tmp_path)
    assert [r["entity"] for r in back] == ["007", "1e5"]
    rundir.write_train_log(tmp_path / "again", back)
    assert (tmp_path / "again" / "train_log.csv").read_text() == (tmp_path / "train_log.csv").read_text()


def test_identifiers_read_back_as_the_text_they_were(tmp_path):
    """A run_id of decimal digits (0.35% of the 12-hex-digit ids), a config_hash that reads as
    a float, a system named 7: pandas parsed them as numbers, so a skipped job's rows (read
    back from the earlier run) no longer equalled that run's own."""
    from madbench.reports.base import load_results
    from madbench.tracking.collect import collect

    ids = {"run_id": "753653894810", "config_hash": "1234e5678901", "entity": "7"}
    written = rundir.write_results(tmp_path, [{**ids, "f1": 0.5}])
    back = rundir.read_results(tmp_path)
    assert {k: back[k].tolist() for k in ids} == {k: [v] for k, v in ids.items()}
    assert back.run_id.tolist() == written.run_id.tolist()
    collected, _ = collect(tmp_path, tmp_path / "collected.csv")
    for df in (collected, load_results(tmp_path / "collected.csv")):
        assert {k: df[k].tolist() for k in ids} == {k: [v] for k, v in ids.items()}
