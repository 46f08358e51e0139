"""Where everything lives in a bundle: the one place that spells out its file names.

DIR/snaps/<name>.snap + DIR/snaps/<name>.assert for k8s, its base and snapd;
DIR/images.lock; DIR/oci/ (the image store: one OCI image layout holding every image of
images.lock); DIR/images/*.tar (optional side-load archives); DIR/manifest.json,
written last, so a bundle with a manifest is complete, and DIR/manifest.json.sig, its
detached SSH signature (the manifest covers every other file). DIR/connected/ (working space
of the connected side) and DIR/.partial/ (downloads in progress) never cross the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
OCI_DIR = "oci"
LOCK_FILE = "images.lock"
SNAPS_DIR = "snaps"
IMAGES_DIR = "images"
CONNECTED_DIR = "connected"
PARTIAL_DIR = ".partial"
SNAP_SUFFIX = ".snap"
ASSERT_SUFFIX = ".assert"
ARCHIVE_GLOB = "*.tar"

# Never part of what crosses the gap (nor of the manifest's file list).
_NOT_SHIPPED = (MANIFEST, SIGNATURE, CONNECTED_DIR, PARTIAL_DIR)


@dataclass(frozen=True)
class Bundle:
    """The layout of the bundle at ``root``: every path in it comes from here."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def signature(self) -> Path:
        """The manifest's detached SSH signature (namespace k8s-airgap)."""
        return self.root / SIGNATURE

    @property
    def oci_dir(self) -> Path:
        """The image store: an OCI image layout (oci-layout, index.json, blobs/)."""
        return self.root / OCI_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def snaps_dir(self) -> Path:
        return self.root / SNAPS_DIR

    @property
    def images_dir(self) -> Path:
        """Side-load archives (``invoke sideload --bundle DIR`` writes them here)."""
        return self.root / IMAGES_DIR

    @property
    def connected_dir(self) -> Path:
        return self.root / CONNECTED_DIR

    @property
    def partial_dir(self) -> Path:
        return self.root / PARTIAL_DIR

    def snap(self, name: str) -> Path:
        return self.snaps_dir / f"{name}{SNAP_SUFFIX}"

    def assertion(self, name: str) -> Path:
        return self.snaps_dir / f"{name}{ASSERT_SUFFIX}"

    def snap_files(self) -> list[Path]:
        """snaps/*.snap, whatever put them there (sorted)."""
        return sorted(self.snaps_dir.glob(f"*{SNAP_SUFFIX}"))

    @staticmethod
    def assertion_of(snap: Path) -> Path:
        """The .assert that belongs next to a .snap."""
        return snap.with_suffix(ASSERT_SUFFIX)

    def archives(self) -> list[Path]:
        """images/*.tar (sorted): the archives deploy side-loads."""
        return sorted(self.images_dir.glob(ARCHIVE_GLOB))

    def rel(self, path: Path) -> str:
        """A path inside the bundle as the manifest names it (relative, POSIX)."""
        return path.relative_to(self.root).as_posix()

    def files(self) -> list[str]:
        """Every file that crosses the gap (relative paths): all but the manifest, its
        signature, connected/ and .partial/."""
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if rel.parts[0] in _NOT_SHIPPED or not p.is_file():
                continue
            out.append(rel.as_posix())
        return out


def bundle_files(bundle: Path) -> list[str]:
    """Every file that crosses the gap (relative paths), as :meth:`Bundle.files`."""
    return Bundle(bundle).files()
