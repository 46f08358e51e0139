"""The connected side: fetch and verify the snaps, pin the images, write the manifest.

A re-run keeps every snap that still verifies and the lock when it still names the
plan's images; the manifest is removed first and written last, so a bundle with a
manifest is complete. Side-load archives in images/ are validated (check_archives)
before the manifest may list them.
"""

from __future__ import annotations

import platform as _platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from airgap import __version__, process, sideload, tools
from airgap.bundle.delta import BaseManifest, DeltaReport, delta_against, read_base
from airgap.bundle.layout import Bundle
from airgap.bundle.manifest import Manifest, SnapEntry, write_manifest
from airgap.bundle.resolve import resolve_images
from airgap.bundle.store import StoreReport, blob_path, fill_store
from airgap.errors import AirgapError
from airgap.plan import Plan, workload_images
from airgap.plan.images import ImageRef, merge_images
from airgap.plan.lock import ImageLock, read_lock, write_lock
from airgap.progress import Say, quiet
from airgap.registry import RegistryClient, pinning_client
from airgap.sideload import ArchiveReport
from airgap.snaps import (
    FileDigests,
    SnapError,
    VerifiedSnap,
    copy_file,
    download_snap,
    find_local_snap,
    hash_file,
    snap_images,
    snap_meta,
    verify_snap,
)
from airgap.snaps.trust import TrustStore

SUPPORT_CHANNEL = "latest/stable"


@dataclass(frozen=True)
class PreparedSnap:
    snap: VerifiedSnap
    channel: str
    action: str  # kept / downloaded / copied


@dataclass(frozen=True)
class PrepareReport:
    bundle: Path
    snaps: list[PreparedSnap]
    lock: ImageLock
    images_action: str
    manifest: Path
    signature_check: bool
    store: StoreReport | None = None  # the image store (None: --no-images)
    delta: DeltaReport | None = None  # with since: what the delta kept and dropped


def _fetch_snap(
    name: str,
    channel: str,
    layout: Bundle,
    from_dir: Path | None,
    trust: TrustStore | None,
    progress: Say,
) -> PreparedSnap:
    """Keep a snap that still verifies; otherwise fetch it again and verify before keeping."""
    snap, assertion = layout.snap(name), layout.assertion(name)
    if snap.is_file() and assertion.is_file():
        progress(f"checking {name} already in the bundle")
        try:
            return PreparedSnap(verify_snap(snap, assertion, name, trust=trust), channel, "kept")
        except SnapError as exc:
            progress(f"{name} in the bundle does not verify ({exc.brief}); fetching again")
    partial = layout.partial_dir
    if from_dir is not None:
        progress(f"copying {name} from {from_dir}")
        src_snap, src_assert = find_local_snap(from_dir, name)
        action = "copied"
    else:
        progress(f"snap download {name} --channel {channel}")
        src_snap, src_assert = download_snap(name, channel, partial)
        action = "downloaded"
    verified = verify_snap(src_snap, src_assert, name, trust=trust)
    copy_file(src_assert, assertion)
    if src_snap.parent == partial:
        src_snap.replace(snap)
    else:
        copy_file(src_snap, snap)
    return PreparedSnap(replace(verified, path=snap, assert_path=assertion), channel, action)


def _tool_versions(downloaded: bool, resolved: bool) -> dict[str, str]:
    out = {"k8s-airgap": __version__, "python": _platform.python_version()}
    first = process.run(["unsquashfs", "-version"], check=False).stdout.splitlines()
    out["unsquashfs"] = first[0] if first else "?"
    if resolved:
        out["regctl"] = (
            tools.run_tool("regctl", ["version", "--format", "{{.VCSTag}}"],
                           timeout=60).stdout.strip() or tools.REGCLIENT_VERSION
        )
    if downloaded and shutil.which("snap"):
        lines = process.run(["snap", "version"], check=False).stdout.splitlines()
        out["snap"] = lines[0].split(None, 1)[-1].strip() if lines else "?"
    return out


def _lock_matches(path: Path, images: Sequence[ImageRef], platforms: Sequence[str]) -> bool:
    try:
        lock = read_lock(path)
    except AirgapError:
        return False
    return sorted(lock.platforms) == sorted(platforms) and sorted(
        str(i.ref) for i in lock.images
    ) == sorted(str(r) for r in images)


def prepare_bundle(
    plan: Plan,
    bundle: Path,
    *,
    from_dir: Path | None = None,
    trust: TrustStore | None,
    refresh_images: bool = False,
    images: bool = True,
    parallel: int = 4,
    progress: Say = quiet,
    since: Path | None = None,
) -> PrepareReport:
    """Fetch and verify the snaps, pin the images, store them (unless ``images`` is
    False: then DIR/oci is removed, so no stale store crosses), write the manifest last.

    ``since``: the manifest.json of the last bundle the site received. The bundle is
    then a delta (airgap.bundle.delta): image blobs that base holds are not fetched at
    all, the manifest still lists the whole new bundle (those blobs' entries come from
    the base's manifest), and every file the base holds unchanged is dropped."""
    bundle = Path(bundle)
    base = read_base(since) if since is not None else None  # before the old manifest goes
    if from_dir is not None and not from_dir.is_dir():
        raise AirgapError(
            f"--from {from_dir}: not a directory",
            resolution="Point --from at the directory holding the .snap and .assert files.",
        )
    layout = Bundle(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    layout.manifest.unlink(missing_ok=True)  # the bundle is incomplete until the end
    snaps = [_fetch_snap("k8s", plan.k8s.channel, layout, from_dir, trust, progress)]
    k8s_snap = snaps[0].snap.path
    meta = snap_meta(k8s_snap)
    if meta.name != "k8s":
        raise AirgapError(
            f"{k8s_snap}: meta/snap.yaml names snap {meta.name!r}, not k8s",
            resolution="Give --from the k8s snap itself (k8s.snap or k8s_REVISION.snap), "
            "or leave --from out to download it from the Snap Store.",
        )
    support = [meta.base] if meta.base else []
    for name in [*support, "snapd"]:
        if name not in {s.snap.name for s in snaps}:
            snaps.append(_fetch_snap(name, SUPPORT_CHANNEL, layout, from_dir, trust, progress))
    shutil.rmtree(layout.partial_dir, ignore_errors=True)

    progress("reading images.txt from the k8s snap")
    k8s_images = snap_images(k8s_snap)
    workload = workload_images(plan)
    lock_path = layout.lock
    wanted = merge_images(k8s_images, workload)
    if not refresh_images and _lock_matches(lock_path, wanted, plan.platforms):
        lock, images_action = read_lock(lock_path), "kept"
    else:
        lock = resolve_images(k8s_images, workload, plan.platforms, progress)
        write_lock(lock_path, lock)
        images_action = "resolved"
    check_archives(layout, plan, lock)

    store = None
    if images:
        clients: dict[str, RegistryClient] = {}

        def client_for(registry: str) -> RegistryClient:
            if registry not in clients:
                clients[registry] = pinning_client(registry)
            return clients[registry]

        try:
            store = fill_store(lock, bundle, client_for, parallel=parallel, progress=progress,
                               have=base.blob_digests() if base is not None else ())
        finally:
            for c in clients.values():
                c.close()
    else:
        shutil.rmtree(layout.oci_dir, ignore_errors=True)

    progress("hashing the bundle for the manifest")
    files = {rel: hash_file(bundle / rel) for rel in layout.files()}
    if store is not None and base is not None:
        files |= _skipped_entries(layout, base, store)
    entries = [
        SnapEntry(
            name=p.snap.name,
            revision=p.snap.revision,
            channel=p.channel,
            sha3_384=p.snap.sha3_384,
            snap_id=p.snap.snap_id,
            file=layout.rel(layout.snap(p.snap.name)),
            assertion=layout.rel(layout.assertion(p.snap.name)),
            chain=p.snap.chain_text,
        )
        for p in snaps
    ]
    manifest = Manifest(
        files=files,
        snaps=entries,
        images=lock.images,
        platforms=list(lock.platforms),
        tools=_tool_versions(
            any(p.action == "downloaded" for p in snaps), images_action == "resolved"
        ),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        signature_check=trust is not None,
        trusted_roots=sorted(trust.roots) if trust is not None else [],
    )
    if base is None:
        path, delta = write_manifest(bundle, manifest), None
    else:
        delta = delta_against(bundle, base, manifest)
        path = layout.manifest
        progress(delta.summary())
    return PrepareReport(bundle, snaps, lock, images_action, path, trust is not None, store,
                         delta)


def check_archives(layout: Bundle, plan: Plan, lock: ImageLock) -> list[ArchiveReport]:
    """The side-load archives in images/, validated as the runtime will read them before
    the manifest can list them: nothing the runtime would skip, every archive named and
    for the plan's platform, every image of the lock in one, at its locked digest.

    Raises the validator's own error (its fix, e.g. "Re-export with --name ..."): a
    manifest that listed a bad archive would only send verify's reader back here.
    With several platforms in the plan, the archives must be valid for one of them."""
    if stray := sideload.not_imported(layout.images_dir):
        raise sideload.not_imported_error(stray, f"found in {layout.images_dir}")
    archives = layout.archives()
    if not archives:
        return []
    failures: list[AirgapError] = []
    for plat in plan.platforms:
        try:
            return sideload.validate_archives(archives, sideload.expected_from_lock(lock, plat),
                                              plat)
        except AirgapError as exc:
            failures.append(exc)
    first = failures[0]
    if len(failures) == 1:
        raise first
    raise AirgapError(
        f"{first.brief} (checked for {plan.platforms[0]}; not valid for "
        f"{', '.join(plan.platforms[1:])} either)",
        details="\n".join(f"- {plat}: {exc.brief}"
                          for plat, exc in zip(plan.platforms, failures, strict=True)),
        resolution=first.resolution,
    )


def _skipped_entries(layout: Bundle, base: BaseManifest,
                     store: StoreReport) -> dict[str, FileDigests]:
    """The manifest entries of the blobs not fetched because the base holds them: the
    base manifest's own (a blob's sha256 is its name, so they are the same file)."""
    out = {}
    for digest in store.skipped:
        rel = layout.rel(blob_path(layout.oci_dir, digest))
        out[rel] = base.manifest.files[rel]
    return out

