"""The presentation layer: every table, tree and progress display (rich) lives here.

The library returns data (reports, rows, files); the tasks hand it to a function here.
Nothing else in airgap/ imports rich. Shared pieces: ``human_bytes`` and ``styled``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import TypeVar

from rich.table import Table

E = TypeVar("E", bound=Enum)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB as whole numbers; GiB is the largest unit."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def styled(status: E, styles: Mapping[E, str]) -> str:
    """rich markup for a status value in its colour."""
    return f"[{styles[status]}]{status.value}[/]"


def node_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """One node's table, left-aligned title: the first two columns as they are (name,
    result), the rest folded (details and fixes can be long)."""
    table = Table(title=title, title_justify="left")
    for n, column in enumerate(columns):
        table.add_column(column, overflow="fold" if n >= 2 else "ellipsis")
    for row in rows:
        table.add_row(*row)
    return table
