"""The bundle's image store: every image of images.lock in one OCI image layout.

DIR/oci/ holds ``oci-layout``, ``index.json`` and ``blobs/sha256/``: each blob once,
whatever number of images share it; each image is an entry of index.json named by its
fully qualified reference (annotation ``io.containerd.image.name``, as `ctr export`
writes it, and ``org.opencontainers.image.ref.name`` for the tag). Images are stored
whole: a multi-platform index with every platform it names, because the index digest
is what images.lock pins and a registry refuses an index whose platform manifests it
lacks (tests/integration/test_bundle_store.py shows Distribution doing so), so a
filtered index could not be pushed under the locked digest.

Filling is streamed (airgap/registry/blobs.py), checked by digest as it is written,
and resumable: a blob already in the store with the right content is kept; index.json
is written last. Reading walks the same graph for verify, mirror --from-bundle and
sideload.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.bundle.layout import Bundle
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.fileio import write_atomic
from airgap.mediatypes import OCI_INDEX, is_index
from airgap.plan.lock import ImageLock, LockedImage
from airgap.progress import Say, quiet
from airgap.registry import RegistryClient, api_reference
from airgap.registry.blobs import download_blob, get_manifest_bytes, sha256_file

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT = {"imageLayoutVersion": "1.0.0"}


def blob_path(store: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return store / "blobs" / algo / hexd


@dataclass(frozen=True)
class StoredImage:
    ref: str
    digest: str
    media_type: str
    size: int


@dataclass
class Graph:
    """One image's manifests (digest -> media type and bytes) and blobs (digest -> size)."""

    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # manifests, children before the index


def graph_of(digest: str, media: str, body: bytes,
             child: Callable[[str], tuple[str, bytes]]) -> Graph:
    """The manifests and blobs below a top manifest; ``child`` fetches a platform one."""
    g = Graph()
    data = json.loads(body)
    if is_index(media, data):
        for m in data.get("manifests", []):
            d = str(m["digest"])
            cmedia, cbody = child(d)
            _add_manifest(g, d, cmedia, cbody)
    else:
        _add_manifest(g, digest, media, body)
        g.order.pop()
    g.manifests[digest] = (media, body)
    g.order.append(digest)
    return g


def _add_manifest(g: Graph, digest: str, media: str, body: bytes) -> None:
    data = json.loads(body)
    g.manifests[digest] = (media, body)
    g.order.append(digest)
    for desc in [data.get("config") or {}, *data.get("layers", [])]:
        if desc.get("digest"):
            g.blobs[str(desc["digest"])] = int(desc.get("size", 0))


@dataclass
class StoreReport:
    images: int = 0
    blobs: int = 0
    blob_bytes: int = 0  # unique blob bytes in the store
    fetched_bytes: int = 0  # bytes downloaded by this run (0 when all was there)
    kept: int = 0  # blobs already in place
    pruned: int = 0  # files of an earlier lock removed
    seconds: float = 0.0
    # Blobs not fetched because a delta's base holds them (``have``): absent from the
    # store, listed in the manifest from the base's, and carried by the base.
    skipped: list[str] = field(default_factory=list)
    skipped_bytes: int = 0


def fill_store(lock: ImageLock, bundle: Path, client_for: Callable[[str], RegistryClient], *,
               parallel: int = 4, progress: Say = quiet,
               have: Collection[str] = ()) -> StoreReport:
    """Every image of the lock into DIR/oci, from the upstreams (through client_for).

    ``have``: blob digests the site already holds (a delta's base); those not already
    in the store are not fetched (the manifests still are: they are small and walking
    them is how the blobs are known), so the store is then whole only together with
    the base. Images are never "complete" without their blobs, so a later run without
    ``have`` fetches what is missing."""
    t0 = time.monotonic()
    store = Bundle(bundle).oci_dir
    (store / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    write_atomic(store / "oci-layout", json.dumps(LAYOUT) + "\n")
    graphs: list[tuple[LockedImage, Graph]] = []
    owners: dict[str, tuple[RegistryClient, str]] = {}
    kept = _complete_images(bundle, lock)
    for img in lock.images:
        if str(img.ref) in kept:  # already whole in the store: no registry asked
            graphs.append((img, kept[str(img.ref)]))
            continue
        client = client_for(img.ref.registry)
        repo, _ = api_reference(img.ref)
        media, body = get_manifest_bytes(client, repo, img.digest)
        g = graph_of(img.digest, media, body, _fetcher(client, repo))
        graphs.append((img, g))
        for d in g.blobs:
            owners.setdefault(d, (client, repo))
    sizes = {d: s for _, g in graphs for d, s in g.blobs.items()}
    total = sum(sizes.values())
    report = StoreReport(images=len(graphs), blobs=len(sizes), blob_bytes=total)
    progress(f"image store: {len(graphs)} images, {len(sizes)} blobs, {_mib(total)}")
    done = [0]
    lock_ = threading.Lock()

    def fetch(d: str) -> int:
        client, repo = owners[d]
        n = download_blob(client, repo, d, blob_path(store, d))
        with lock_:
            done[0] += sizes[d]
            progress(f"image store: {_mib(done[0])} of {_mib(total)}")
        return n

    skip = {d for d in sizes if d in have and d in owners
            and not blob_path(store, d).is_file()}
    report.skipped = sorted(skip)
    report.skipped_bytes = sum(sizes[d] for d in skip)
    todo = [d for d in sizes if d in owners and d not in skip]
    fetched = fan_out(fetch, sorted(todo, key=lambda d: -sizes[d]), limit=parallel,
                      name="store")
    report.fetched_bytes = sum(fetched)
    report.kept = len(sizes) - len(todo) - len(skip) + sum(1 for n in fetched if n == 0)
    for _, g in graphs:
        for d, (_, body) in g.manifests.items():
            p = blob_path(store, d)
            if not p.is_file() or p.read_bytes() != body:
                write_atomic(p, body)
    write_index(store, [(img, g) for img, g in graphs])
    report.pruned = _prune(store, {d for _, g in graphs for d in [*g.blobs, *g.manifests]})
    report.seconds = time.monotonic() - t0
    return report


def _complete_images(bundle: Path, lock: ImageLock) -> dict[str, Graph]:
    """Images of the lock the store already holds whole (index entry at the locked
    digest, every manifest and blob present with its digest): a re-run of prepare keeps
    them without asking any registry."""
    if not (Bundle(bundle).oci_dir / "index.json").is_file():
        return {}
    try:
        stored = {s.ref: s for s in read_index(bundle)}
    except AirgapError:
        return {}
    store, out = Bundle(bundle).oci_dir, {}
    for img in lock.images:
        s = stored.get(str(img.ref))
        if s is None or s.digest != img.digest:
            continue
        try:
            g = stored_graph(bundle, s)
        except AirgapError:
            continue
        if all(blob_path(store, d).is_file() and sha256_file(blob_path(store, d)) == d
               for d in g.blobs):
            out[str(img.ref)] = g
    return out


def _prune(store: Path, wanted: set[str]) -> int:
    """Remove blobs no image of the lock names (an earlier lock's) and partial files."""
    n = 0
    for p in (store / "blobs" / "sha256").iterdir():
        if f"sha256:{p.name}" not in wanted:
            p.unlink()
            n += 1
    return n


def _fetcher(client: RegistryClient, repo: str) -> Callable[[str], tuple[str, bytes]]:
    return lambda d: get_manifest_bytes(client, repo, d)


def write_index(store: Path, images: Iterable[tuple[LockedImage, Graph]]) -> Path:
    entries = []
    for img, g in sorted(images, key=lambda x: str(x[0].ref)):
        media, body = g.manifests[img.digest]
        entries.append({"mediaType": media, "digest": img.digest, "size": len(body),
                        "annotations": {NAME_ANNOTATION: str(img.ref),
                                        REF_ANNOTATION: img.ref.tag or img.digest}})
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return write_atomic(store / "index.json", json.dumps(doc, indent=1) + "\n")


def read_index(bundle: Path) -> list[StoredImage]:
    store = Bundle(bundle).oci_dir
    path = store / "index.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return [StoredImage(str(m["annotations"][NAME_ANNOTATION]), str(m["digest"]),
                            str(m["mediaType"]), int(m["size"]))
                for m in doc["manifests"]]
    except FileNotFoundError:
        raise AirgapError(f"{path}: the bundle has no image store",
                          resolution="Prepare the bundle with images (`invoke prepare`, "
                          "without --no-images).") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise AirgapError(f"{path}: not an OCI image index naming each image ({exc!r})",
                          resolution="Prepare the bundle again (`invoke prepare`).") from None


def stored_graph(bundle: Path, image: StoredImage) -> Graph:
    """An image's graph read back from the store (missing manifests raise)."""
    store = Bundle(bundle).oci_dir

    def manifest(d: str) -> tuple[str, bytes]:
        p = blob_path(store, d)
        if not p.is_file():
            raise AirgapError(f"{p}: manifest {d} of {image.ref} is missing from the store",
                              resolution="Copy the bundle again, or prepare it again.")
        body = p.read_bytes()
        return str(json.loads(body).get("mediaType", "")), body

    media, body = manifest(image.digest)
    return graph_of(image.digest, image.media_type or media, body, manifest)


def check_store(bundle: Path, lock: ImageLock) -> list[str]:
    """What is wrong with the store against the lock (empty: complete). Every image of
    the lock at its digest, every manifest and blob it names present with its digest."""
    store = Bundle(bundle).oci_dir
    problems: list[str] = []
    stored = {s.ref: s for s in read_index(bundle)}
    for img in lock.images:
        s = stored.get(str(img.ref))
        if s is None:
            problems.append(f"{img.ref}: not in the image store")
            continue
        if s.digest != img.digest:
            problems.append(f"{img.ref}: the store has {s.digest}, images.lock {img.digest}")
            continue
        try:
            g = stored_graph(bundle, s)
        except AirgapError as exc:
            problems.append(exc.brief)
            continue
        for d in [*g.manifests, *g.blobs]:
            p = blob_path(store, d)
            if not p.is_file():
                problems.append(f"{img.ref}: blob {d} missing ({p})")
            elif sha256_file(p) != d:
                problems.append(f"{img.ref}: blob {p} does not match its digest {d}")
    return problems


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
