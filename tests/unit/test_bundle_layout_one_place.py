"""The bundle's file names are spelt out in one place: airgap/bundle/layout.py.

Every .py file of the library, the lab and tasks.py is parsed; a bundle name used as a
path (``x / "images.lock"``, ``Path("snaps")``, ``f"snaps/{n}.snap"``, a ``for`` over
``("snaps", "images")``) or bound to a name (``LOCK = "images.lock"``) anywhere else
fails the test. Words in messages and docstrings ("images.lock is missing") are text,
not paths, and do not count; nor do JSON keys or command arguments that happen to be
the same word (``ctr images ls``, ``{"images": [...]}``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = Path("airgap/bundle/layout.py")
NAMES = {"manifest.json", "images.lock", "snaps", "images", "connected", ".partial"}
PREFIXES = tuple(f"{d}/" for d in ("snaps", "images", "connected", ".partial"))
PATH_CALLS = {"Path", "PurePath", "PurePosixPath", "joinpath", "with_name", "with_suffix",
              "glob", "rglob", "join"}
# Same word, another directory: the lab's stand-in snaps for `prepare --from`, in its
# work directory (whichever lab module builds them).
NOT_A_BUNDLE = {'work / "snaps"'}


def _sources() -> list[Path]:
    files = sorted((ROOT / "airgap").rglob("*.py")) + sorted((ROOT / "lab").rglob("*.py"))
    return [*files, ROOT / "tasks.py"]


def _literal(node: ast.AST) -> str | None:
    """A string constant, or the leading literal text of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value
    return None


def _is_layout(text: str | None) -> bool:
    return text is not None and (text in NAMES or text.startswith(PREFIXES))


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _path_uses(tree: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """(string node, the expression that makes it a path) for every candidate."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                yield side, node
        elif isinstance(node, ast.Call) and _call_name(node) in PATH_CALLS:
            for arg in node.args:
                yield arg, node
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            yield node.value, node
        elif isinstance(node, ast.For | ast.comprehension) and isinstance(
                node.iter, ast.Tuple | ast.List | ast.Set):
            for elt in node.iter.elts:
                yield elt, node


def layout_names_outside_layout() -> list[str]:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if Path(rel) == OWNER:
            continue
        text = path.read_text()
        for value, use in _path_uses(ast.parse(text, filename=rel)):
            if not _is_layout(_literal(value)):
                continue
            if rel.startswith("lab/") and ast.get_source_segment(text, use) in NOT_A_BUNDLE:
                continue
            line = getattr(value, "lineno", 0)
            found.append(f"{rel}:{line}: {text.splitlines()[line - 1].strip()}")
    return found


def test_bundle_names_are_spelt_only_in_layout() -> None:
    found = layout_names_outside_layout()
    assert not found, "use airgap.bundle.layout.Bundle instead:\n" + "\n".join(found)


def test_layout_owns_every_name() -> None:
    text = (ROOT / OWNER).read_text()
    for name in NAMES:
        assert f'"{name}"' in text


@pytest.mark.parametrize(
    "snippet",
    [
        'p = bundle / "images.lock"',
        'LOCK = "manifest.json"',
        'x = Path(root, "snaps")',
        'x = root.joinpath("images")',
        'rel = f"snaps/{name}.snap"',
        'n = sum(1 for sub in ("snaps", "images") if (b / sub).is_dir())',
        'm = f"{bundle / \'images.lock\'}: missing"',
    ],
)
def test_the_check_sees_every_way_of_spelling_a_path(snippet: str) -> None:
    tree = ast.parse(snippet)
    assert any(_is_layout(_literal(v)) for v, _ in _path_uses(tree)), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        'raise E(f"{d}: images.lock is missing")',
        'argv = ["ctr", "-n", "k8s.io", "images", "ls"]',
        'doc = {"images": [], "snaps": []}',
        'v = doc["images"]',
        'members.get("manifest.json")',
    ],
)
def test_words_that_are_not_paths_pass(snippet: str) -> None:
    tree = ast.parse(snippet)
    assert not any(_is_layout(_literal(v)) for v, _ in _path_uses(tree)), snippet
