"""Side-load mode: image archives the runtime will really import, delivered and confirmed.

Side-loading fails silently (FACTS): an archive without a usable name imports nothing
and exits 0, a compressed tar is ignored, an archive for the preparing machine's
platform is useless on the nodes, and files copied after install are only imported
when containerd restarts. So every archive is exported with a fully qualified,
digest-free ``--name`` for the plan's platform (``export``), validated against the
runtime's rules before it can be shipped (``validate``), and after delivery each node is
asked which images it holds (``deliver``), then each image is pinned against kubelet's
image GC (``pin``: the runtime's import sets no pin label). ``select`` decides what to
export.

Digests: archives are OCI layouts (containerd keeps an OCI archive's digest; a
docker-archive import rewrites it). A single-platform export of a multi-platform index
holds the platform's manifest, so the digest the runtime records, and the one we
expect, is that platform manifest's digest (images.lock ``platforms[P]``), not the
index digest the tag resolves to.
"""

from airgap.sideload.deliver import (
    CONFIRM_INTERVAL,
    CONFIRM_TIMEOUT,
    SNAP_CTR,
    DeliveryRow,
    NodeDelivery,
    RuntimeAccess,
    confirm_images,
    ctr_command,
    deliver,
    delivery_outcome,
    parse_ctr_images,
    restart_runtime,
)
from airgap.sideload.export import EXPORT_TIMEOUT, SINGLE_ARCHIVE, export_images
from airgap.sideload.pin import (
    PINNED,
    CRIPin,
    PinRow,
    cri_pin_error,
    cri_pins,
    gc_warning,
    parse_ctr_labels,
    pin_images,
    runtime_version,
)
from airgap.sideload.select import (
    SideloadImage,
    Source,
    archive_file_name,
    expected_from_lock,
    expected_refs,
    plan_platform,
    select_images,
)
from airgap.sideload.validate import (
    COMPRESSED_SUFFIXES,
    ArchiveImage,
    ArchiveReport,
    archives_in,
    not_imported,
    not_imported_error,
    validate_archive,
    validate_archives,
)

__all__ = [
    "COMPRESSED_SUFFIXES", "CONFIRM_INTERVAL", "CONFIRM_TIMEOUT", "EXPORT_TIMEOUT",
    "PINNED", "SINGLE_ARCHIVE", "SNAP_CTR", "ArchiveImage", "ArchiveReport", "CRIPin",
    "DeliveryRow", "NodeDelivery", "PinRow", "RuntimeAccess", "SideloadImage", "Source",
    "archive_file_name", "archives_in", "confirm_images", "cri_pin_error", "cri_pins",
    "ctr_command", "deliver", "delivery_outcome", "expected_from_lock", "expected_refs",
    "export_images", "gc_warning", "not_imported", "not_imported_error",
    "parse_ctr_images", "parse_ctr_labels", "pin_images", "plan_platform",
    "restart_runtime", "runtime_version", "select_images", "validate_archive",
    "validate_archives",
]
