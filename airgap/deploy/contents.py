"""The bundle as deploy needs it: the snaps in install order, the archives, the images."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle import Bundle, read_manifest
from airgap.errors import AirgapError
from airgap.plan.images import ImageRef
from airgap.plan.lock import read_lock

_REVISION_RE = re.compile(r"^snap-revision: *(\d+) *$", re.M)
_SHA3_RE = re.compile(r"^snap-sha3-384: *([A-Za-z0-9_-]{64}) *$", re.M)


@dataclass(frozen=True)
class BundleSnap:
    name: str
    snap: Path
    assertion: Path
    revision: str | None
    sha3_384: str = ""  # the snap-revision assertion's snap-sha3-384

    @property
    def classic(self) -> bool:
        return self.name == "k8s"

    def version(self) -> str:
        """The version in the snap's meta/snap.yaml (read on demand: unsquashfs)."""
        from airgap.snaps.contents import snap_meta

        return snap_meta(self.snap).version


@dataclass(frozen=True)
class BundleContents:
    root: Path
    snaps: list[BundleSnap]
    archives: list[Path]
    images: list[ImageRef]

    @property
    def layout(self) -> Bundle:
        return Bundle(self.root)

    def files_to_transfer(self) -> list[Path]:
        out: list[Path] = []
        for s in self.snaps:
            out += [s.assertion, s.snap]
        if self.layout.manifest.is_file():
            out.append(self.layout.manifest)
        return out


def _snap_order(name: str) -> tuple[int, str]:
    return (0 if name == "snapd" else 2 if name == "k8s" else 1, name)


def read_bundle(root: Path) -> BundleContents:
    """The snaps (install order: snapd, base(s), k8s), archives and images of a bundle."""
    if not root.is_dir():
        raise AirgapError(
            f"{root}: bundle directory not found",
            resolution="Pass --bundle DIR, the directory `invoke prepare --bundle DIR` wrote.",
        )
    layout = Bundle(root)
    snaps = _manifest_snaps(layout)
    if not snaps:
        for snap in layout.snap_files():
            assertion = layout.assertion_of(snap)
            if not assertion.is_file():
                raise AirgapError(
                    f"{snap}: no {assertion.name} next to it",
                    resolution="Snaps cannot be installed offline without their assertions; "
                    "download both with `invoke prepare` (snap download writes them).",
                )
            text = assertion.read_text(errors="replace")
            m, h = _REVISION_RE.search(text), _SHA3_RE.search(text)
            snaps.append(BundleSnap(snap.stem, snap, assertion, m.group(1) if m else None,
                                    h.group(1) if h else ""))
    snaps.sort(key=lambda s: _snap_order(s.name))
    images = read_lock(layout.lock).refs() if layout.lock.is_file() else []
    return BundleContents(root, snaps, layout.archives(), images)


def _manifest_snaps(layout: Bundle) -> list[BundleSnap]:
    """The snaps the manifest names: a stale snap file left by an earlier prepare (an
    old base, say) is verified by nobody and must never be installed."""
    if not layout.manifest.is_file():
        return []
    out = []
    for entry in read_manifest(layout.root).snaps:
        snap, assertion = layout.root / entry.file, layout.root / entry.assertion
        for f in (snap, assertion):
            if not f.is_file():
                raise AirgapError(
                    f"{f}: named in {layout.manifest} but missing",
                    resolution="Copy the whole bundle again, or re-run `invoke prepare`.",
                )
        out.append(BundleSnap(entry.name, snap, assertion, entry.revision or None,
                              entry.sha3_384))
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
