"""Side-load tables: the archives written, and what each node confirmed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airgap.bundle.verify import SignerPolicy
from airgap.errors import AirgapError
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


@dataclass(frozen=True)
class SideloadArgs:
    """`invoke sideload`'s flags, parsed."""

    plan: Path
    out: Path | None
    bundle: Path | None
    lock: Path | None
    images: Path | None
    platform: str | None
    source: str | None
    nodes: list[str]
    timeout: float
    deliver: bool
    export: bool
    single_archive: bool
    from_store: bool
    signers: SignerPolicy


def _archives(err: Console, a: SideloadArgs, out_dir: Path, wanted: str,
              ) -> tuple[list[ArchiveReport], list[Any]]:
    from airgap import sideload as sl
    from airgap.plan import load_plan
    from airgap.plan.sources import plan_images_locked

    p = load_plan(a.plan)
    src = sl.Source.parse(a.source) if a.source else None
    refs, locked = plan_images_locked(p, images_file=a.images, bundle=a.bundle, lock=a.lock)
    selected = sl.select_images(refs, wanted, lock=locked, source=src)
    expected = sl.expected_refs(selected)
    if a.from_store:
        from airgap.sideload.from_store import archive_from_store

        if a.bundle is None or locked is None:
            raise AirgapError("--from-store needs --bundle DIR (its image store and images.lock)",
                              resolution="Pass the bundle: `invoke sideload --bundle DIR "
                              "--from-store`.")
        with err.status("building the archive from the image store"):
            return archive_from_store(a.bundle, locked, selected, out_dir, wanted), expected
    if a.export:
        with err.status("exporting") as status:
            return sl.export_images(selected, out_dir, wanted, source=src,
                                    single_archive=a.single_archive,
                                    progress=lambda msg: status.update(msg)), expected
    with err.status("validating"):
        return sl.validate_archives(sl.archives_in(out_dir), expected, wanted), expected


def run_sideload(err: Console, a: SideloadArgs, transports: Any) -> None:
    """Export (or build from the store, or validate) the archives; deliver them if asked."""
    from airgap import sideload as sl
    from airgap.bundle import Bundle
    from airgap.nodes import build_nodes, close_nodes
    from airgap.plan import load_plan
    from airgap.show.gap import signature_gate

    p = load_plan(a.plan)
    out_dir = a.out or Bundle(a.bundle or Path(".")).images_dir
    wanted = sl.plan_platform(p, a.platform)
    if a.bundle is not None and (a.deliver or a.from_store):
        signature_gate(err, a.bundle, a.signers)
    reports, expected = _archives(err, a, out_dir, wanted)
    stdout = Console()
    stdout.print(archive_table(reports, wanted, out_dir))
    if not a.deliver:
        return
    nodes = build_nodes(p, only=a.nodes or None, transports=transports)
    try:
        with err.status("delivering") as status:
            results = sl.deliver(p, list(nodes.values()), [r.path for r in reports],
                                 expected=expected, platform=wanted, timeout=a.timeout,
                                 progress=lambda msg: status.update(msg))
    finally:
        close_nodes(nodes)
    stdout.print(delivery_table(results))
    error, note = sl.delivery_outcome(results)
    if error:
        raise AirgapError(error, resolution="See the table above: the node and the image.")
    if note:
        err.print(note)
