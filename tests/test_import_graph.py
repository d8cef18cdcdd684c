"""Layers only look down: the import graph of ``webly`` between its packages has no cycle.

A node is a subpackage (``webly.train``) or a top-level module (``webly.config``, ``webly._fs``,
``webly`` itself). An edge is any ``import`` of another node anywhere in a file, module level
or inside a function (a lazy import that dodges a cycle is still a cycle); imports under
``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "webly"


@dataclass(frozen=True)
class Import:
    """One import statement from node ``source`` of node ``target``, at ``where`` (file:line)."""

    source: str
    target: str
    where: str


def module_name(path: Path, root: Path) -> str:
    """``webly.train.oof`` for ``<root>/train/oof.py``; a package's ``__init__`` is the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def node_of(module: str) -> str:
    """The node owning ``module``: the top package plus at most one level below it."""
    return ".".join(module.split(".")[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _blocks(statement: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists nested in ``statement`` (function and class bodies, branches,
    ``try``, ``with``, ``match``), without the body of an ``if TYPE_CHECKING:``."""
    if not (isinstance(statement, ast.If) and _is_type_checking(statement.test)):
        yield getattr(statement, "body", [])
    yield getattr(statement, "orelse", [])
    yield getattr(statement, "finalbody", [])
    for part in [*getattr(statement, "handlers", []), *getattr(statement, "cases", [])]:
        yield part.body


def _runtime_imports(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement among ``statements`` and the blocks nested in them that can run.
    Imports are statements, so expressions are not walked."""
    for statement in statements:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        else:
            for block in _blocks(statement):
                yield from _runtime_imports(block)


def _targets(
    statement: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> list[str]:
    """The modules ``statement`` (in ``module``) imports, relative imports resolved;
    ``from p import x`` is ``p.x`` where ``p.x`` is a module, else ``p``."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = statement.module or ""
    if statement.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - statement.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
        for alias in statement.names
    ]


def import_graph(root: Path) -> list[Import]:
    """The edges between nodes of the package at ``root`` (self-edges left out), one per
    import statement and target node."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    top = root.name
    edges: dict[Import, None] = {}
    for path in files:
        module = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for statement in _runtime_imports(tree.body):
            for target in _targets(statement, module, path.name == "__init__.py", modules):
                if target != top and not target.startswith(f"{top}."):
                    continue
                source, destination = node_of(module), node_of(target)
                if source != destination:
                    where = f"{path.relative_to(root.parent)}:{statement.lineno}"
                    edges[Import(source, destination, where)] = None
    return list(edges)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of ``graph`` with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _shortest_path(
    graph: dict[str, set[str]], start: str, goal: str, within: set[str]
) -> list[str]:
    """The shortest path ``start`` -> ``goal`` inside ``within`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & within):
                if nxt in seen:
                    continue
                previous[nxt] = node
                if nxt == goal:
                    path = [goal]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                seen.add(nxt)
                following.append(nxt)
        frontier = following
    raise AssertionError(f"{goal} is not reachable from {start}")


def cycles(edges: list[Import]) -> list[list[str]]:
    """One shortest cycle through every edge that lies on a cycle, each cycle listed once
    (as ``[a, b, ..., a]``, starting from its smallest node)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        graph[edge.source].add(edge.target)
    found: dict[tuple[str, ...], list[str]] = {}
    for members in strongly_connected(graph):
        within = set(members)
        for source in members:
            for target in sorted(graph[source] & within):
                loop = [source, *_shortest_path(graph, target, source, within)]
                start = loop.index(min(loop[:-1]))
                rotated = [*loop[start:-1], *loop[:start], loop[start]]
                found.setdefault(tuple(rotated), rotated)
    return sorted(found.values(), key=lambda loop: (len(loop), loop))


def describe(loop: list[str], edges: list[Import]) -> str:
    """``loop`` with the ``file:line`` of every import making each of its edges."""
    lines = [" -> ".join(loop)]
    for source, target in pairwise(loop):
        wheres = [edge.where for edge in edges if (edge.source, edge.target) == (source, target)]
        lines.append(f"    {source} -> {target}: {', '.join(wheres)}")
    return "\n".join(lines)


def test_webly_has_no_package_cycles() -> None:
    edges = import_graph(PACKAGE_ROOT)
    found = cycles(edges)
    report = "\n".join(describe(loop, edges) for loop in found)
    assert not found, f"{len(found)} import cycle(s) between webly's packages:\n{report}"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_walker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    root = tmp_path / "fake"
    _write(
        root,
        {
            "__init__.py": "",
            "low.py": "def f():\n    from fake.high import g\n    return g\n",
            "high/__init__.py": "from .impl import g\n",
            "high/impl.py": "from .. import low\n\ndef g():\n    return low\n",
        },
    )
    found = cycles(import_graph(root))
    assert found == [["fake.high", "fake.low", "fake.high"]]
    report = describe(found[0], import_graph(root))
    assert "fake/high/impl.py:1" in report
    assert "fake/low.py:2" in report


NESTED = """\
import typing
if typing.TYPE_CHECKING:
    import fake.b
else:
    from . import a
class Holder:
    try:
        import json
    except ImportError:
        from fake import c as fallback
"""


def test_walker_skips_type_checking_imports_and_resolves_from_package(tmp_path: Path) -> None:
    root = tmp_path / "fake"
    _write(
        root,
        {
            "__init__.py": "from fake._util import helper\n",
            "_util.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fake.b\n",
            "b.py": "from fake import a, __version__\n",
            "c/__init__.py": "from fake import d\n",
            "d.py": "import fake.c.e\n",
            "c/e.py": "",
            "n.py": NESTED,
        },
    )
    edges = {(edge.source, edge.target) for edge in import_graph(root)}
    assert edges == {
        ("fake", "fake._util"),
        ("fake.b", "fake.a"),
        ("fake.b", "fake"),
        ("fake.c", "fake.d"),
        ("fake.d", "fake.c"),
        ("fake.n", "fake.a"),
        ("fake.n", "fake.c"),
    }
    assert cycles(import_graph(root)) == [["fake.c", "fake.d", "fake.c"]]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("__init__.py", "fake"), ("_fs.py", "fake._fs"), ("train/loop.py", "fake.train.loop")],
)
def test_module_names(tmp_path: Path, path: str, expected: str) -> None:
    assert module_name(tmp_path / "fake" / path, tmp_path / "fake") == expected
