"""The bundle's tables: what prepare put in it, and what verify found."""

from __future__ import annotations

from rich.table import Table

from airgap.bundle import PrepareReport, VerifyReport


def prepare_tables(rep: PrepareReport) -> list[Table]:
    """The snaps (revision, channel, size, kept or fetched, key chain), then the images."""
    table = Table(title=f"Bundle {rep.bundle}")
    for col in ("snap", "revision", "channel", "size", "action", "key chain"):
        table.add_column(col)
    for s in rep.snaps:
        table.add_row(s.snap.name, s.snap.revision, s.channel, f"{s.snap.size / 1e6:.1f} MB",
                      s.action, s.snap.chain_text)
    images = Table(title=f"images.lock ({rep.images_action}; {', '.join(rep.lock.platforms)})")
    for col in ("image", "source", "digest"):
        images.add_column(col)
    for i in sorted(rep.lock.images, key=lambda i: str(i.ref)):
        images.add_row(str(i.ref), i.source, i.digest)
    return [table, images]


def verify_table(rep: VerifyReport) -> Table:
    """One row per file: kind, ok or FAIL, what was checked or what differs."""
    table = Table(title=f"Bundle {rep.bundle}")
    for col in ("file", "kind", "result", "detail"):
        table.add_column(col)
    for r in rep.rows:
        table.add_row(r.path, r.kind, "[green]ok[/]" if r.ok else "[bold red]FAIL[/]", r.detail)
    return table
