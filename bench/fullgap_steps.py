"""bench.fullgap's measurements (see bench/fullgap.py): set-up, then each step against
its floor or peer, every one in a process of its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.fullgap import build, dir_bytes, human_bytes, py, ratio, run_measured, say

FLOOR_PUT = r'''
import http.client, json, sys, threading, urllib.parse
from concurrent.futures import ThreadPoolExecutor
host, store, listing = sys.argv[1], sys.argv[2], sys.argv[3]
blobs = json.load(open(listing))
local = threading.local()
def conn():
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = http.client.HTTPConnection(host, timeout=300)
    return c
def put(item):
    digest, size = item
    c = conn()
    c.request("POST", "/v2/floor/blobs/uploads/")
    r = c.getresponse(); r.read()
    loc = urllib.parse.urlsplit(r.getheader("location"))
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
    c.putrequest("PUT", path)
    c.putheader("Content-Length", str(size))
    c.putheader("Content-Type", "application/octet-stream")
    c.endheaders()
    with open(store + "/" + digest.split(":")[1], "rb") as fh:
        while chunk := fh.read(1 << 20):
            c.send(chunk)
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
with ThreadPoolExecutor(6) as pool:
    list(pool.map(put, blobs))
'''


def measure(work: Path, scale: float) -> None:
    from airgap.bundle import Manifest, write_manifest
    from airgap.bundle.layout import Bundle
    from airgap.plan.images import parse_image_ref
    from airgap.plan.lock import ImageLock, LockedImage, write_lock
    from airgap.snaps import hash_file
    from tests.support.ocibuild import push_layout, regctl_for
    from tests.support.registry import start_registry

    t = time.perf_counter()
    src = work / "src"
    names = build(src, scale)
    unique = dir_bytes(src / "blobs")
    say("set-up: build 12 images (os.urandom)", time.perf_counter() - t,
        note=f"{human_bytes(unique)} of unique blobs")
    regs = [start_registry(work / n) for n in ("upstream", "mirror", "floor")]
    upstream, mirror, floor = regs
    try:
        t = time.perf_counter()
        regctl = regctl_for(upstream, work / "regctl")
        for reg in (mirror, floor):
            regctl.configure(reg.address, tls="disabled")
        digests = {tag: push_layout(src, f"{upstream.address}/{ref}", regctl=regctl, tag=tag)
                   for tag, ref in names.items()}
        say("set-up: push them to the upstream (regctl)", time.perf_counter() - t)
        lock = ImageLock(["linux/amd64"], [
            LockedImage(parse_image_ref(f"{upstream.address}/{names[tag]}"), d)
            for tag, d in sorted(digests.items())])
        lock_file = work / "images.lock"
        write_lock(lock_file, lock)
        bundle = work / "bundle"

        print("\n-- the image store (prepare)", flush=True)
        ours, rss = run_measured(py(
            "import sys; from pathlib import Path; from airgap.bundle.store import fill_store; "
            "from airgap.plan.lock import read_lock; from airgap.registry import RegistryClient;"
            f"fill_store(read_lock(Path('{lock_file}')), Path('{bundle}'), "
            "lambda r: RegistryClient(r, tls=False), parallel=4)"))
        store = dir_bytes(Bundle(bundle).oci_dir / "blobs")
        say("ours: fill_store (4 parallel)", ours, rss, human_bytes(store))
        peer_dir = work / "peer-oci"
        copies = "; ".join(
            f"regctl image copy {upstream.address}/{ref} ocidir://{peer_dir}:{tag}"
            for tag, ref in names.items())
        from airgap.tools import find_tool

        regctl_bin = str(find_tool("regctl"))
        peer, prss = run_measured(["sh", "-c", copies.replace("regctl ", regctl_bin + " ")],
                                  env=regctl.env)
        say("peer: regctl image copy into an ocidir", peer, prss,
            human_bytes(dir_bytes(peer_dir / "blobs")))
        ratio("store / regctl", ours, peer, 1.2)
        print(f"  store blob bytes {store} vs unique blob bytes {unique}: "
              f"{(store - unique) / unique * 100:+.3f}% (target within 0.5%)", flush=True)

        files = {rel: hash_file(bundle / rel) for rel in Bundle(bundle).files()}
        write_manifest(bundle, Manifest(files, [], lock.images, lock.platforms, {}))
        plan_file = work / "airgap.yaml"
        plan_file.write_text(json.dumps({
            "access": ["mirror"], "nodes": [{"name": "n1", "address": "10.0.0.2"}],
            "mirror": {"url": f"http://{mirror.address}"}}))

        print("\n-- mirror --from-bundle", flush=True)
        ours, rss = run_measured(py(
            "from pathlib import Path; from airgap.plan import load_plan; "
            "from airgap.plan.lock import read_lock; "
            "from airgap.mirror.from_bundle import push_bundle; "
            f"push_bundle(load_plan('{plan_file}'), Path('{bundle}'), "
            f"read_lock(Path('{lock_file}')), parallel=6)"))
        say("ours: mirror --from-bundle (6 parallel)", ours, rss)
        layers = [(f"sha256:{p.name}", p.stat().st_size)
                  for p in (Bundle(bundle).oci_dir / "blobs" / "sha256").iterdir()]
        listing = work / "blobs.json"
        listing.write_text(json.dumps(sorted(layers, key=lambda x: -x[1])))
        fl, frss = run_measured([*py(FLOOR_PUT), floor.address,
                                 str(Bundle(bundle).oci_dir / "blobs" / "sha256"), str(listing)])
        say("floor: parallel HTTP PUT of the same blobs", fl, frss)
        ratio("from-bundle / ingest floor", ours, fl, 1.2)
        _pack_steps(work, bundle)
    finally:
        for reg in regs:
            reg.stop()


def _pack_steps(work: Path, bundle: Path) -> None:
    print("\n-- pack and unpack (1 GiB parts)", flush=True)
    parts, dest = work / "parts", work / "unpacked"
    ours, rss = run_measured(py(
        "from pathlib import Path; from airgap.bundle.pack import pack, parse_size; "
        f"r = pack(Path('{bundle}'), Path('{parts}'), parse_size('1G')); "
        "print(r.ratio)"))
    say("ours: pack", ours, rss, human_bytes(dir_bytes(parts)))
    peer_parts = work / "peer-parts"
    peer_parts.mkdir()
    peer, prss = run_measured(["sh", "-c", f"tar -C {bundle} -cf - . | split -b 1G - "
                               f"{peer_parts}/part-; openssl dgst -sha256 {peer_parts}/part-* "
                               "> /dev/null"])
    say("floor: tar -c | split -b 1G; openssl dgst", peer, prss)
    ratio("pack / tar|split+openssl", ours, peer, 1.2)
    ours, rss = run_measured(py(
        "from pathlib import Path; from airgap.bundle.unpack import unpack; "
        f"unpack(Path('{parts}'), Path('{dest}'))"))
    say("ours: unpack (parts checked, files checked)", ours, rss, human_bytes(dir_bytes(dest)))
    peer_dest = work / "peer-unpacked"
    peer_dest.mkdir()
    peer, prss = run_measured(["sh", "-c", f"openssl dgst -sha256 {peer_parts}/part-* > "
                               f"/dev/null && cat {peer_parts}/part-* | tar -C {peer_dest} -xf -"])
    say("floor: openssl dgst -sha256 parts; cat | tar -x", peer, prss)
    ratio("unpack / openssl+tar", ours, peer, 1.2)
    print("\npeak RSS target: < 100 MiB for each of ours", flush=True)
