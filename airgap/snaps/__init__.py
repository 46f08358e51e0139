"""Snaps and their assertions, checked offline the way snapd checks them.

``fetch`` (snap download, or a folder of files), ``verify`` (SHA3-384, size, snap-id
and name against the assertions), ``contents`` (meta/snap.yaml, images.txt),
``assertions`` (the assertion format), ``trust`` (the signature chain up to the root),
``openpgp`` (the signature and key packets).
"""

from airgap.snaps.contents import SnapMeta, read_snap_file, snap_images, snap_meta
from airgap.snaps.fetch import (
    DOWNLOAD_TIMEOUT,
    FROM_RESOLUTION,
    copy_file,
    download_snap,
    find_local_snap,
)
from airgap.snaps.verify import (
    CHUNK,
    FileDigests,
    SnapAssertions,
    SnapError,
    VerifiedSnap,
    hash_file,
    snap_assertions,
    snap_sha3_384,
    verify_snap,
)

__all__ = [
    "CHUNK", "DOWNLOAD_TIMEOUT", "FROM_RESOLUTION", "FileDigests", "SnapAssertions",
    "SnapError", "SnapMeta", "VerifiedSnap", "copy_file", "download_snap",
    "find_local_snap", "hash_file", "read_snap_file", "snap_assertions", "snap_images",
    "snap_meta", "snap_sha3_384", "verify_snap",
]
