"""Every committed table regenerates from the committed files alone (issue 26): the
``madbench-tables`` commands written in ``results/*/README.md`` are run again
(``scripts/tables.py``, ``make tables``) and must write what is committed, byte for byte."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tables_script", ROOT / "scripts" / "tables.py")
tables = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = tables  # dataclasses look their module up
spec.loader.exec_module(tables)

pytestmark = pytest.mark.xdist_group("results_tables")


def test_every_results_folder_with_a_table_says_how_to_regenerate_it():
    cmds = tables.commands()
    with_cmd = {c.readme.parent.name for c in cmds}
    rendered = {p.parent.name for p in (ROOT / "results").glob("*/*.md") if p.name != "README.md"}
    assert rendered - with_cmd == set(), "results folders with tables but no madbench-tables command"
    assert all(c.results.startswith("results/") for c in cmds), [str(c) for c in cmds]


@pytest.mark.slow
def test_every_readme_table_command_regenerates_the_committed_files():
    problems = tables.check(tables.commands())
    assert problems == [], "\n".join(problems)


def test_a_table_that_differs_is_named(tmp_path, monkeypatch):
    """The check can fail: a committed table edited by hand is reported by name."""
    import shutil

    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    shutil.copytree(ROOT / "results" / "m2ad_search_cpu", root / "results" / "m2ad_search_cpu")
    md = root / "results" / "m2ad_search_cpu" / "m2ad_search.md"
    md.write_text(md.read_text().replace("0.", "9.", 1))
    monkeypatch.setattr(tables, "ROOT", root)
    problems = tables.check(tables.commands(root))
    assert any("m2ad_search.md differs" in p for p in problems), problems
    assert not any("m2ad_search.csv" in p for p in problems)
