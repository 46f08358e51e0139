"""The shape of the code, checked: one way imports run, small modules, every user error
with its fix, presentation in one place, no sys.path edits."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from airgap.errors import AirgapError

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "airgap").rglob("*.py"))
LAB = sorted((ROOT / "lab").rglob("*.py"))
OUTSIDE_TESTS = [*LIBRARY, *LAB, *sorted((ROOT / "bench").rglob("*.py")),
                 ROOT / "tasks.py", ROOT / "noxfile.py"]
MAX_LINES = 450


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_the_library_never_imports_the_lab_the_tasks_or_invoke() -> None:
    bad = [f"{rel(p)} imports {m}" for p in LIBRARY for m in imported_modules(p)
           if m.split(".")[0] in ("lab", "tasks", "invoke", "tests")]
    assert not bad, bad


def test_only_the_presentation_layer_imports_rich() -> None:
    allowed = {ROOT / "tasks.py", ROOT / "lab" / "tasks.py"}
    bad = [f"{rel(p)} imports {m}" for p in [*LIBRARY, *LAB] for m in imported_modules(p)
           if m.split(".")[0] == "rich" and p not in allowed
           and "show" not in p.relative_to(ROOT).parts]
    assert not bad, bad


def test_no_module_outside_tests_is_over_450_lines() -> None:
    big = {rel(p): n for p in OUTSIDE_TESTS if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, big


def test_nothing_edits_sys_path() -> None:
    files = [*OUTSIDE_TESTS, *sorted((ROOT / "tests").rglob("*.py"))]
    edits = ("sys.path.insert", "sys.path.append")
    bad = [rel(p) for p in files if p.resolve() != Path(__file__).resolve()
           and any(e in p.read_text() for e in edits)]
    assert not bad, bad


def _raised_classes(path: Path) -> list[tuple[int, str, bool]]:
    """(line, class name, has resolution=) for every `raise Name(...)` in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and isinstance(node.exc.func, ast.Name):
            given = any(k.arg == "resolution" for k in node.exc.keywords)
            out.append((node.lineno, node.exc.func.id, given))
    return out


@pytest.mark.parametrize("path", [*LIBRARY, *LAB], ids=rel)
def test_every_user_error_says_how_to_fix_it(path: Path) -> None:
    module = importlib.import_module(module_name(path))
    missing = []
    for line, name, given in _raised_classes(path):
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, AirgapError)):
            continue  # ValueError & co. are caught and re-raised as user errors
        if not given and cls.default_resolution is None:
            missing.append(f"{rel(path)}:{line}: {name} without resolution=")
    assert not missing, missing
