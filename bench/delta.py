"""Delta bundles at real size: what crosses the gap on day 2 when one image changes.

The base is bench.fullgap's dozen images (about 2 GiB of incompressible layers at
scale 1) in a bundle's image store, with images.lock and a manifest. Day 2 adds one
image of about 100 MiB that shares the base layer. The delta is prepared as prepare
does it with ``since``: fill_store told which blobs the base holds (they are not
fetched), the manifest of the whole new bundle, then every file the base holds dropped,
then signed (ssh-keygen). Printed: the delta's size against the full new bundle and
against the changed bytes (the new blobs plus the metadata: manifest.json, index.json,
images.lock, the signature), what the registry served, and the merge back (hard links).
Asserts nothing. Target: the delta within 1% of the changed bytes.

    python -m bench.delta [--scale 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.fullgap import MiB, build, dir_bytes, human_bytes, say


def measure(work: Path, scale: float) -> None:
    from airgap.bundle.delta import delta_against, merge_delta, read_base
    from airgap.bundle.layout import Bundle
    from airgap.bundle.manifest import Manifest, write_manifest
    from airgap.bundle.signing import sign_manifest
    from airgap.bundle.store import blob_path, fill_store
    from airgap.plan.images import parse_image_ref
    from airgap.plan.lock import ImageLock, LockedImage, write_lock
    from airgap.registry import RegistryClient
    from airgap.snaps import FileDigests, hash_file
    from bench.fullgap import Layout
    from tests.support.ocibuild import push_layout, regctl_for
    from tests.support.registry import start_registry

    t = time.perf_counter()
    src = work / "src"
    names = build(src, scale)
    base_layer = json.loads((src / "blobs" / "sha256" / json.loads(
        (src / "index.json").read_text())["manifests"][-1]["digest"].split(":")[1]
        ).read_bytes())["layers"][0]  # app7's first layer: the base layer most images share
    say("set-up: build 12 images (os.urandom)", time.perf_counter() - t,
        note=f"{human_bytes(dir_bytes(src / 'blobs'))} of unique blobs")
    upstream = start_registry(work / "upstream")
    try:
        t = time.perf_counter()
        regctl = regctl_for(upstream, work / "regctl")
        digests = {tag: push_layout(src, f"{upstream.address}/{ref}", regctl=regctl, tag=tag)
                   for tag, ref in names.items()}
        before = {b.name for b in (src / "blobs" / "sha256").iterdir()}
        lay = Layout(src)  # day 2: one new image on the shared base layer
        lay.tag(lay.image([base_layer, lay.random_layer(max(1, int(100 * scale)) * MiB,
                                                        "new.bin")]), "new")
        new_ref = "canonical/new-app:1"
        # The floor, from the builder, not from the product: the blobs day 2 created.
        added = [b for b in (src / "blobs" / "sha256").iterdir() if b.name not in before]
        new_blob_bytes = sum(b.stat().st_size for b in added)
        new_digest = push_layout(src, f"{upstream.address}/{new_ref}", regctl=regctl, tag="new")
        say("set-up: push them to the upstream (regctl)", time.perf_counter() - t)

        def lock_of(extra: dict[str, str]) -> ImageLock:
            refs = {names[tag]: d for tag, d in digests.items()} | extra
            return ImageLock(["linux/amd64"], [
                LockedImage(parse_image_ref(f"{upstream.address}/{r}"), d)
                for r, d in sorted(refs.items())])

        def client(_r: str) -> RegistryClient:
            return RegistryClient(upstream.address, tls=False)

        def finish(root: Path, lock: ImageLock,
                   extra_files: dict[str, FileDigests]) -> Manifest:
            write_lock(Bundle(root).lock, lock)
            files = {rel: hash_file(root / rel) for rel in Bundle(root).files()}
            files |= extra_files
            return Manifest(files, [], lock.images, lock.platforms, {},
                            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

        base_dir, delta_dir = work / "base", work / "delta"
        t = time.perf_counter()
        base_lock = lock_of({})
        fill_store(base_lock, base_dir, client, parallel=4)
        write_manifest(base_dir, finish(base_dir, base_lock, {}))
        say("base bundle: fill_store + manifest", time.perf_counter() - t,
            note=human_bytes(dir_bytes(base_dir)))

        print("\n-- day 2: one new image (prepare with since)", flush=True)
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL)
        t = time.perf_counter()
        base = read_base(Bundle(base_dir).manifest)
        new_lock = lock_of({new_ref: new_digest})
        store = fill_store(new_lock, delta_dir, client, parallel=4, have=base.blob_digests())
        oci = Bundle(delta_dir).oci_dir
        skipped = {Bundle(delta_dir).rel(blob_path(oci, d)): base.manifest.files[
            Bundle(delta_dir).rel(blob_path(oci, d))] for d in store.skipped}
        report = delta_against(delta_dir, base, finish(delta_dir, new_lock, skipped))
        sign_manifest(delta_dir, key)
        say("ours: fill_store(have=base) + manifest + delta + sign", time.perf_counter() - t,
            note=f"fetched {human_bytes(store.fetched_bytes)}, skipped {len(store.skipped)} "
                 f"blobs ({human_bytes(store.skipped_bytes)})")
        _figures(base_dir, delta_dir, report.kept, new_blob_bytes, len(added))

        t = time.perf_counter()
        merged = merge_delta(delta_dir, base_dir, work / "merged")
        say("merge_delta (check every file, hard-link)", time.perf_counter() - t,
            note=f"{merged.files} files, {merged.linked} linked, {merged.copied} copied")
    finally:
        upstream.stop()


def _figures(base_dir: Path, delta_dir: Path, kept: list[str], new_blob_bytes: int,
             new_blob_count: int) -> None:
    """The delta against the full bundle, and against what must cross: the blobs the
    new image added (counted in the builder's layout) plus the files every bundle
    rewrites (manifest.json, its signature, oci/index.json, images.lock)."""
    from airgap.bundle.layout import Bundle
    from airgap.bundle.manifest import read_manifest

    layout = Bundle(delta_dir)
    manifest = read_manifest(delta_dir)
    meta = sum(f.stat().st_size for f in (layout.manifest, layout.signature,
                                          layout.oci_dir / "index.json", layout.lock))
    full = sum(f.size for f in manifest.files.values()) + layout.manifest.stat().st_size \
        + layout.signature.stat().st_size
    changed = new_blob_bytes + meta
    delta = dir_bytes(delta_dir)
    print(f"  full new bundle   {full:>13} bytes ({human_bytes(full)})", flush=True)
    print(f"  delta             {delta:>13} bytes ({human_bytes(delta)}), {len(kept)} files "
          f"+ manifest.json + .sig", flush=True)
    print(f"  changed bytes     {changed:>13} bytes: the {new_blob_count} blobs the new image "
          f"added ({new_blob_bytes}, counted in the builder's layout) + metadata {meta} "
          "(manifest, sig, index.json, images.lock)", flush=True)
    print(f"  ratio delta / full: {delta / full:.4f}", flush=True)
    off = (delta - changed) / changed * 100
    print(f"  ratio delta / changed: {delta / changed:.4f} ({off:+.3f}%, target within 1%) "
          f"{'met' if abs(off) <= 1 else 'MISSED'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="layer sizes x SCALE (1: ~2 GiB)")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-delta-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measure(work, args.scale)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
