"""Mirror mode: copy every image into the private registry with regsync, then prove it.

The procedure stops at `regsync once`: nothing says whether the mirror is complete, and
a re-sync re-asks the upstream about every image. Here each run checks first (what is
already there, whole, is not copied; with nothing missing regsync does not run), counts
the blobs each missing image lacks, runs regsync over only what is missing (sources
pinned to images.lock digests, shared layers sent once), and verifies every image by
digest, multi-platform images as whole manifest lists.

model: results and report; plan: what to copy and in which order; sync: regsync and
its watch; verify: proof by digest; run: mirror_images. Registry questions go through
airgap.registry; tables and progress bars are in airgap.show.mirror.
"""

from __future__ import annotations

from airgap.mirror.model import (
    ImageResult,
    MirrorError,
    MirrorProgress,
    MirrorReport,
    SilentProgress,
    Status,
    Work,
)
from airgap.mirror.plan import seed_split, split_path, upstream_access_for, upstream_accesses
from airgap.mirror.run import mirror_images
from airgap.mirror.sync import _NO_SPACE as _NO_SPACE
from airgap.mirror.verify import raise_unless_complete
from airgap.registry import RegistryAccessError, RegistryClient, mirror_client
from airgap.registry import _proxy_for as _proxy_for

# The names these had when mirror was one module; tests import them from here.
_Work = Work
_seed_split = seed_split
_split_path = split_path
_raise_unless_complete = raise_unless_complete

__all__ = [
    "ImageResult",
    "MirrorError",
    "MirrorProgress",
    "MirrorReport",
    "RegistryAccessError",
    "RegistryClient",
    "SilentProgress",
    "Status",
    "Work",
    "mirror_client",
    "mirror_images",
    "upstream_access_for",
    "upstream_accesses",
]
