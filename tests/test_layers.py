"""The package's import graph: no circle, and no module imports one on a higher floor.

Every import counts, function-local ones too (a lazy import that only hides a circle is
still a circle). The floors are the data flow of ARCHITECTURE.md: the leaves, then the
config leaf, the stages (data → model → fit → scoring), what reads their output
(protocols, attribution), the run-dir format and its sinks, the post-score stages, the
checks of a whole config, re-scoring, the job and the reports, and the entry points on
top. A module may import its own floor or lower ones, never a higher one."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "madbench"

#: floor → module prefixes (a package name covers its modules); the most specific prefix wins
FLOORS = {
    0: ["madbench.errors", "madbench.keys", "madbench.paired", "madbench.metrics", "madbench.paper",
        "madbench.progress"],
    1: ["madbench.config"],
    2: ["madbench.data", "madbench.models", "madbench.objectives", "madbench.heads", "madbench.scoring",
        "madbench.detector", "madbench.fit", "madbench.memory"],
    3: ["madbench.protocols", "madbench.attribution"],
    4: ["madbench.rundir", "madbench.tracking"],
    5: ["madbench.results"],
    6: ["madbench.overrides", "madbench.checks", "madbench.train_scores"],
    7: ["madbench.rescoring"],
    8: ["madbench.run", "madbench.reports", "madbench.tables", "madbench.api"],
    9: ["madbench.cli", "madbench.__main__", "madbench"],
}


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # the most specific known module the import names
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


def floor(name: str) -> int:
    best, where = -1, None
    for f, prefixes in FLOORS.items():
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, where = len(p), f
    if where is None:
        raise AssertionError(f"{name}: on no floor; add it to FLOORS in {__file__}")
    return where


GRAPH = {m: imports(m, p, set(modules())) for m, p in modules().items()}


def test_every_module_is_on_a_floor():
    """floor() raises, naming the module, where FLOORS places it nowhere."""
    floors = {m: floor(m) for m in GRAPH}
    assert len(floors) > 20 and all(isinstance(f, int) for f in floors.values()), floors


def test_no_module_imports_a_higher_floor():
    up = sorted(f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
                for m, ts in GRAPH.items() for t in ts if floor(t) > floor(m))
    assert not up, "upward imports:\n" + "\n".join(up)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    with pytest.raises(AssertionError, match="upward imports"):
        graph = {"madbench.config": {"madbench.run"}}
        up = [f"{m} imports {t}" for m, ts in graph.items() for t in ts if floor(t) > floor(m)]
        assert not up, "upward imports:\n" + "\n".join(up)
