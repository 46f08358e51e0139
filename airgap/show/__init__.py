"""The presentation layer: every table, tree and progress display (rich) lives here.

The library returns data (reports, rows, files); the tasks hand it to a function here.
Nothing else in airgap/ imports rich. Shared pieces: ``human_bytes`` and ``styled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

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
