"""Side-load archives: per-image tars against one deduplicated archive, in one run.

Twelve images shaped like a real image list: all share a busybox base layer, two
groups of six share a 2 MiB "runtime" layer, and each has its own application layer
(random, so gzip cannot shrink it). They are pushed to a real registry on loopback and
exported with the real regctl, both ways. Printed: bytes and seconds for each way, the
ratio, and the single archive against the sum of its unique blob sizes (the only
overhead should be tar headers and padding; the product promises under 1%).

Run: python -m bench.sideload [--images N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from airgap.plan.images import parse_image_ref
from airgap.sideload import Source, export_images, select_images, validate_archives
from lab.ocibuild import Layout, Regctl, busybox_layer, files_layer, push_layout
from tests.support.registry import start_registry

PLATFORM = "linux/amd64"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1024 * 1024


def _layer(layout: Layout, files: dict[str, bytes]) -> tuple[dict[str, object], str]:
    raw = files_layer(files)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    desc = layout.put_blob(gzip.compress(raw, compresslevel=1, mtime=0), MEDIA_LAYER)
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}, diff_id


def build_images(layout_dir: Path, count: int, rng: random.Random) -> list[str]:
    """Tags written into one OCI layout; returns the tags."""
    layout = Layout(layout_dir)
    raw_base = busybox_layer()
    base_desc = layout.put_blob(gzip.compress(raw_base, mtime=0), MEDIA_LAYER)
    base = ({"mediaType": MEDIA_LAYER, "digest": base_desc.digest, "size": base_desc.size},
            "sha256:" + hashlib.sha256(raw_base).hexdigest())
    runtimes = [_layer(layout, {f"usr/lib/runtime-{g}/lib.so": rng.randbytes(2 * MiB)})
                for g in range(2)]
    tags = []
    for n in range(count):
        app = _layer(layout, {f"app/bin/app{n}": rng.randbytes(rng.randint(256, 768) * 1024)})
        layers = [base, runtimes[n % 2], app]
        config = json.dumps({
            "os": "linux", "architecture": "amd64",
            "config": {"Cmd": [f"/app/bin/app{n}"]},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        }, sort_keys=True).encode()
        cdesc = layout.put_blob(config, MEDIA_CONFIG)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": cdesc.digest, "size": cdesc.size},
            "layers": [d for d, _ in layers],
        }, sort_keys=True).encode()
        mdesc = layout.put_blob(manifest, MEDIA_MANIFEST)
        tag = f"app{n:02d}"
        layout.tag(tag, mdesc)
        tags.append(tag)
    return tags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12, help="number of images (>= 10)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-sideload-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)

    reg = start_registry(work / "registry")
    try:
        t0 = time.monotonic()
        tags = build_images(work / "layout", args.images, rng)
        regctl = Regctl(work / "regctl")
        regctl.configure(reg.address, tls="disabled")
        names = []
        for tag in tags:
            push_layout(work / "layout", f"{reg.address}/bench/{tag}:1.0", regctl=regctl, tag=tag)
            names.append(f"ghcr.io/bench/{tag}:1.0")
        print(f"built and pushed {len(tags)} images in {time.monotonic() - t0:.1f} s")

        source = Source.parse(reg.url)
        selected = select_images([parse_image_ref(n) for n in names], PLATFORM, source=source)

        t0 = time.monotonic()
        per = export_images(selected, work / "per-image", PLATFORM, source=source)
        t_per = time.monotonic() - t0
        t0 = time.monotonic()
        [single] = export_images(selected, work / "single", PLATFORM, source=source,
                                 single_archive=True)
        t_single = time.monotonic() - t0
        t0 = time.monotonic()
        validate_archives([single.path], [s.ref for s in selected], PLATFORM)
        t_validate = time.monotonic() - t0
    finally:
        reg.stop()

    per_bytes = sum(r.size for r in per)
    blobs = single.blob_bytes
    overhead = single.size - blobs
    print(f"{'':24}{'bytes':>14}{'seconds':>10}")
    print(f"{'per-image tars':24}{per_bytes:>14,}{t_per:>10.2f}   ({len(per)} files)")
    print(f"{'single archive':24}{single.size:>14,}{t_single:>10.2f}   (1 file, "
          f"{single.blob_count} blobs)")
    print(f"{'unique blobs (sum)':24}{blobs:>14,}")
    print(f"per-image / single: {per_bytes / single.size:.2f}x bytes, "
          f"{t_per / t_single:.2f}x time")
    pct = 100.0 * overhead / blobs
    within = pct < 1.0
    print(f"single archive overhead over unique blobs: {overhead:,} bytes = {pct:.3f}% "
          f"({'within' if within else 'NOT within'} 1%)")
    print(f"validate single archive (stream-hash every blob): {t_validate:.2f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
