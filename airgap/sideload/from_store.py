"""Side-load archives built on the air-gapped side, from the bundle's image store.

No registry and no regctl: one OCI archive (``images.tar``) for the nodes' platform,
each blob once, each image named by its fully qualified reference (what containerd's
import needs). The platform manifest of a multi-platform image is taken from
images.lock, so the runtime records the same digest a pull would. The blobs are read
from the store through symbolic links in a temporary layout, so nothing is copied twice;
the archive is validated like an exported one before it is moved into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from airgap.bundle.layout import Bundle
from airgap.bundle.store import blob_path, read_index, stored_graph
from airgap.errors import AirgapError
from airgap.mediatypes import OCI_INDEX, is_index
from airgap.plan.lock import ImageLock
from airgap.sideload.archive import NAME_ANNOTATION, REF_ANNOTATION
from airgap.sideload.export import SINGLE_ARCHIVE
from airgap.sideload.layout_tar import write_layout_tar
from airgap.sideload.select import SideloadImage, expected_refs
from airgap.sideload.validate import ArchiveReport, validate_archives


def archive_from_store(bundle: Path, lock: ImageLock, images: Sequence[SideloadImage],
                       out_dir: Path, platform: str) -> list[ArchiveReport]:
    """One validated archive of ``images`` for ``platform`` from DIR/oci, into out_dir."""
    store = Bundle(bundle).oci_dir
    stored = {s.ref: s for s in read_index(bundle)}
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sideload-store-", dir=out_dir))
    try:
        layout = work / "layout"
        (layout / "blobs" / "sha256").mkdir(parents=True)
        entries, blobs = [], set()
        for img in images:
            locked = lock.find(img.ref)
            s = stored.get(str(locked.ref)) if locked else None
            if locked is None or s is None or s.digest != locked.digest:
                raise AirgapError(
                    f"{bundle}: {img.ref.name} is not in the image store at images.lock's digest",
                    resolution="Verify the bundle (`invoke verify`); prepare it again with "
                    "images if it was made with --no-images.")
            g = stored_graph(bundle, s)
            digest = s.digest
            if is_index(s.media_type):
                digest = locked.platforms.get(platform, "")
                if digest not in g.manifests:
                    raise AirgapError(f"{img.ref.name} has no {platform} manifest in the store",
                                      resolution="Use the plan's platform (--platform).")
            media, body = g.manifests[digest]
            manifest = json.loads(body)
            blobs |= {digest, str(manifest["config"]["digest"]),
                      *(str(layer["digest"]) for layer in manifest.get("layers", []))}
            entries.append({"mediaType": media, "digest": digest, "size": len(body),
                            "annotations": {NAME_ANNOTATION: img.ref.name,
                                            REF_ANNOTATION: img.ref.name}})
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (layout / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
            separators=(",", ":")))
        files = ["oci-layout", "index.json"]
        for d in sorted(blobs):
            rel = blob_path(Path("."), d).as_posix()
            (layout / rel).symlink_to(blob_path(store, d).resolve())
            files.append(rel)
        built = write_layout_tar(layout, work / SINGLE_ARCHIVE, files)
        reports = validate_archives([built], expected_refs(images), platform,
                                    display=lambda p: f"{p.name} (built from the store)")
        dest = out_dir / SINGLE_ARCHIVE
        built.replace(dest)
        r = reports[0]
        return [ArchiveReport(dest, r.format, r.images, r.size, r.blob_count, r.blob_bytes)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
