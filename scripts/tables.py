"""Regenerate every committed table from the committed files alone (``make tables``).

Every ``madbench-tables TABLE results/...`` command written in a ``results/*/README.md`` is
run again, into a temporary directory, and each file it writes is compared with the
committed file of the same name in the command's ``--out`` directory (default: beside
RESULTS, as ``madbench-tables`` does).

    python scripts/tables.py            # check: exit 1 naming every file that differs
    python scripts/tables.py --write    # rewrite the committed tables in place
    python scripts/tables.py --list     # the commands found, one per line

A README command whose RESULTS is not a committed path under ``results/`` (e.g.
``outputs/multirun/<sweep>``, run dirs that were never committed) cannot regenerate
anything from a fresh clone: it is an error, so every published table stays re-derivable.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^\s*(?:\$\s*)?(madbench-tables\s+.*?)\s*(?:`|$)")


@dataclass
class Command:
    readme: Path
    line: int
    argv: list[str]

    @property
    def results(self) -> str:
        return self.argv[1] if len(self.argv) > 1 else ""

    @property
    def out(self) -> Path:
        if "--out" in self.argv:
            return ROOT / self.argv[self.argv.index("--out") + 1]
        res = ROOT / self.results
        return res if res.is_dir() else res.parent

    def with_out(self, out: Path) -> list[str]:
        argv = list(self.argv)
        if "--out" in argv:
            argv[argv.index("--out") + 1] = str(out)
        else:
            argv += ["--out", str(out)]
        return [argv[0], str(ROOT / argv[1]), *argv[2:]]

    def __str__(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}: madbench-tables {shlex.join(self.argv)}"


def commands(root: Path = ROOT) -> list[Command]:
    """The ``madbench-tables`` commands of every results README, in file order."""
    found = []
    for readme in sorted((root / "results").glob("*/README.md")):
        for i, text in enumerate(readme.read_text().splitlines(), 1):
            m = COMMAND.match(text)
            if m:
                argv = shlex.split(m.group(1))[1:]
                found.append(Command(readme, i, argv))
    return found


def render(cmd: Command, out: Path) -> None:
    from madbench.reports import main

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(cmd.with_out(out))
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"{cmd}: exited {e.code}") from None


def check(cmds: list[Command], write: bool = False) -> list[str]:
    """Run each command; the problems found (an empty list when every table regenerates)."""
    problems = []
    for cmd in cmds:
        res = ROOT / cmd.results
        if not cmd.results.startswith("results/") or not res.exists():
            problems.append(f"{cmd}: RESULTS is not a committed file under results/; a fresh clone cannot "
                            f"regenerate this table")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            try:
                render(cmd, out)
            except Exception as e:  # a table that no longer renders is a finding, not a crash
                problems.append(f"{cmd}: {type(e).__name__}: {e}")
                continue
            written = sorted(p for p in out.rglob("*") if p.is_file())
            if not written:
                problems.append(f"{cmd}: wrote nothing")
            for new in written:
                old = cmd.out / new.relative_to(out)
                if write:
                    old.parent.mkdir(parents=True, exist_ok=True)
                    old.write_bytes(new.read_bytes())
                elif not old.exists():
                    problems.append(f"{cmd}: {old.relative_to(ROOT)} is not committed")
                elif old.read_bytes() != new.read_bytes():
                    problems.append(f"{cmd}: {old.relative_to(ROOT)} differs from what the command writes")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the committed tables in place")
    ap.add_argument("--list", action="store_true", help="print the commands found and exit")
    args = ap.parse_args(argv)
    cmds = commands()
    if args.list:
        print("\n".join(str(c) for c in cmds))
        return 0
    try:
        from tqdm import tqdm
        cmds_iter = tqdm(cmds, desc="tables", unit="command", disable=not sys.stderr.isatty())
    except ImportError:  # pragma: no cover
        cmds_iter = cmds
    problems = check(list(cmds_iter), write=args.write)
    for p in problems:
        print(p, file=sys.stderr)
    verb = "rewritten" if args.write else "regenerated identically"
    print(f"{len(cmds)} madbench-tables commands in results/*/README.md: "
          + (f"{len(problems)} problem(s)" if problems else f"all {verb}"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
