"""`invoke mirror --from-bundle DIR`: the private mirror filled from the bundle's image
store, on the air-gapped side, with no access to any upstream.

Per image, in the mirror's repository for it (the same path regsync would write):
skip it when the mirror already serves the locked digest with every platform manifest;
else, for each blob it names, skip what the repository holds, mount what another
repository of the mirror holds (no bytes sent), and upload the rest, streamed from the
store; then put the platform manifests by digest and the top manifest by tag, the exact
bytes of the store, so the digests are images.lock's. Uploads of different blobs run in
parallel; a blob two images share is sent once and mounted into the other. Afterwards
every image is verified by digest, as `invoke mirror` verifies. A run interrupted at any
point is resumed by running it again: what the mirror holds is not sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle.store import Graph, StoredImage, blob_path, read_index, stored_graph
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.mirror.model import ImageResult, MirrorReport, Work
from airgap.mirror.plan import split_path
from airgap.mirror.verify import raise_unless_complete, verify_image
from airgap.plan import Plan
from airgap.plan.lock import ImageLock
from airgap.progress import Say, quiet
from airgap.registry import RegistryClient, mirror_client
from airgap.registry.blobs import put_manifest, upload_blob
from airgap.render.sync import mirror_path


@dataclass
class _Item:
    work: Work
    graph: Graph
    stored: StoredImage


def push_bundle(plan: Plan, bundle: Path, lock: ImageLock, *, client: RegistryClient | None = None,
                parallel: int = 6, progress: Say = quiet) -> MirrorReport:
    """Push every locked image from the bundle's store into the plan's mirror."""
    t0 = time.monotonic()
    mirror = client or mirror_client(plan)
    mirror.ping()
    stored = {s.ref: s for s in read_index(bundle)}
    items: list[_Item] = []
    for img in lock.images:
        s = stored.get(str(img.ref))
        if s is None or s.digest != img.digest:
            raise AirgapError(
                f"{bundle}: {img.ref} is not in the bundle's image store at {img.digest}",
                resolution="Verify the bundle (`invoke verify`) and prepare it again with "
                "images if needed.")
        path = mirror_path(plan, img.ref)
        repo, _, reference = split_path(path)
        host = plan.mirror.host if plan.mirror else "?"
        result = ImageResult(img.ref, f"{host}/{path}", expected=img.digest)
        w = Work(result, img.ref, repo, reference)
        items.append(_Item(w, stored_graph(bundle, s), s))
    report = MirrorReport(mirror.url, [i.work.result for i in items])
    for it in items:
        verify_image(mirror, it.work, before=True)
    todo = [it for it in items if not it.work.result.status.ok]
    progress(f"mirror --from-bundle: {len(items) - len(todo)} of {len(items)} images already "
             "in the mirror")
    report.phases["check"] = time.monotonic() - t0
    t = time.monotonic()
    _push_blobs(mirror, bundle, todo, parallel, progress)
    report.phases["blobs"] = time.monotonic() - t
    t = time.monotonic()
    fan_out(lambda it: _push_manifests(mirror, it), todo, limit=parallel, name="push-manifest")
    report.phases["manifests"] = time.monotonic() - t
    t = time.monotonic()
    for it in todo:
        verify_image(mirror, it.work, before=False)
    report.phases["verify"] = time.monotonic() - t
    report.seconds = time.monotonic() - t0
    raise_unless_complete(report)
    return report


def _push_blobs(mirror: RegistryClient, bundle: Path, todo: Sequence[_Item], parallel: int,
                progress: Say) -> None:
    """Each missing blob uploaded once (to the first repository that needs it), then
    mounted into every other repository that needs it."""
    store = bundle / "oci"
    need: dict[str, list[_Item]] = {}
    for it in todo:
        for d in it.graph.blobs:
            if not mirror.has_blob(it.work.repo, d):
                need.setdefault(d, []).append(it)
                it.work.missing_blobs[d] = it.graph.blobs[d]
    have = _holders(mirror, need, todo)
    uploads = [d for d in need if d not in have]
    total = sum(need[d][0].graph.blobs[d] for d in uploads)
    sent = [0]
    lock = threading.Lock()
    progress(f"mirror --from-bundle: {len(uploads)} blobs to upload ({total / 2**20:.1f} MiB), "
             f"{len(need) - len(uploads)} to mount")

    def upload(d: str) -> None:
        first = need[d][0]
        n = upload_blob(mirror, first.work.repo, d, blob_path(store, d))
        with lock:
            first.work.result.bytes_copied += n
            first.work.result.blobs_copied += 1
            sent[0] += n
            progress(f"mirror --from-bundle: {sent[0] / 2**20:.1f} of {total / 2**20:.1f} MiB")
        have[d] = first.work.repo

    fan_out(upload, sorted(uploads, key=lambda d: -need[d][0].graph.blobs[d]),
            limit=parallel, name="push-blob")

    def mount(pair: tuple[str, _Item]) -> None:
        d, it = pair
        if have[d] == it.work.repo:
            return
        if mirror.mount_blob(it.work.repo, d, have[d]):
            it.work.mounted.add(d)
            return
        n = upload_blob(mirror, it.work.repo, d, blob_path(store, d))
        with lock:
            it.work.result.bytes_copied += n
            it.work.result.blobs_copied += 1

    fan_out(mount, [(d, it) for d, its in need.items() for it in its], limit=parallel,
            name="push-mount")


def _holders(mirror: RegistryClient, need: dict[str, list[_Item]],
             items: Sequence[_Item]) -> dict[str, str]:
    """Blobs some other repository of this run already holds (to mount from)."""
    out: dict[str, str] = {}
    repos = {it.work.repo for it in items}
    for d, its in need.items():
        wanting = {it.work.repo for it in its}
        for repo in sorted(repos - wanting):
            if d in next(it for it in items if it.work.repo == repo).graph.blobs and \
                    mirror.has_blob(repo, d):
                out[d] = repo
                break
    return out


def _push_manifests(mirror: RegistryClient, it: _Item) -> None:
    g, w = it.graph, it.work
    for d in g.order[:-1]:  # platform manifests first, by digest
        if mirror.head_manifest(w.repo, d) is None:
            media, body = g.manifests[d]
            put_manifest(mirror, w.repo, d, media, body)
    media, body = g.manifests[it.stored.digest]
    put_manifest(mirror, w.repo, w.reference, media, body)
