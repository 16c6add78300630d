"""The collector: de-duplication, skipped.json pointers, find_ok_run, and many writers at once."""
import json
import multiprocessing as mp
from pathlib import Path

import pandas as pd

from madbench import rundir as tcsv
from madbench.tracking.collect import KEY, collect, dedup, find_ok_run, skipped_targets


def rows(run_id, hash_, status="ok", t="2026-01-01T00:00:00.000001+00:00", protocols=("strict",), entities=("e0",)):
    """A job's rows as run.py writes them: ok = entity rows + ALL rows; failed = one ALL row per protocol."""
    base = {"run_id": run_id, "config_hash": hash_, "seed": 0, "dataset": "synthetic", "backbone": "lstm",
            "objective": "forecast", "scoring": "raw", "status": status, "finished_at": t,
            "error": "" if status == "ok" else "boom"}
    if status != "ok":
        return [base | {"entity": "ALL", "aggregate": "", "protocol": p} for p in protocols]
    out = []
    for p in protocols:
        out += [base | {"entity": e, "aggregate": "", "protocol": p, "f1": 0.5} for e in entities]
        aggs = ("micro", "macro") if p == "strict" else ("mean",)
        out += [base | {"entity": "ALL", "aggregate": a, "protocol": p, "f1": 0.5} for a in aggs]
    return out


def write(root: Path, name: str, rs) -> Path:
    d = root / name
    tcsv.write_results(d, rs)
    return d


def test_newest_ok_wins_and_failed_rows_go_once_a_retry_succeeds(tmp_path):
    write(tmp_path, "s1/0", rows("a", "h1", t="2026-01-01T00:00:01+00:00"))
    write(tmp_path, "s1/1", rows("b", "h2", "failed", t="2026-01-01T00:00:02+00:00"))
    write(tmp_path, "s2/0", rows("c", "h1", t="2026-01-01T00:00:03+00:00"))  # a newer ok run of h1
    write(tmp_path, "s2/1", rows("d", "h2", t="2026-01-01T00:00:04+00:00"))  # h2 retried: ok
    write(tmp_path, "s3/0", rows("e", "h1", "failed", t="2026-01-01T00:00:05+00:00"))  # newer, but failed
    df, out = collect(tmp_path)
    assert out == tmp_path / "collected.csv" and out.exists()
    assert set(df.run_id) == {"c", "d"} and (df.status == "ok").all()
    assert len(df) == 2 * 3 and not df.duplicated(KEY).any()
    assert pd.read_csv(out).run_id.nunique() == 2


def test_a_config_that_only_failed_keeps_its_newest_failure(tmp_path):
    write(tmp_path, "0", rows("a", "h1", "failed", t="2026-01-01T00:00:01+00:00"))
    write(tmp_path, "1", rows("b", "h1", "failed", t="2026-01-01T00:00:02+00:00"))
    df, _ = collect(tmp_path)
    assert df.run_id.tolist() == ["b"] and df.status.tolist() == ["failed"]


def test_rows_only_an_older_run_has_are_kept(tmp_path):
    # madbench-eval added the tslib protocol to the older run only
    write(tmp_path, "0", rows("a", "h1", t="2026-01-01T00:00:01+00:00", protocols=("strict", "tslib")))
    write(tmp_path, "1", rows("b", "h1", t="2026-01-01T00:00:02+00:00"))
    df = dedup(pd.concat([pd.read_csv(tmp_path / d / "results.csv") for d in "01"]))
    assert set(df[df.protocol == "strict"].run_id) == {"b"} and set(df[df.protocol == "tslib"].run_id) == {"a"}


def test_skipped_jobs_point_at_the_run_that_holds_their_result(tmp_path):
    done = write(tmp_path / "multirun", "old/0", rows("a", "h1"))
    sweep = tmp_path / "multirun" / "new"
    write(sweep, "1", rows("b", "h2"))
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "skipped.json").write_text(json.dumps({"config_hash": "h1", "done_in": str(done.resolve())}))
    (sweep / "2").mkdir()
    (sweep / "2" / "skipped.json").write_text(json.dumps({"config_hash": "h9", "done_in": str(tmp_path / "gone")}))
    assert skipped_targets(sweep) == [done.resolve()]
    df, _ = collect(sweep)
    assert set(df.run_id) == {"a", "b"} and not df.duplicated(KEY).any()
    df, _ = collect(tmp_path)  # the target is also found directly: still once
    assert set(df.run_id) == {"a", "b"} and not df.duplicated(KEY).any()


def test_a_skipped_job_brings_the_variants_re_scored_from_its_run(tmp_path):
    done = write(tmp_path / "multirun", "old/0", rows("a", "h1"))
    write(done / "rescored", "calibration-chi2-abc123", rows("v", "h1v"))
    sweep = tmp_path / "multirun" / "new"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "skipped.json").write_text(json.dumps({"config_hash": "h1", "done_in": str(done.resolve())}))
    df, _ = collect(sweep)
    assert set(df.run_id) == {"a", "v"} and not df.duplicated(KEY).any()


def test_find_ok_run(tmp_path):
    write(tmp_path, "failed", rows("a", "h1", "failed", t="2026-01-01T00:00:09+00:00"))
    old = write(tmp_path, "old", rows("b", "h1", t="2026-01-01T00:00:01+00:00"))
    new = write(tmp_path, "new", rows("c", "h1", t="2026-01-01T00:00:02+00:00"))
    write(tmp_path, "other", rows("d", "h2"))
    (tmp_path / "killed" / ".hydra").mkdir(parents=True)  # started, never finished
    (tmp_path / "killed" / ".results.csv.ab12.tmp").write_text("run_id,config_hash\nx,h1")
    assert find_ok_run(tmp_path, "h1") == new
    assert find_ok_run(tmp_path, "h1", exclude=new) == old
    assert find_ok_run(tmp_path, "h3") is None
    assert find_ok_run(tmp_path / "killed", "h1") is None


def _writer(args):
    """One job: a complete results.csv, then a rewrite that stops half-way until the collector
    has looked (``go``), then more rewrites, like finalize after madbench-eval."""
    root, i, held, go = args
    rs = lambda k: rows(f"r{i}", f"h{i}", t=f"2026-01-01T00:00:{k:02d}+00:00", protocols=("strict", "m2ad"),
                        entities=("e0", "e1", "e2"))
    write(Path(root), f"job{i}", rs(0))
    text = tcsv.results_frame(rs(1)).to_csv(index=False)

    def slow(path):
        with open(path, "w") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            held.put(i)
            go.wait(60)
            f.write(text[len(text) // 2:])

    tcsv.atomic_write(Path(root) / f"job{i}" / "results.csv", slow)
    for k in range(2, 5):
        write(Path(root), f"job{i}", rs(k))
    return i


def _check(df, runs):
    """Every run the collector sees is whole: 3 entities × 2 protocols + 3 ALL rows, all ok."""
    assert set(df.run_id) == runs and set(df.status) == {"ok"}
    assert df.groupby("run_id").size().eq(3 * 2 + 2 + 1).all()


def test_collect_while_many_jobs_write(tmp_path):
    n, workers = 16, 4
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(workers) as pool:
        held, go = manager.Queue(), manager.Event()
        pending = pool.map_async(_writer, [(str(tmp_path), i, held, go) for i in range(n)])
        # every worker is now inside a write, half of its file on disk: the collector must see
        # each of these jobs' last complete results.csv, never the half-written one
        busy = {held.get(timeout=60) for _ in range(workers)}
        _check(collect(tmp_path)[0], {f"r{i}" for i in busy})
        go.set()
        while not pending.ready():  # and it keeps racing the writers until they finish
            df, _ = collect(tmp_path)
            _check(df, set(df.run_id))
        assert sorted(pending.get()) == list(range(n))
    df, _ = collect(tmp_path)
    _check(df, {f"r{i}" for i in range(n)})
    assert not df.duplicated(KEY).any() and not list(tmp_path.rglob("*.tmp"))
