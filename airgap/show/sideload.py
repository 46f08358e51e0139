"""Side-load tables: the archives written, and what each node confirmed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from airgap.sideload.deliver import NodeDelivery
from airgap.sideload.validate import ArchiveReport


def archive_table(reports: Sequence[ArchiveReport], platform: str, out_dir: Path) -> Table:
    """One row per image: the archive holding it, its digest and the archive's size."""
    table = Table(title=f"Side-load archives ({platform}) in {out_dir}")
    for col in ("archive", "image", "digest", "size"):
        table.add_column(col)
    for rep in reports:
        for n, img in enumerate(rep.images):
            table.add_row(rep.path.name if n == 0 else "", img.name,
                          img.digest or "(docker-archive: set on import)",
                          f"{rep.size / 1e6:.1f} MB" if n == 0 else "")
    return table


def delivery_table(results: Sequence[NodeDelivery]) -> Table:
    """One row per node and image: the digest expected, the one found, the status."""
    table = Table(title="Side-load delivery")
    for col in ("node", "image", "expected", "found", "status"):
        table.add_column(col)
    for res in results:
        if res.error:
            table.add_row(res.node, "", "", "", f"[red]error: {escape(res.error)}[/red]")
        for row in res.rows:
            color = "green" if row.ok else ("yellow" if row.status == "pending" else "red")
            table.add_row(res.node, row.image, row.expected or "-", row.found or "-",
                          f"[{color}]{row.status}[/{color}]")
    return table
