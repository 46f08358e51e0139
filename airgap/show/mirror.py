"""Mirror mode on screen: progress bars while it runs, then the table and the summary."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from airgap.mirror.model import MirrorReport, Status
from airgap.show import human_bytes, styled

_STYLE = {
    Status.synced: "green", Status.present: "cyan", Status.missing: "red",
    Status.mismatch: "red", Status.missing_upstream: "red", Status.incomplete: "red",
}


class RichMirrorProgress:
    """airgap.mirror's MirrorProgress drawn as one rich bar per phase."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tasks: dict[str, TaskID] = {}

    def start(self, key: str, text: str, total: int) -> None:
        self._tasks[key] = self.progress.add_task(text, total=total)

    def advance(self, key: str, n: int = 1) -> None:
        if key in self._tasks:
            self.progress.advance(self._tasks[key], n)

    def done(self, key: str) -> None:
        if key in self._tasks:
            task = self._tasks[key]
            total = next(t.total for t in self.progress.tasks if t.id == task)
            self.progress.update(task, completed=total)


@contextmanager
def mirror_progress(console: Console) -> Iterator[RichMirrorProgress]:
    """Bars on console while the block runs (none when it is not a terminal)."""
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=False,
                  disable=not console.is_terminal) as progress:
        yield RichMirrorProgress(progress)


def report_table(report: MirrorReport) -> Table:
    table = Table(title=f"Mirror {report.mirror}", show_lines=False)
    table.add_column("image")
    table.add_column("digest")
    table.add_column("status")
    table.add_column("bytes copied", justify="right")
    for r in report.images:
        digest = (r.found or r.expected or "-")
        short = digest.split(":", 1)[-1][:12] if digest != "-" else "-"
        plats = f" ({r.platforms} platforms)" if r.platforms > 1 else ""
        status = styled(r.status, _STYLE)
        if r.detail and not r.status.ok and r.status is not Status.missing_upstream:
            status += f": {r.detail}"
        table.add_row(str(r.ref) + plats, short, status, human_bytes(r.bytes_copied))
    return table


def summary_line(report: MirrorReport, how: str | None = None) -> str:
    """One line: counts, bytes copied, how (regsync ran or not, or ``how``), seconds."""
    n = len(report.images)
    synced, present = report.count(Status.synced), report.count(Status.present)
    bad = n - synced - present
    ran = how or ("regsync ran" if report.regsync_ran else "regsync not needed")
    return (f"{n} image(s): {synced} synced, {present} already present, {bad} failed; "
            f"{human_bytes(report.bytes_copied)} in {report.blobs_copied} blob(s) copied; "
            f"{ran}; {report.seconds:.2f} s")


__all__ = ["RichMirrorProgress", "mirror_progress", "report_table", "summary_line"]


def run_mirror(err: Console, plan: Path, *, bundle: Path | None, lock: Path | None,
               images: Path | None, config: Path | None, insecure: Sequence[str],
               upstream_ca: Path | None, parallel: int) -> None:
    """`invoke mirror`'s body (regsync from the upstreams): progress, table, summary."""
    from airgap.mirror import MirrorError, mirror_images, upstream_accesses
    from airgap.plan import load_plan
    from airgap.plan.sources import plan_images_locked

    out = Console()
    p = load_plan(plan)
    refs, locked = plan_images_locked(p, images_file=images, bundle=bundle, lock=lock)
    ups = upstream_accesses(refs, insecure=list(insecure), ca_file=upstream_ca)
    try:
        with mirror_progress(err) as progress:
            report = mirror_images(p, refs, lock=locked, upstreams=ups, config_out=config,
                                   parallel=parallel, progress=progress)
    except MirrorError as exc:
        out.print(report_table(exc.report))
        err.print(summary_line(exc.report))
        raise
    out.print(report_table(report))
    err.print(summary_line(report))


def tools_table(status: Sequence[Any], pinned: str) -> Table:
    """`invoke tools`: each regclient tool, where it is, its version, whether it is pinned."""
    table = Table(title=f"regclient tools (pinned {pinned})")
    for col in ("tool", "path", "version", "ok"):
        table.add_column(col)
    for s in status:
        table.add_row(s.name, str(s.path or "not found"), s.version or "-",
                      "[green]yes[/]" if s.ok else "[red]no[/]")
    return table
