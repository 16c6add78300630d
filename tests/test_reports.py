"""Reports render from committed files alone: collected CSVs carry the config columns their
tables read, no command replaces a table with fewer rows (or an empty one) without saying
so, and every row is read against the trivial floor."""
import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from madbench import reports, run
from madbench.errors import DataError
from madbench.reports import floors as F
from madbench.rundir import results_frame
from madbench.tracking.collect import collect, collect_frame
from tests.conftest import compose_cfg, script



def table(name, df, **args):
    return reports.REPORTS[name].compute(df, argparse.Namespace(**args))


@pytest.fixture(scope="module")
def pair_sweep(tmp_path_factory):
    """Four tiny runs: head none / madcluster × trainer.num_threads 1 / auto (runtime: they
    pair), and a deviation baseline: the floor."""
    root = tmp_path_factory.mktemp("sweep")
    common = ["backbone=deepsvdd", "dataset.n_systems=3", "trainer.epochs=1", "protocol=[madcluster,strict]"]
    run.main(compose_cfg(common + ["head=none", "trainer.num_threads=1"]), root / "none")
    run.main(compose_cfg(common + ["head=madcluster"]), root / "mc")
    run.main(compose_cfg(["backbone=deviation", "dataset.n_systems=3", "protocol=[madcluster,strict]"]),
             root / "floor")
    return root


def test_a_collected_csv_carries_the_config_its_tables_read_and_pairs_without_its_run_dirs(pair_sweep, tmp_path):
    df, out = collect(pair_sweep, tmp_path / "collected.csv")
    # keys that differ between the runs, and the keys reports read by name, whether or not they differ
    assert {"config.head.name", "config.backbone.name", "config.head.k", "config.seed"} <= set(df.columns)
    assert "config.trainer.num_threads" not in df  # runtime: never a config column
    assert "config.dataset.n_systems" not in df    # the same in every run, and no report reads it
    # the CSV alone: the run dirs are gone
    shutil.rmtree(pair_sweep.parent / "moved", ignore_errors=True)
    moved = pair_sweep.parent / "moved"
    shutil.copytree(pair_sweep, moved)
    shutil.rmtree(pair_sweep)
    try:
        csv = pd.read_csv(out)
        t = reports.pairs.paired_table(csv[csv.backbone == "deepsvdd"], "head", "none", "madcluster")
        assert t.entities.iloc[0] == 3  # num_threads=1 and auto paired
        t2 = table("madcluster_t2", csv, metric="f1").iloc[0]
        assert t2.floor.startswith("deviation") and t2.clears_floor_none in ("yes", "below", "not shown")
    finally:
        shutil.copytree(moved, pair_sweep)


def test_rendering_a_folder_without_runs_writes_nothing_and_says_so(tmp_path):
    """`madbench-tables madcluster_t2 .` inside a results folder used to collect the folder as
    run dirs, find none, and overwrite its collected.csv (1,008 rows) with a header-only file."""
    folder = tmp_path / "results" / "madcluster_t2_cpu"
    folder.mkdir(parents=True)
    committed = results_frame([{"run_id": f"r{i}", "entity": "ALL", "protocol": "madcluster", "status": "ok"}
                               for i in range(5)])
    committed.to_csv(folder / "collected.csv", index=False)
    before = (folder / "collected.csv").read_bytes()
    p = script("madbench-tables", "madcluster_t2", ".", cwd=folder)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("madbench-tables: error: .: no run dir (results.csv) below it")
    assert (folder / "collected.csv").read_bytes() == before
    assert sorted(f.name for f in folder.iterdir()) == ["collected.csv"]


def test_collect_never_replaces_more_rows_with_fewer_unless_forced(tmp_path, pair_sweep):
    out = tmp_path / "collected.csv"
    df, _ = collect(pair_sweep, out)
    n = len(df)
    few = tmp_path / "few"
    shutil.copytree(pair_sweep / "none", few / "none")
    with pytest.raises(DataError, match=rf"collected\.csv: holds {n} rows and would be replaced by \d+; nothing "
                                        r"written \(--force replaces it"):
        collect(few, out)
    assert len(pd.read_csv(out)) == n
    p = script("madbench-collect", str(few), "--out", str(out))
    assert p.returncode == 1 and "--force" in p.stderr and len(pd.read_csv(out)) == n
    collect(few, out, force=True)
    assert len(pd.read_csv(out)) < n
    with pytest.raises(DataError, match="empty_dir_made_below: not a directory"):
        collect_frame(tmp_path / "empty_dir_made_below")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no run dir"):
        collect(tmp_path / "empty")
    assert not (tmp_path / "empty" / "collected.csv").exists()


def _mc_rows(name, backbone, values, baseline=False, seed=0):
    """madcluster-protocol entity rows + an ALL row for one run."""
    out = []
    for e, v in values.items():
        out.append(dict(run_id=f"{name}{seed}", name=name, dataset="msl", backbone=backbone, head="none",
                        scoring="raw", seed=seed, status="ok", protocol="madcluster", entity=e, f1=v,
                        **{"config.backbone.baseline": baseline, "config.seed": seed}))
    out.append(out[-1] | dict(entity="ALL", aggregate="mean", f1=float(np.mean(list(values.values()))),
                              n_entities=len(values)))
    return out


def test_the_floor_is_the_best_baseline_on_the_same_entities_and_the_verdict_rule_decides():
    ents = [f"c{i}" for i in range(8)]
    rows = (_mc_rows("constant", "constant", {e: 0.3 for e in ents}, baseline=True)
            + _mc_rows("deviation", "deviation", {e: 0.5 + 0.01 * i for i, e in enumerate(ents)}, baseline=True)
            # a baseline run on fewer entities cannot be the floor of a row on all of them
            + _mc_rows("random", "random", {e: 0.99 for e in ents[:3]}, baseline=True)
            + _mc_rows("good", "lstm", {e: 0.7 + 0.01 * i for i, e in enumerate(ents)})
            + _mc_rows("bad", "usad", {e: 0.2 for e in ents}))
    df = results_frame(rows)
    ent = df[df.entity != "ALL"]
    floor = F.best_floor(ent, "msl", "madcluster", ents, "f1")
    assert floor.label == "deviation" and floor.mean == pytest.approx(np.mean([0.5 + 0.01 * i for i in range(8)]))
    good = F.against_floor(F.entity_values(ent[ent.name == "good"], "f1"), floor)
    assert good["clears_floor"] == "yes" and good["vs_floor"] == pytest.approx(0.2)
    bad = F.against_floor(F.entity_values(ent[ent.name == "bad"], "f1"), floor)
    assert bad["clears_floor"] == "below"
    # on the three entities the random run covers, it is the floor
    assert F.best_floor(ent, "msl", "madcluster", ents[:3], "f1").label == "random"
    g = table("grid", df, metric=None).set_index("backbone")
    assert g.loc["lstm", "clears_floor"] == "yes" and g.loc["usad", "clears_floor"] == "below"
    assert g.loc["constant", "clears_floor"] == "(a floor)"


def test_two_configs_of_one_baseline_are_two_named_floor_rows():
    """T3 showed `floor: deviation` over 54 entities: the mean and the range configs of the
    deviation baseline were one row. Each baseline config is its own row, named by what
    tells it apart, as the floor column names it."""
    ents = ["c0", "c1"]
    mean = _mc_rows("dev_mean", "deviation", {e: 0.5 for e in ents}, baseline=True)
    rng = _mc_rows("dev_range", "deviation", {e: 0.6 for e in ents}, baseline=True)
    for r in mean:
        r["config.backbone.model.kind"] = "mean"
    for r in rng:
        r["config.backbone.model.kind"] = "range"
    df = results_frame(mean + rng + _mc_rows("constant", "constant", {e: 0.3 for e in ents}, baseline=True)
                       + _mc_rows("model", "lstm", {e: 0.4 for e in ents}))
    names = F.baseline_names(df)
    assert set(names) == {"deviation (kind=mean)", "deviation (kind=range)", "constant"}
    assert names.index.equals(df.index[F.is_baseline(df)])
    assert F.best_floor(df, "msl", "madcluster", ents, "f1").label == "deviation (kind=range)"


def test_madcluster_t2_shows_each_floor_as_a_row_on_the_method_rows_entities():
    """Issue 24: the floors are rows of the T2 view, not only a column; a floor is read on
    the entities the method rows cover (here 2 of its 3)."""
    ents = ["c0", "c1"]
    rows = []
    for head, v in (("none", 0.4), ("madcluster", 0.45)):
        for r in _mc_rows(f"lstm_{head}", "lstm", {e: v for e in ents}):
            rows.append(r | {"head": head})
    rows += _mc_rows("constant", "constant", {"c0": 0.3, "c1": 0.2, "c2": 0.9}, baseline=True)
    rows += _mc_rows("random", "random", {"c0": 0.3}, baseline=True)   # does not cover c1: no row
    rows = [r | {"config.head.name": r["head"]} for r in rows]
    t = table("madcluster_t2", results_frame(rows), metric="f1").set_index("backbone")
    assert "floor: constant" in t.index and "floor: random" not in t.index
    assert t.loc["floor: constant", "f1_none"] == pytest.approx(0.25)
    assert t.loc["floor: constant", "verdict"] == "(a floor)"
    assert t.loc["lstm", "floor"] == "constant"
