"""The layers the folders promise, checked from the source (``ast``, nothing imported).

- no import cycle among ``napari_hsisr.core`` modules, counting imports at module level AND inside
  functions (a lazy import still ties the two modules together), and counting that importing
  ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first;
- no module outside ``core`` (CLI, napari widgets, reader/writer) imports or reaches a ``_private``
  name of a core module, and no core module imports another core module's ``_private`` name (what
  a second module needs is that module's public interface);
- no source module over :data:`MAX_LINES` lines;
- core imports neither Qt nor napari (it runs headless and in dask workers).

"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_hsisr"
CORE = f"{PACKAGE}.core"
MAX_LINES = 800
GUI_PACKAGES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")
# modules the engine entry rewrites (issue 24 item 2): api <-> tiling, contract -> api.run_to_end


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _base(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


@cache
def _imports(module: str) -> tuple[tuple[str, str | None, int], ...]:
    """(imported module, imported name or None, line) for every import statement, at any depth."""
    path = _modules()[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in _modules() else (base, alias.name, node.lineno))
    return tuple(out)


def _core_graph() -> dict[str, set[str]]:
    """module -> the core modules importing it runs (the target and its packages not yet running)."""
    graph = {}
    for module in _modules():
        if not module.startswith(CORE + "."):
            continue
        edges = set()
        for target, _, _ in _imports(module):
            if target not in _modules():
                continue
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                ancestor = ".".join(parts[:i])
                if (module + ".").startswith(ancestor + "."):
                    break  # a package the importer belongs to is already being imported
                edges.add(ancestor)
        graph[module] = {t for t in edges if t.startswith(CORE + ".") and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _private_uses() -> list[tuple[str, int, str]]:
    """(module, line, 'core.module._name') for every private core name a non-core module imports or
    reaches as an attribute of an imported core module."""
    found = []
    for module, path in _modules().items():
        if module == CORE or module.startswith(CORE + "."):
            continue
        core_aliases = {}
        for target, name, line in _imports(module):
            if not (target == CORE or target.startswith(CORE + ".")):
                continue
            if name is not None and name.startswith("_") and not name.startswith("__"):
                found.append((module, line, f"{target}.{name}"))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # `from .core import api` then `api._x`
            if isinstance(node, ast.ImportFrom):
                base = _base(module, node, path.name == "__init__.py")
                for alias in node.names:
                    if f"{base}.{alias.name}".startswith(CORE + "."):
                        core_aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name.startswith(CORE + "."):
                        core_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in core_aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append((module, node.lineno, f"{core_aliases[node.value.id]}.{node.attr}"))
    return found


def _private_imports_within_core() -> list[tuple[str, int, str]]:
    """(module, line, 'core.module._name') for every ``_private`` name a core module imports from
    another core module."""
    return [(module, line, f"{target}.{name}") for module in _modules() if module.startswith(CORE + ".")
            for target, name, line in _imports(module)
            if (target == CORE or target.startswith(CORE + ".")) and target != module and name is not None
            and name.startswith("_") and not name.startswith("__")]


def _long_modules() -> dict[str, int]:
    sizes = {p.relative_to(SRC / PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in _modules().values()}
    return {name: n for name, n in sizes.items() if n > MAX_LINES}


def test_the_checks_see_the_package():
    """The walkers find what they look for (an empty source tree would pass everything)."""
    graph = _core_graph()
    assert f"{CORE}.io" in graph and f"{CORE}.io.tiff" in graph[f"{CORE}.io"]
    assert f"{CORE}.outputs" in graph[f"{CORE}.io.tiff"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert len(_modules()) > 50


def test_no_import_cycle_among_core_modules():
    assert [sorted(c) for c in _cycles(_core_graph())] == []


def test_front_ends_reach_no_private_core_name():
    assert _private_uses() == []


def test_no_core_module_imports_another_ones_private_name():
    assert _private_imports_within_core() == []


def test_no_module_is_over_the_line_limit():
    assert _long_modules() == {}


def test_core_imports_neither_qt_nor_napari():
    found = [(module, line, target) for module in _modules() if module.startswith(CORE)
             for target, _, line in _imports(module) if target.split(".")[0] in GUI_PACKAGES]
    assert found == []
