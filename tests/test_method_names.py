"""What belongs to a method lives in ``core/methods/``: nothing outside it compares method names
(it asks the method's ``MethodInfo``: halo, memory, scene hooks, fallbacks, tiling)."""

import ast
from pathlib import Path

import napari_hsisr
from napari_hsisr.core.methods import list_methods

SRC = Path(napari_hsisr.__file__).parent
METHODS = SRC / "core" / "methods"


def _names(node) -> set[str]:
    """The method names a constant (or a tuple/list/set of constants) spells."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names(e) for e in node.elts)) if node.elts else set()
    return set()


def _comparisons(tree, names: set[str]):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        spelled = set().union(*(_names(s) for s in sides)) & names
        others = [ast.unparse(s) for s in sides if not _names(s)]
        if spelled and any("method" in o.lower() for o in others):
            yield node.lineno, ast.unparse(node)


def test_no_method_name_comparisons_outside_methods():
    names = {m.name for m in list_methods()}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if METHODS in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(SRC)}:{line}: {text}" for line, text in _comparisons(tree, names)]
    assert not found, "method names compared outside core/methods/ (ask the MethodInfo):\n" + "\n".join(found)


def test_the_check_finds_a_comparison():
    """The check itself can fail: it sees the comparisons it is meant to forbid."""
    tree = ast.parse('if method == "fast" or tile_method in ("msfn", "blind"): pass')
    assert len(list(_comparisons(tree, {"fast", "msfn", "blind"}))) == 2
