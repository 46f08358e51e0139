"""What a mirror run returns: one result per image, the report, and the error carrying it.

Also the two shapes the steps pass around: ``Work`` (one image on its way into the
mirror) and ``MirrorProgress`` (how a run reports progress; airgap.show.mirror draws it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from airgap.errors import AirgapError
from airgap.plan.images import ImageRef


class Status(str, Enum):
    synced = "synced"
    present = "already present"
    missing = "missing"
    mismatch = "digest mismatch"
    missing_upstream = "missing upstream"
    incomplete = "incomplete"

    @property
    def ok(self) -> bool:
        return self in (Status.synced, Status.present)


@dataclass
class ImageResult:
    ref: ImageRef
    target: str
    expected: str | None = None
    found: str | None = None
    status: Status = Status.missing
    bytes_copied: int = 0
    blobs_copied: int = 0
    platforms: int = 1
    detail: str = ""


@dataclass
class MirrorReport:
    mirror: str
    images: list[ImageResult]
    regsync_ran: bool = False
    regsync_error: str | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    config_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.regsync_error is None and all(i.status.ok for i in self.images)

    @property
    def bytes_copied(self) -> int:
        return sum(i.bytes_copied for i in self.images)

    @property
    def blobs_copied(self) -> int:
        return sum(i.blobs_copied for i in self.images)

    def count(self, status: Status) -> int:
        return sum(1 for i in self.images if i.status is status)


class MirrorError(AirgapError):
    """The mirror is not complete; carries the report so the table can still be shown."""

    def __init__(self, brief: str, report: MirrorReport, *, details: str | None = None,
                 resolution: str | None = None) -> None:
        super().__init__(brief, details=details, resolution=resolution)
        self.report = report


@dataclass
class Work:
    """One image on its way into the mirror; the steps fill it in."""

    result: ImageResult
    source: ImageRef            # what regsync copies (pinned to the lock digest if any)
    repo: str                   # repository in the mirror
    reference: str              # tag (or digest) in the mirror
    index_children: list[str] = field(default_factory=list)
    missing_blobs: dict[str, int] = field(default_factory=dict)  # digest -> size, before sync
    mounted: set[str] = field(default_factory=set)  # blobs mounted from another repo


class MirrorProgress(Protocol):
    """Say of a run, by phase key ("check", "plan", "sync", "verify").

    ``advance`` is called from worker threads; ``done`` fills a phase's bar.
    """

    def start(self, key: str, text: str, total: int) -> None: ...

    def advance(self, key: str, n: int = 1) -> None: ...

    def done(self, key: str) -> None: ...


class SilentProgress:
    """MirrorProgress that shows nothing (library callers, the lab, benches)."""

    def start(self, key: str, text: str, total: int) -> None:
        pass

    def advance(self, key: str, n: int = 1) -> None:
        pass

    def done(self, key: str) -> None:
        pass
