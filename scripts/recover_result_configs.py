#!/usr/bin/env python
"""Recover the ``config.<key>`` columns of three committed result folders whose run dirs are
gone, from the commands that made them and the madbench commits that ran them.

``madbench-collect`` now writes each run's config into the collected CSV (``config.<key>``
columns, madbench.tracking.collect.config_columns), and the reports read config only from
there. Three folders were collected before that, from run dirs that no longer exist:

- ``results/madcluster_t2_cpu``: ``collected.csv`` (48 runs) and
  ``collected_dcdetector_reference_mode.csv`` (1 run);
- ``results/madcluster_t1_msl_cpu``: ``collected.csv`` (10 runs);
- ``results/m2ad_search_cpu``: ``collected.csv`` (4 trained runs and 88 re-scored variants).

For every run this script composes the config of its command (``commands/*.sh`` in the
folder, or the README's commands, kept here in ``SEARCH_COMMANDS``) with the code of the
commit that ran it, imported from a git worktree of that commit at run time (Hydra's compose
API on that commit's ``configs/``, the job's ``device_type`` recorded as the job did, and for
a re-scored variant that commit's ``madbench.rescoring.apply_overrides``), and keeps the
config only if that commit's ``config_hash`` equals the run's ``config_hash`` in the CSV.
A run without such a config stops the script: nothing unverified is written.

The verified configs are then written as the run dirs' ``config.yaml`` would have been (in a
temporary directory) and read back through the current madbench's own
``madbench.tracking.collect.config_columns`` (which migrates an old config with
``madbench.rundir.migrate_config``), so the columns have exactly the semantics of a fresh
``madbench-collect``. They are appended to each row of its run; every other cell is kept as
committed, byte for byte. The trivial floors (``--floors``, a ``madbench-collect`` of the
floor runs on all 27 MSL channels) are appended to the two MADCluster tables' CSVs, their
columns aligned by name and left empty where one side has none.

The input CSVs are read as committed at ``SOURCE_REV`` (before this recovery), so the
script can be re-run, and ``--check`` regenerates everything in memory and fails on any
difference from the files in the work tree.

Usage, from the repository root (the current madbench importable)::

    git worktree add --detach /tmp/old 9ab2bdc
    git worktree add --detach /tmp/old_ea84810 ea84810
    madbench-collect /work/runs/out/floors_msl --out /tmp/floors.csv   # once; then the committed copy
    PYTHONPATH=$PWD python scripts/recover_result_configs.py \\
        --old 9ab2bdc=/tmp/old --old ea84810=/tmp/old_ea84810 [--floors /tmp/floors.csv] [--check]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the commit whose CSVs (without config columns or floors) this recovery starts from
SOURCE_REV = "2512d40"
#: where the committed copy of the floors' collection lives (both MADCluster tables read it)
FLOORS_CSV = "results/madcluster_t2_cpu/floors_msl.csv"
#: the data dir the jobs ran with. Their commands say ``paths.data_dir=../shared/datasets``,
#: but no hash reproduces with that spelling and every one does with this absolute one (the
#: same directory, seen from /work/main): the path enters ``config_hash`` through
#: ``dataset.loader.root``, so the jobs were given the absolute path.
DATA_DIR_AS_RUN = "/work/shared/datasets"

#: the M2AD search's trained runs and re-scorings (results/m2ad_search_cpu/README.md,
#: "What ran"; the folder has no commands/), madbench at 9ab2bdc
_M2AD = ("madbench experiment=m2ad_table2 dataset={ds} seed=0 dataset.shard={shard}/2 {extra}"
         "paths.data_dir=../shared/datasets trainer.num_threads=1 logger.csv.plots=false "
         "hydra.run.dir=outputs/m2ad_search/runs/{ds}_s{shard}")
SEARCH_COMMANDS = {f"{ds}_s{shard}": _M2AD.format(ds=ds, shard=shard, extra="trainer.epochs=10 " if ds == "smap" else "")
                   for ds in ("msl", "smap") for shard in (0, 1)}
SEARCH_VARIANTS = [
    "protocol.m2ad.grouping=padding protocol.m2ad.padding=0,50,100,180,360 scoring.two_sided=false,true",
    "protocol.m2ad.grouping=forward protocol.m2ad.bridge=0,50,100,180,360 scoring.two_sided=false,true",
    "protocol.m2ad.grouping=none scoring.two_sided=false,true",
]


def _t2_commit(name: str) -> str:
    """The commit a madcluster_t2_cpu command ran at (its README, "Code"): seed 0 at ea84810,
    seeds 1 and 2 (commands 8x_s1/s2, 9x_s1/s2) at 9ab2bdc."""
    return "9ab2bdc" if name[:2] in ("80", "81", "82", "83", "84", "85", "90", "91") else "ea84810"


def folders() -> dict:
    """Per collected CSV: its jobs (id, command line, commit, re-score overrides) and whether
    the floors are appended."""
    t2 = REPO / "results/madcluster_t2_cpu/commands"
    t2_jobs = [(f.name, f.read_text(), _t2_commit(f.name), []) for f in sorted(t2.glob("*.sh"))
               if "_ref_" not in f.name]
    # DeepSVDD seed 0 is the shard-0 job of results/madcluster_t3_msl_cpu (README, "Sizes"), at ea84810
    t3 = REPO / "results/madcluster_t3_msl_cpu/commands"
    t2_jobs += [(f"t3/{f.name}", f.read_text(), "ea84810", []) for f in (t3 / "12_t3_madcluster.sh", t3 / "12_t3_none.sh")]
    ref = t2 / "13_dcdetector_ref_madcluster.sh"
    t1 = REPO / "results/madcluster_t1_msl_cpu/commands"
    return {
        "results/madcluster_t2_cpu/collected.csv": {"jobs": t2_jobs, "floors": True},
        "results/madcluster_t2_cpu/collected_dcdetector_reference_mode.csv": {
            "jobs": [(ref.name, ref.read_text(), "ea84810", [])], "floors": False},
        "results/madcluster_t1_msl_cpu/collected.csv": {
            "jobs": [(f.name, f.read_text(), "9ab2bdc", []) for f in sorted(t1.glob("*.sh"))], "floors": True},
        "results/m2ad_search_cpu/collected.csv": {
            "jobs": [(k, v, "9ab2bdc", SEARCH_VARIANTS) for k, v in SEARCH_COMMANDS.items()], "floors": False},
    }


# -- the old side: run with PYTHONPATH=<worktree of the producing commit> ---------------------------
def compose_old(jobs: list[dict]) -> dict:
    """Each job's config as its commit composed and hashed it (this process imports the old
    madbench), with its re-scored variants. Returns {job id: {hash, yaml, variants}}."""
    import madbench
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from madbench.config import config_hash
    from madbench.rescoring import _computes_the_same, _slug, apply_overrides, expand

    config_dir = str(Path(madbench.__file__).resolve().parents[1] / "configs")
    out = {}
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        composed = {}
        for job in jobs:
            argv = shlex.split(job["command"])
            if argv[0] != "madbench":
                raise SystemExit(f"{job['id']}: not a madbench command: {job['command']!r}")
            # hydra.* (the run dir) is not part of the job's config; the data dir as it ran
            overrides = [a for a in argv[1:] if not a.startswith("hydra.")] + [f"paths.data_dir={DATA_DIR_AS_RUN}"]
            cfg = compose("config", overrides=overrides)
            # madbench.run.record_device_type: the job recorded the device it trained on (these
            # ran on this machine's CPU, trainer.device=auto) before hashing and saving its config
            with open_dict(cfg):
                cfg.device_type = "cpu"
            composed[job["id"]] = cfg
    for job in jobs:
        cfg = composed[job["id"]]
        # what the run dir's config.yaml held (madbench.run.main saves it unresolved)
        text = OmegaConf.to_yaml(cfg, resolve=False)
        parent = OmegaConf.create(text)
        variants = []
        for line in job["variants"]:
            for combo in expand(shlex.split(line)):
                # madbench.rescoring.rescore: the variant's config and hash, skipped when it computes the same
                v = apply_overrides(parent, combo)
                with open_dict(v):
                    v.pop("rescore", None)
                    v["rescored_from"] = job["run_dir"]
                h = config_hash(v)
                if h == config_hash(parent) or _computes_the_same(v, parent):
                    continue
                variants.append({"overrides": combo, "dir": _slug(combo, h), "hash": h,
                                 "yaml": OmegaConf.to_yaml(v, resolve=False)})
        out[job["id"]] = {"hash": config_hash(cfg), "yaml": text, "variants": variants}
    return out


def run_old(worktree: str, jobs: list[dict]) -> dict:
    """``compose_old`` in a child process that imports the old madbench from ``worktree``."""
    env = dict(os.environ, PYTHONPATH=str(Path(worktree).resolve()))
    proc = subprocess.run([sys.executable, __file__, "_compose_old"], input=json.dumps(jobs), env=env,
                          capture_output=True, text=True, cwd=worktree)
    if proc.returncode:
        raise SystemExit(f"composing with {worktree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


# -- the new side: the current madbench ------------------------------------------------------------
def read_source(path: str) -> tuple[list[str], list[list[str]]]:
    """The committed CSV at SOURCE_REV: header and rows, as text cells."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{SOURCE_REV}:{path}"], check=True, capture_output=True,
                          text=True).stdout
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if _write([rows[0]], rows[1:]) != text:  # the cells are rewritten as they were read
        raise SystemExit(f"{path}: the csv module does not write it back byte for byte")
    if any(c.startswith("config.") for c in rows[0]):
        raise SystemExit(f"{path} at {SOURCE_REV} already has config columns")
    return rows[0], rows[1:]


def _write(header: list[list[str]], rows: list[list[str]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(header + rows)
    return buf.getvalue()


def verify(path: str, header: list[str], rows: list[list[str]], jobs, composed: dict) -> dict:
    """{run dir in the CSV: its verified config.yaml text}, every run's config_hash matched
    by the config of one of ``jobs`` (or one of their re-scored variants, under that job's
    run dir's ``rescored/`` with the slug the old code gives it)."""
    i_dir, i_hash = header.index("run_dir"), header.index("config_hash")
    runs = {}
    for r in rows:
        runs.setdefault(r[i_dir], set()).add(r[i_hash])
    by_hash, where = {}, {}
    for job_id, _, _, _ in jobs:
        c = composed[job_id]
        by_hash[c["hash"]] = c["yaml"]
        where[c["hash"]] = job_id
        for v in c["variants"]:
            by_hash[v["hash"]] = v["yaml"]
            where[v["hash"]] = f"{job_id}: madbench-eval --variants {' '.join(v['overrides'])} -> rescored/{v['dir']}"
            where[v["hash"], "dir"] = v["dir"]
    out, bad = {}, []
    taken = {next(iter(hs)) for hs in runs.values()}
    for run_dir, hashes in runs.items():
        if len(hashes) != 1:
            bad.append(f"{run_dir}: {len(hashes)} config hashes")
            continue
        (h,) = hashes
        c, note = h, ""
        if h not in by_hash:
            # the old madbench-collect read each results.csv with pandas' type guessing: a hash
            # of digits only lost its leading zeros ('035294953101' -> '35294953101'), one of
            # digits around an 'e' became a float ('613e98324769' -> 'inf'), and was written so
            cands = [k for k in by_hash if k not in taken and _as_old_collect_wrote(k) == h]
            if len(cands) != 1:
                bad.append(f"{run_dir}: config_hash {h} matches no command's config"
                           + (f" ({len(cands)} are written as {h})" if cands else ""))
                continue
            (c,) = cands
            # a number keeps every digit of the hash but the leading zeros; inf keeps its form only
            note = f" (written {h}{'; verified to its form only' if h == 'inf' else ''})"
        if (c, "dir") in where and Path(run_dir).name != where[c, "dir"]:
            bad.append(f"{run_dir}: its hash is the variant {where[c, 'dir']}, another dir name")
            continue
        out[run_dir] = by_hash[c]
        print(f"  {c}{note} = {where[c]}")
    if bad:
        raise SystemExit(f"{path}: {len(bad)} run(s) not verified:\n  " + "\n  ".join(bad))
    print(f"{path}: all {len(out)} runs' config_hash reproduced")
    return out


def _as_old_collect_wrote(h: str) -> str:
    """A config_hash cell as the old madbench-collect wrote it: one results.csv read by
    pandas (a column of one value, its type guessed), concatenated with others, written."""
    import pandas as pd

    v = pd.read_csv(io.StringIO(f"config_hash\n{h}\n"))["config_hash"].iloc[0]
    text = pd.DataFrame({"config_hash": [v, "abcdef012345"]}).to_csv(index=False, lineterminator="\n")
    return text.splitlines()[1]


def config_cells(run_dirs: list[str], configs: dict) -> tuple[list[str], list[list[str]]]:
    """The current madbench's config columns (madbench-collect's) for ``run_dirs`` (one per
    row), as the text cells pandas writes: the verified configs saved as run dirs' config.yaml
    and read back by ``config_columns``."""
    import pandas as pd

    from madbench.tracking.collect import config_columns

    with tempfile.TemporaryDirectory() as tmp:
        tmp_of = {}
        for i, d in enumerate(configs):
            p = Path(tmp) / str(i)
            p.mkdir()
            (p / "config.yaml").write_text(configs[d])
            tmp_of[d] = str(p)
        cols = config_columns(list(tmp_of.values()))
    cols.index = [d for d in configs]  # tmp dirs were made in this order
    frame = pd.DataFrame({"run_dir": run_dirs}).join(cols, on="run_dir").drop(columns="run_dir")
    text = frame.to_csv(index=False, lineterminator="\n")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    return parsed[0], parsed[1:]


def append_floors(header: list[str], rows: list[list[str]], floors: Path) -> tuple[list[str], list[list[str]]]:
    """``rows`` with the floors' rows after them; columns aligned by name (results columns
    first, then the config columns, sorted), a cell one side lacks left empty."""
    with open(floors, newline="") as f:
        fl = list(csv.reader(f))
    fh, frows = fl[0], fl[1:]
    plain = [c for c in header if not c.startswith("config.")] + [c for c in fh if not c.startswith("config.")
                                                                 and c not in header]
    conf = sorted({c for c in header + fh if c.startswith("config.")})
    new = plain + conf

    def align(h, rs):
        idx = {c: i for i, c in enumerate(h)}
        return [[r[idx[c]] if c in idx else "" for c in new] for r in rs]

    return new, align(header, rows) + align(fh, frows)


def build(path: str, spec: dict, composed: dict, floors: Path | None) -> str:
    header, rows = read_source(path)
    configs = verify(path, header, rows, spec["jobs"], composed)
    i_dir = header.index("run_dir")
    ch, cells = config_cells([r[i_dir] for r in rows], configs)
    header, rows = header + ch, [r + c for r, c in zip(rows, cells)]
    if spec["floors"] and floors is not None:
        header, rows = append_floors(header, rows, floors)
    return _write([header], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", action="append", required=True, metavar="REV=WORKTREE",
                   help="a git worktree of a producing commit (9ab2bdc, ea84810)")
    p.add_argument("--floors", type=Path, default=None,
                   help=f"the floors' madbench-collect CSV (copied to {FLOORS_CSV}; default: that copy)")
    p.add_argument("--check", action="store_true", help="regenerate in memory and fail on any difference")
    args = p.parse_args(argv)
    trees = dict(o.split("=", 1) for o in args.old)
    floors = args.floors or REPO / FLOORS_CSV
    specs = folders()
    jobs_by_rev: dict[str, list[dict]] = {}
    for spec in specs.values():
        for job_id, command, rev, variants in spec["jobs"]:
            run_dir = "/work/" + next(a.split("=", 1)[1] for a in shlex.split(command) if a.startswith("hydra.run.dir="))
            jobs_by_rev.setdefault(rev, []).append({"id": job_id, "command": command, "variants": variants,
                                                    "run_dir": run_dir})
    composed = {}
    for rev, jobs in jobs_by_rev.items():
        if rev not in trees:
            raise SystemExit(f"--old {rev}=WORKTREE is needed (git worktree add --detach /tmp/old_{rev} {rev})")
        head = subprocess.run(["git", "-C", trees[rev], "rev-parse", "--short=7", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        if not rev.startswith(head) and not head.startswith(rev):
            raise SystemExit(f"--old {rev}={trees[rev]}: that worktree is at {head}")
        composed.update(run_old(trees[rev], jobs))
    outputs = {path: build(path, spec, composed, floors if spec["floors"] else None) for path, spec in specs.items()}
    outputs[FLOORS_CSV] = floors.read_text()
    changed = [path for path, text in outputs.items()
               if not (REPO / path).exists() or (REPO / path).read_text() != text]
    if args.check:
        if changed:
            raise SystemExit(f"differs from the recovery: {', '.join(changed)}")
        print("every recovered CSV is as committed")
        return 0
    for path in changed:
        (REPO / path).write_text(outputs[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["_compose_old"]:
        print(json.dumps(compose_old(json.loads(sys.stdin.read()))))
    else:
        sys.exit(main())
