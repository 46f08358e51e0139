"""What to copy into the mirror, and in which order.

Which images (one per name, pinned to images.lock), where each lands in the mirror, how
to reach each upstream, which blobs each image still lacks in the mirror (so the summary
can say what the sync really moved), and the seed/mount order that sends a layer shared
between repositories only once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.mediatypes import is_index
from airgap.mirror.model import ImageResult, Work
from airgap.plan import Plan
from airgap.plan.images import ImageRef
from airgap.plan.lock import ImageLock
from airgap.registry import RegistryAccessError, RegistryClient, api_reference
from airgap.render.sync import RegistryAccess, mirror_path

CHECK_WORKERS = 8


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def upstream_access_for(registry: str, upstreams: Sequence[RegistryAccess]) -> RegistryAccess:
    for access in upstreams:
        if access.host == registry:
            return access
    return RegistryAccess(registry)


def upstream_accesses(
    images: Iterable[ImageRef],
    *,
    insecure: Iterable[str] = (),
    ca_file: Path | None = None,
) -> list[RegistryAccess]:
    """How to reach the upstreams that are not plain public TLS (lab and test upstreams).

    ``insecure``: HOST:PORT served over http (--insecure-upstream); ``ca_file``: a PEM CA
    trusted for every other upstream (--upstream-ca).
    """
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.read_text()
        except FileNotFoundError:
            raise AirgapError(f"--upstream-ca {ca_file}: CA file not found",
                              resolution="Pass the PEM file of the CA that signed the "
                              "upstream registry's certificate.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AirgapError(f"--upstream-ca {ca_file}: cannot read the CA file ({exc})",
                              resolution="Pass a readable PEM CA certificate file.") from None
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise AirgapError(f"--upstream-ca {ca_file}: not a PEM certificate",
                              resolution="Pass the CA certificate in PEM form "
                              "(-----BEGIN CERTIFICATE-----).")
    plain = set(insecure)
    return [
        RegistryAccess(host, tls="disabled") if host in plain
        else RegistryAccess(host, ca_pem=ca_pem)
        for host in sorted({r.registry for r in images})
        if host in plain or ca_pem
    ]


def split_path(path: str) -> tuple[str, str, str]:
    """A mirror path -> (repository, ":" or "@", tag or digest)."""
    if "@" in path:
        repo, _, digest = path.partition("@")
        return repo, "@", digest
    repo, _, tag = path.rpartition(":")
    return repo, ":", tag


def unique_images(images: Iterable[ImageRef]) -> list[ImageRef]:
    """One reference per image name (a tag wins over its digest form), sorted."""
    seen: dict[str, ImageRef] = {}
    for ref in images:
        seen.setdefault(ref.name if ref.tag else str(ref), ref)
    return sorted(seen.values(), key=str)


def plan_work(plan: Plan, refs: Sequence[ImageRef], lock: ImageLock | None) -> list[Work]:
    """Each image's source (pinned to its lock digest), mirror repository and reference."""
    assert plan.mirror is not None
    work = []
    for ref in refs:
        locked = lock.find(ref) if lock is not None else None
        expected = locked.digest if locked else ref.digest
        source = ref.with_digest(expected) if expected else ref
        path = mirror_path(plan, ref)
        repo, _, reference = split_path(path)
        result = ImageResult(ref=ref, target=f"{plan.mirror.host}/{path}", expected=expected)
        work.append(Work(result=result, source=source, repo=repo, reference=reference))
    return work


class SeenBlobs:
    """(repository, digest) pairs already counted, shared by the counting threads."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def first(self, repo: str, digest: str) -> bool:
        """True the first time a pair is offered, False after."""
        with self._lock:
            if (repo, digest) in self._seen:
                return False
            self._seen.add((repo, digest))
            return True


def missing_blobs(up: RegistryClient, mirror: RegistryClient, w: Work, seen: SeenBlobs) -> None:
    """Record the blobs (and platform manifests) of w the mirror repo lacks, with sizes."""
    repo, ref = api_reference(w.source)
    info, data = up.get_manifest(repo, ref)
    if w.result.expected is None:
        w.result.expected = info.digest
    items: list[Blob] = []
    manifests: list[dict[str, Any]] = []
    if is_index(info.media_type, data):
        children = data.get("manifests", [])
        w.result.platforms = len(children)
        for child in children:
            digest = str(child["digest"])
            items.append(Blob(digest, int(child.get("size", 0))))
            _, sub = up.get_manifest(repo, digest)
            manifests.append(sub)
    else:
        manifests.append(data)
    for m in manifests:
        config = m.get("config")
        if isinstance(config, dict) and "digest" in config:
            items.append(Blob(str(config["digest"]), int(config.get("size", 0))))
        for layer in m.get("layers", []):
            items.append(Blob(str(layer["digest"]), int(layer.get("size", 0))))
    for item in items:
        if not seen.first(w.repo, item.digest):
            continue
        is_manifest = any(item.digest == str(c.get("digest")) for c in data.get("manifests", []))
        present = (mirror.head_manifest(w.repo, item.digest) is not None if is_manifest
                   else mirror.has_blob(w.repo, item.digest))
        if not present:
            w.missing_blobs[item.digest] = item.size


def seed_split(pending: Sequence[Work]) -> tuple[list[Work], list[Work], dict[str, int]]:
    """Split pending images so that layers shared between repositories travel once.

    regclient copies a blob into every repository that lacks it (it mounts only within
    one registry), so N images on one base layer send that layer N times. Instead: a
    first regsync run copies a few "seed" images that together hold every shared blob;
    those blobs are then mounted server-side into the other repositories; the second
    run finds them there and copies only what is unique. Returns (seeds, rest, shared).
    """
    users: dict[str, set[str]] = {}
    for w in pending:
        for digest in w.missing_blobs:
            users.setdefault(digest, set()).add(w.repo)
    shared = {d: 0 for d, repos in users.items() if len(repos) > 1}
    for w in pending:
        for d in shared:
            if d in w.missing_blobs:
                shared[d] = w.missing_blobs[d]
    if not shared:
        return [], list(pending), {}
    seeds: list[Work] = []
    covered: set[str] = set()
    for w in sorted(pending, key=lambda w: -sum(s for d, s in w.missing_blobs.items()
                                                if d in shared)):
        new = {d for d in w.missing_blobs if d in shared} - covered
        if new:
            seeds.append(w)
            covered |= new
        if covered == set(shared):
            break
    seed_ids = {id(w) for w in seeds}
    return seeds, [w for w in pending if id(w) not in seed_ids], shared


def mount_shared(mirror: RegistryClient, seeds: Sequence[Work], rest: Sequence[Work],
                 shared: dict[str, int]) -> None:
    """Mount the shared blobs the seeds brought into every other repository needing them."""
    where: dict[str, str] = {}
    for w in seeds:
        for d in w.missing_blobs:
            if d in shared:
                where.setdefault(d, w.repo)

    fan_out(partial(_mount_into, mirror, where), rest, limit=CHECK_WORKERS, name="mirror-mount")


def _mount_into(mirror: RegistryClient, where: dict[str, str], w: Work) -> None:
    for d in w.missing_blobs:
        source = where.get(d)
        if source and source != w.repo:
            try:
                if mirror.mount_blob(w.repo, d, source):
                    w.mounted.add(d)
            except RegistryAccessError:
                return  # regsync will copy it; a real outage surfaces there
