"""The bundle that crosses the gap: prepared and checked on the connected side,
re-checked on the air-gapped side before anything is installed.

``layout`` owns every path in it, ``manifest`` the signed inventory written last,
``prepare`` builds it, ``resolve`` pins the image digests, ``verify`` re-checks it.
"""

from __future__ import annotations

from airgap.bundle.layout import (
    CONNECTED_DIR,
    IMAGES_DIR,
    LOCK_FILE,
    MANIFEST,
    PARTIAL_DIR,
    SNAPS_DIR,
    Bundle,
    bundle_files,
)
from airgap.bundle.manifest import (
    MANIFEST_VERSION,
    Manifest,
    ManifestDocument,
    SnapEntry,
    read_manifest,
    write_manifest,
)
from airgap.bundle.prepare import SUPPORT_CHANNEL, PreparedSnap, PrepareReport, prepare_bundle
from airgap.bundle.resolve import resolve_image, resolve_images
from airgap.bundle.verify import (
    NO_CHECK_WARNING,
    BundleError,
    VerifyReport,
    VerifyRow,
    load_trust,
    verify_bundle,
)

__all__ = [
    "CONNECTED_DIR",
    "IMAGES_DIR",
    "LOCK_FILE",
    "MANIFEST",
    "MANIFEST_VERSION",
    "NO_CHECK_WARNING",
    "PARTIAL_DIR",
    "SNAPS_DIR",
    "SUPPORT_CHANNEL",
    "Bundle",
    "BundleError",
    "Manifest",
    "ManifestDocument",
    "PrepareReport",
    "PreparedSnap",
    "SnapEntry",
    "VerifyReport",
    "VerifyRow",
    "bundle_files",
    "load_trust",
    "prepare_bundle",
    "read_manifest",
    "resolve_image",
    "resolve_images",
    "verify_bundle",
    "write_manifest",
]
