"""Proof by digest: what the mirror serves for each image, and whether the run is complete.

Every image by digest, multi-platform images as whole manifest lists (the index digest
and every platform manifest it names); the same check before the sync (what is already
there is not copied) and after it.
"""

from __future__ import annotations

from airgap.mediatypes import is_index
from airgap.mirror.model import MirrorError, MirrorReport, Status, Work
from airgap.registry import RegistryClient


def verify_image(mirror: RegistryClient, w: Work, *, before: bool) -> None:
    """Set w's status from the mirror: the tag's digest, and for an index every child."""
    info = mirror.head_manifest(w.repo, w.reference)
    r = w.result
    if info is None:
        r.found = None
        r.status = Status.missing
        r.detail = "not in the mirror"
        return
    r.found = info.digest
    if r.expected and info.digest != r.expected:
        r.status = Status.mismatch
        r.detail = f"mirror has {info.digest}, expected {r.expected}"
        return
    if is_index(info.media_type):
        _, data = mirror.get_manifest(w.repo, info.digest)
        children = [str(m["digest"]) for m in data.get("manifests", [])]
        r.platforms = len(children)
        absent = [c for c in children if mirror.head_manifest(w.repo, c) is None]
        if absent:
            r.status = Status.incomplete
            r.detail = f"{len(absent)} of {len(children)} platform manifests missing"
            return
    r.status = Status.present if before else Status.synced
    r.detail = ""


def count_copied(mirror: RegistryClient, w: Work) -> None:
    """After the sync: the blobs that were missing, are there now, and were not mounted."""
    moved = {d: s for d, s in w.missing_blobs.items()
             if d not in w.mounted and mirror.has_blob(w.repo, d)}
    w.result.blobs_copied = len(moved)
    w.result.bytes_copied = sum(moved.values())


def raise_unless_complete(report: MirrorReport) -> None:
    bad = [i for i in report.images if not i.status.ok]
    if not bad and report.regsync_error is None:
        return
    upstream = [i for i in bad if i.status is Status.missing_upstream]
    others = [i for i in bad if i.status is not Status.missing_upstream]
    parts = []
    if others:
        parts.append(f"{len(others)} image(s) not complete in the mirror "
                     f"({', '.join(str(i.ref) for i in others[:3])}"
                     f"{', ...' if len(others) > 3 else ''})")
    if upstream:
        parts.append(f"{len(upstream)} image(s) missing upstream "
                     f"({', '.join(str(i.ref) for i in upstream[:3])}"
                     f"{', ...' if len(upstream) > 3 else ''})")
    if not parts:
        parts.append("regsync failed")
    err = report.regsync_error or ""
    if "disk space" in err:
        resolution = ("Free or grow the mirror's storage, then run `invoke mirror` again "
                      "(blobs already copied are not sent again).")
    elif upstream and not others:
        resolution = ("Check the image names and tags (or the upstream registry); remove "
                      "images that do not exist from the list, or re-run `invoke prepare`.")
    else:
        resolution = ("Fix the cause shown above and run `invoke mirror` again: what is "
                      "already in the mirror is not copied again.")
    raise MirrorError("mirror incomplete: " + "; ".join(parts), report,
                      details=err or None, resolution=resolution)
