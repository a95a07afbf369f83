"""The package's layers, read from the source with ast (imports at module level and inside
functions alike):

- ``ivlite/method/`` (the paper's method) imports nothing else of ivlite, and no line of it
  is longer than 88 characters (the book prints its source on the page,
  :func:`ivlite.book.show_source`);
- the tiny world (``ivlite.world``) is imported only by ``ivlite.registry``, and by ``ivlite.cli``
  for its ``demo`` verb (``ivlite.world.demo`` and ``.demo_files``: the application's edge; the
  demo itself imports the trainer, so the registry cannot hold it without a cycle);
- no core module spells a name of the tiny world: no string literal outside documentation (a
  bare string statement: module, class, function and attribute docstrings) equals a name of
  ``registry.WORLD_NAMES`` or contains one of its hyphenated names. Exempt: ``ivlite/world/``,
  ``ivlite/registry.py`` and the ``PRESETS`` table of ``ivlite/config.py``;
- the modules of ivlite import each other without cycles. Importing ``a.b.c`` also runs the
  package ``a.b``, so that is an edge too, except from a module inside that package.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ivlite import registry

PACKAGE = Path(__file__).resolve().parents[1] / "ivlite"
CORE_EXEMPT = {"ivlite.registry"}
WORLD_IMPORTERS = {"ivlite.registry": None,
                   "ivlite.cli": {"ivlite.world", "ivlite.world.demo", "ivlite.world.demo_files"}}
"""Modules outside ivlite.world allowed to import it: None = any world module, else these
(importing ivlite.world.demo runs the package ivlite.world too)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """ivlite modules that ``path`` imports anywhere in its code, with the packages they run."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    targets = {m for m in found if m in known}
    for target in list(targets):  # importing a.b.c runs a.b first, unless a.b is ours already
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in known and not (name == parent or name.startswith(parent + ".")):
                targets.add(parent)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def world_name_literals(path: Path, names: frozenset[str], skip_assignment: str | None = None
                        ) -> list[tuple[int, str]]:
    """(line, text) of string literals naming the world, documentation excluded."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skipped.add(id(node.value))  # a bare string statement is documentation
        targets = getattr(node, "targets", [getattr(node, "target", None)])
        is_table = isinstance(node, (ast.Assign, ast.AnnAssign)) and skip_assignment in {
            getattr(t, "id", None) for t in targets}
        if is_table:
            skipped.update(id(n) for n in ast.walk(node))
    hyphenated = [n for n in names if "-" in n]
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skipped
            and (node.value in names or any(n in node.value for n in hyphenated))]


def test_the_method_imports_nothing_else_of_ivlite():
    graph = import_graph()
    method = {m for m in graph if m == "ivlite.method" or m.startswith("ivlite.method.")}
    assert len(method) >= 8  # __init__, ddim, editing, segvr, tar, objective, lora, settings
    wrong = {m: sorted(graph[m] - method) for m in method if graph[m] - method}
    assert not wrong, f"ivlite/method/ must import nothing else of ivlite: {wrong}"


METHOD_LINE_LIMIT = 88
"""The book's column: :func:`ivlite.book.show_source` prints ivlite/method/ on the page."""


def test_the_method_fits_the_books_column():
    files = sorted((PACKAGE / "method").glob("*.py"))
    assert len(files) >= 8
    long = [f"ivlite/method/{p.name}:{i}: {len(line)} characters"
            for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if len(line) > METHOD_LINE_LIMIT]
    assert not long, (f"lines of ivlite/method/ over {METHOD_LINE_LIMIT} characters "
                      f"(the book prints them): " + "; ".join(long))


def test_only_the_registry_and_the_cli_demo_import_the_world():
    graph = import_graph()
    wrong = {}
    for name, targets in graph.items():
        if name == "ivlite.world" or name.startswith("ivlite.world."):
            continue
        world = {t for t in targets if t == "ivlite.world" or t.startswith("ivlite.world.")}
        allowed = WORLD_IMPORTERS.get(name, set())
        bad = set() if allowed is None else world - allowed
        if bad:
            wrong[name] = sorted(bad)
    assert not wrong, f"only ivlite.registry may import ivlite.world: {wrong}"
    assert any(t.startswith("ivlite.world") for t in graph["ivlite.registry"])


def test_no_core_module_names_the_world():
    names = registry.WORLD_NAMES
    assert {"tiny-world", "tiny-hps", "world", "oracle-quality", "oracle-score"} <= names
    wrong = {}
    for name, path in modules().items():
        if name.startswith("ivlite.world") or name in CORE_EXEMPT:
            continue
        hits = world_name_literals(path, names, "PRESETS" if name == "ivlite.config" else None)
        if hits:
            wrong[name] = hits
    assert not wrong, f"core modules name the tiny world (use ivlite.registry): {wrong}"


def test_the_name_check_finds_a_world_name(tmp_path):
    code = tmp_path / "m.py"
    code.write_text('"""Docs may say tiny-world."""\nPRESETS = {"m": "tiny-world"}\n'
                    'def f(x):\n    """tiny-hps"""\n    return x == "world" or f"a {x} tiny-hps"\n')
    hits = world_name_literals(code, registry.WORLD_NAMES, "PRESETS")
    assert [line for line, _ in hits] == [5, 5]
    assert len(world_name_literals(code, registry.WORLD_NAMES)) == 3


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "ivlite.registry" in graph["ivlite.trainer"]  # the graph sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
