"""The house rules of issue 15, checked: no import circle, small modules, a test file per module.

mitmproxy's ``test/filename_matching.py`` is the model: a newcomer finds a module's tests by its
name. A module ``tlsdetect/a/b.py`` is tested in ``tests/test_b.py`` or, where two modules share a
name (``cli/serve.py`` and the ``serve`` package), ``tests/test_a_b.py``; a package's
``__init__.py`` counts as a module named after the package when it holds code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "tlsdetect"
TESTS = ROOT / "tests"
#: Past this many lines a module states in its docstring why it is one module ("Size: ...").
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    found.discard(name)
    return found


def _is_code(path: Path) -> bool:
    """Whether a file holds more than a docstring, imports and dunder names (``__version__``)."""

    def plain(n: ast.stmt) -> bool:
        if isinstance(n, ast.Import | ast.ImportFrom):
            return True
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant):
            return True
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
        return bool(targets) and all(isinstance(x, ast.Name) and x.id.startswith("__") for x in targets)

    return not all(plain(n) for n in ast.parse(path.read_text()).body)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import circles, leaving out a package that imports its own submodules (that is no circle)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(v: str, path: list[str]) -> None:
        state[v] = 1
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                loop = path[path.index(w):]
                if not all(x == w or x.startswith(w + ".") for x in loop):
                    cycles.append([*loop, w])
            elif w not in state:
                visit(w, [*path, w])
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v, [v])
    return cycles


def test_find_cycles_sees_a_circle_and_passes_a_package_importing_its_children() -> None:
    """The checker itself: a -> b -> a is a circle; pkg -> pkg.x -> pkg is not."""
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert find_cycles({"p": {"p.x"}, "p.x": {"p"}}) == []


def test_no_import_circle() -> None:
    """No module imports, even inside a function, a module that imports it back."""
    edges = {name: _imports(name, path) for name, path in MODULES.items()}
    assert find_cycles(edges) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small_or_says_why(name: str) -> None:
    """Over ~500 lines a module states why in its docstring (a line starting ``Size:``)."""
    path = MODULES[name]
    n = len(path.read_text().splitlines())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert n <= MAX_LINES or "\nSize:" in "\n" + doc, f"{path.relative_to(ROOT)}: {n} lines and no 'Size:' reason"


def _test_files_for(name: str) -> list[Path]:
    parts = name.split(".")
    stem, parent = parts[-1], (parts[-2] if len(parts) > 2 else "")
    names = [f"test_{stem}.py"] + ([f"test_{parent}_{stem}.py"] if parent else [])
    return [TESTS / n for n in names]


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if _is_code(p) and not n.endswith("__main__")))
def test_every_module_has_its_test_file(name: str) -> None:
    """``tlsdetect/a/b.py`` has ``tests/test_b.py`` or ``tests/test_a_b.py``."""
    candidates = _test_files_for(name)
    assert any(c.exists() for c in candidates), f"{name}: none of {[c.name for c in candidates]}"


def test_every_test_file_names_a_module_or_says_what_it_tests() -> None:
    """The other way round: a test file that matches no module says in its docstring what it covers."""
    known = {c.name for n in MODULES for c in _test_files_for(n)}
    for f in sorted(TESTS.glob("test_*.py")):
        if f.name in known:
            continue
        doc = ast.get_docstring(ast.parse(f.read_text())) or ""
        assert doc.strip(), f"{f.name} matches no module and has no docstring saying what it tests"
