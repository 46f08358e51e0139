"""bench.fullgap's measurements (see bench/fullgap.py): set-up, then each step against
its floor or peer, every one in a process of its own."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
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


Run = Callable[[int], tuple[float, int]]


def median_pair(name: str, ours_fn: Run, peer_fn: Run, runs: int,
                labels: tuple[str, str], target: float,
                rivals: Sequence[tuple[str, str, Run]] = ()) -> None:
    """ours and its floor alternately, ``runs`` times each, after one warm-up round
    that is not counted, and with the order swapped every run (the first run after a
    set-up is several times slower whichever tool it is: measured); medians, peak RSS,
    ratio. rivals: (name, label, run) of other tools doing ours' job, measured in the
    same rounds (after the pair) and compared to ours with no target: the figures that
    chose ours over them."""
    ours_fn(runs)
    peer_fn(runs)
    a: list[tuple[float, int]] = []
    b: list[tuple[float, int]] = []
    extra: list[list[tuple[float, int]]] = [[] for _ in rivals]
    for i in range(runs):
        if i % 2:
            b.append(peer_fn(i))
            a.append(ours_fn(i))
        else:
            a.append(ours_fn(i))
            b.append(peer_fn(i))
        for got, (_, _, fn) in zip(extra, rivals, strict=True):
            got.append(fn(i))
    mo, mp = statistics.median(x for x, _ in a), statistics.median(x for x, _ in b)
    say(labels[0], mo, max(r for _, r in a), f"median of {runs}: {_all(a)}")
    say(labels[1], mp, max(r for _, r in b), f"median of {runs}: {_all(b)}")
    for got, (_, label, _) in zip(extra, rivals, strict=True):
        say(label, statistics.median(x for x, _ in got), max(r for _, r in got),
            f"median of {runs}: {_all(got)}")
    ratio(name, mo, mp, target)
    for got, (rival, _, _) in zip(extra, rivals, strict=True):
        mr = statistics.median(x for x, _ in got)
        print(f"  ratio {rival}: {mo / mr:.2f}x ({'ours' if mo <= mr else 'the rival'} "
              "measured faster)", flush=True)


def _all(xs: list[tuple[float, int]]) -> str:
    return ", ".join(f"{x:.2f}" for x, _ in xs)


def measure(work: Path, scale: float, runs: int = 3) -> None:
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
        from airgap.tools import find_tool

        regctl_bin = str(find_tool("regctl"))
        peer_dir = work / "peer-oci"

        def store_ours(_i: int) -> tuple[float, int]:
            shutil.rmtree(bundle, ignore_errors=True)
            return run_measured(py(
                "from pathlib import Path; from airgap.bundle.store import fill_store; "
                "from airgap.plan.lock import read_lock; from airgap.registry import "
                f"RegistryClient; fill_store(read_lock(Path('{lock_file}')), Path('{bundle}'), "
                "lambda r: RegistryClient(r, tls=False), parallel=4)"))

        def store_peer(_i: int) -> tuple[float, int]:
            shutil.rmtree(peer_dir, ignore_errors=True)
            copies = "; ".join(
                f"{regctl_bin} image copy {upstream.address}/{ref} ocidir://{peer_dir}:{tag}"
                for tag, ref in names.items())
            return run_measured(["sh", "-c", copies], env=regctl.env)

        median_pair("store / regctl", store_ours, store_peer, runs,
                    ("ours: fill_store (4 parallel)",
                     "peer: regctl image copy into an ocidir"), 1.2)
        store = dir_bytes(Bundle(bundle).oci_dir / "blobs")
        print(f"  store blob bytes {store} vs unique blob bytes {unique}: "
              f"{(store - unique) / unique * 100:+.3f}% (target within 0.5%)", flush=True)

        files = {rel: hash_file(bundle / rel) for rel in Bundle(bundle).files()}
        write_manifest(bundle, Manifest(files, [], lock.images, lock.platforms, {}))
        print("\n-- mirror --from-bundle (each run into repositories of its own)", flush=True)
        layers = [(f"sha256:{p.name}", p.stat().st_size)
                  for p in (Bundle(bundle).oci_dir / "blobs" / "sha256").iterdir()]
        listing = work / "blobs.json"
        listing.write_text(json.dumps(sorted(layers, key=lambda x: -x[1])))

        def push_ours(i: int) -> tuple[float, int]:
            plan_file = work / f"airgap-{i}.yaml"
            plan_file.write_text(json.dumps({
                "access": ["mirror"], "nodes": [{"name": "n1", "address": "10.0.0.2"}],
                "mirror": {"url": f"http://{mirror.address}", "path_prefix": f"run{i}"}}))
            return run_measured(py(
                "from pathlib import Path; from airgap.plan import load_plan; "
                "from airgap.plan.lock import read_lock; "
                "from airgap.mirror.from_bundle import push_bundle; "
                f"push_bundle(load_plan('{plan_file}'), Path('{bundle}'), "
                f"read_lock(Path('{lock_file}')), parallel=6)"))

        def push_floor(i: int) -> tuple[float, int]:
            return run_measured([*py(FLOOR_PUT.replace("/v2/floor/", f"/v2/floor{i}/")),
                                 floor.address, str(Bundle(bundle).oci_dir / "blobs" / "sha256"),
                                 str(listing)])

        oci = Bundle(bundle).oci_dir

        def push_regctl(i: int) -> tuple[float, int]:
            copies = "; ".join(
                f"{regctl_bin} image copy ocidir://{oci}@{digests[tag]} "
                f"{mirror.address}/regctl{i}/{ref}" for tag, ref in names.items())
            return run_measured(["sh", "-c", copies], env=regctl.env)

        median_pair("from-bundle / ingest floor", push_ours, push_floor, runs,
                    ("ours: mirror --from-bundle (6 parallel)",
                     "floor: parallel HTTP PUT of the same blobs"), 1.2,
                    [("from-bundle / regctl", "rival: regctl image copy ocidir:// -> mirror",
                      push_regctl)])
        _pack_steps(work, bundle, runs)
    finally:
        for reg in regs:
            reg.stop()


def _pack_steps(work: Path, bundle: Path, runs: int) -> None:
    print("\n-- pack and unpack (1 GiB parts)", flush=True)
    parts, dest = work / "parts", work / "unpacked"
    peer_parts, peer_dest = work / "peer-parts", work / "peer-unpacked"

    def pack_ours(_i: int) -> tuple[float, int]:
        shutil.rmtree(parts, ignore_errors=True)
        return run_measured(py(
            "from pathlib import Path; from airgap.bundle.pack import pack, parse_size; "
            f"pack(Path('{bundle}'), Path('{parts}'), parse_size('1G'))"))

    def pack_floor(_i: int) -> tuple[float, int]:
        shutil.rmtree(peer_parts, ignore_errors=True)
        peer_parts.mkdir()
        return run_measured(["sh", "-c", f"tar -C {bundle} -cf - . | split -b 1G - "
                             f"{peer_parts}/part- && openssl dgst -sha256 {peer_parts}/part-* "
                             "> /dev/null && sync"])

    median_pair("pack / tar|split+openssl", pack_ours, pack_floor, runs,
                ("ours: pack", "floor: tar -c | split -b 1G; openssl dgst; sync"), 1.2)

    def unpack_ours(_i: int) -> tuple[float, int]:
        shutil.rmtree(dest, ignore_errors=True)
        return run_measured(py(
            "from pathlib import Path; from airgap.bundle.unpack import unpack; "
            f"unpack(Path('{parts}'), Path('{dest}'))"))

    def unpack_floor(_i: int) -> tuple[float, int]:
        shutil.rmtree(peer_dest, ignore_errors=True)
        peer_dest.mkdir()
        return run_measured(["sh", "-c", f"openssl dgst -sha256 {peer_parts}/part-* > "
                             f"/dev/null && cat {peer_parts}/part-* | tar -C {peer_dest} -xf - "
                             "&& sync"])

    median_pair("unpack / openssl+tar", unpack_ours, unpack_floor, runs,
                ("ours: unpack (parts checked, files checked)",
                 "floor: openssl dgst parts; cat | tar -x; sync"), 1.2)
    print("\npeak RSS target: < 100 MiB for each of ours", flush=True)
