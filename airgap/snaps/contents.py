"""Looking inside a snap without snapd: one file (unsquashfs -cat), its meta/snap.yaml,
the images.txt the k8s snap carries."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from airgap import process
from airgap.errors import CommandError
from airgap.plan.images import ImageRef, parse_image_list
from airgap.snaps.verify import SnapError


def read_snap_file(snap: Path, inner: str) -> bytes:
    """One file from a squashfs snap (unsquashfs -cat), without unpacking the rest."""
    if shutil.which("unsquashfs") is None:
        raise SnapError(
            "unsquashfs is not installed",
            resolution="Install squashfs-tools (apt-get install squashfs-tools).",
        )
    try:
        data = process.run_bytes(["unsquashfs", "-cat", str(snap), inner], timeout=300)
    except CommandError as exc:
        raise SnapError(
            f"{snap}: cannot read {inner} from the snap",
            details=exc.details,
            resolution="Check that the file is a complete "
            "snap (re-run `invoke prepare` to fetch it again).",
        ) from None
    return data


@dataclass(frozen=True)
class SnapMeta:
    name: str
    version: str
    base: str | None
    type: str


def snap_meta(snap: Path) -> SnapMeta:
    """meta/snap.yaml: the base snap is whatever it names (core22 today, never assumed)."""
    raw = read_snap_file(snap, "meta/snap.yaml")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SnapError(f"{snap}: meta/snap.yaml is not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise SnapError(f"{snap}: meta/snap.yaml has no name")
    kind = str(data.get("type", "app"))
    base = data.get("base")
    if base is None and kind == "app":
        base = "core"  # snapd's rule: an app snap without base: runs on core
    return SnapMeta(
        name=data["name"],
        version=str(data.get("version", "")),
        base=str(base) if base else None,
        type=kind,
    )


def snap_images(snap: Path) -> list[ImageRef]:
    """images.txt at the root of the k8s snap: the images its features run."""
    raw = read_snap_file(snap, "images.txt")
    return parse_image_list(raw.decode("utf-8", errors="replace"), source=f"{snap}:images.txt")
