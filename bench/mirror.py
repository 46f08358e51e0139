"""Mirror benchmark: `invoke mirror`'s engine vs `skopeo sync` on the same data, one run.

Two loopback registries: an upstream with N offline-built images that share their base
layer (plus one multi-platform index), and fresh mirrors. Measured: our first sync, our
no-change re-sync, skopeo's first sync and its no-change re-sync into another fresh
mirror. Prints times, bytes and ratios; asserts nothing (targets: first sync <= 0.7x
skopeo's, no-change re-sync <= 0.1x our first sync).

    python -m bench.mirror [--images 24]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from airgap import process
from airgap.mirror import mirror_images
from airgap.plan import parse_plan
from airgap.plan.images import ImageRef, parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from airgap.render.sync import DEFAULT_PARALLEL, RegistryAccess
from airgap.show import human_bytes
from tests.support.ocibuild import make_test_images
from tests.support.registry import Registry, start_registry


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def skopeo_sync(upstream: Registry, mirror: Registry, names: list[str], work: Path) -> float:
    images: dict[str, list[str]] = {}
    for name in names:
        repo, _, tag = name.rpartition(":")
        images.setdefault(repo, []).append(tag)
    src = work / "skopeo-src.yaml"
    src.write_text(yaml.safe_dump({upstream.address: {"tls-verify": False, "images": images}}))
    argv = ["skopeo", "sync", "--all", "--src", "yaml", "--dest", "docker",
            "--dest-tls-verify=false", str(src), mirror.address]
    start = time.perf_counter()
    process.run(argv, env={"HOME": str(work)}, timeout=900)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="single-platform images (>= 20)")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="regsync parallel")
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        sys.exit("skopeo is not installed (apt-get install skopeo)")
    work = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    os.environ["HOME"] = str(work / "home")
    os.environ["DOCKER_CONFIG"] = str(work / "home" / ".docker")
    (work / "home").mkdir()
    regs: list[Registry] = []
    try:
        upstream = start_registry(work / "upstream")
        regs.append(upstream)
        names = [f"bench/app{n:02d}:1.{n}" for n in range(args.images)]
        t = time.perf_counter()
        digests = make_test_images(upstream, names, multi_platform="bench/multi:1",
                                   workdir=work / "build")
        held = human_bytes(du(upstream.data_dir))
        print(f"built and pushed {len(digests)} images (shared base layer) "
              f"in {time.perf_counter() - t:.1f} s; upstream holds {held}")
        refs: list[ImageRef] = [parse_image_ref(f"{upstream.address}/{n}") for n in digests]
        lock = ImageLock(["linux/amd64"], [
            LockedImage(parse_image_ref(f"{upstream.address}/{n}"), d) for n, d in digests.items()])
        ups = [RegistryAccess(upstream.address, tls="disabled")]

        ours = start_registry(work / "mirror-ours")
        regs.append(ours)
        plan = parse_plan({"access": ["mirror"], "nodes": [{"name": "n", "address": "10.0.0.2"}],
                           "mirror": {"url": ours.url}})
        first = mirror_images(plan, refs, lock=lock, upstreams=ups, parallel=args.parallel)
        again = mirror_images(plan, refs, lock=lock, upstreams=ups)
        nolock_again = mirror_images(plan, refs, upstreams=ups)

        theirs = start_registry(work / "mirror-skopeo")
        regs.append(theirs)
        sk_first = skopeo_sync(upstream, theirs, list(digests), work)
        sk_again = skopeo_sync(upstream, theirs, list(digests), work)

        rows = [
            ("ours: first sync", first.seconds, first.bytes_copied, du(ours.data_dir)),
            ("ours: no-change re-sync (lock)", again.seconds, again.bytes_copied, None),
            ("ours: no-change re-sync (no lock)", nolock_again.seconds,
             nolock_again.bytes_copied, None),
            ("skopeo sync: first", sk_first, None, du(theirs.data_dir)),
            ("skopeo sync: no-change re-run", sk_again, None, None),
        ]
        print(f"\n{len(refs)} images, one run, loopback registries, {os.cpu_count()} CPUs")
        print(f"{'':36} {'seconds':>8} {'bytes copied':>14} {'mirror on disk':>15}")
        for label, secs, copied, disk in rows:
            moved = human_bytes(copied) if copied is not None else "-"
            on_disk = human_bytes(disk) if disk is not None else "-"
            print(f"{label:36} {secs:8.2f} {moved:>14} {on_disk:>15}")
        print("\nphases of our first sync: " +
              ", ".join(f"{k} {v:.2f} s" for k, v in first.phases.items()))
        print(f"ratio first sync ours/skopeo:        {first.seconds / sk_first:.2f}  "
              "(target <= 0.7)")
        print(f"ratio no-change re-sync/first sync:  {again.seconds / first.seconds:.3f} "
              "(target <= 0.1)")
        print("ratio no-change re-sync (no lock)/first: "
              f"{nolock_again.seconds / first.seconds:.3f}")
        print("skopeo no-change re-run / ours:      "
              f"{sk_again / max(again.seconds, 1e-6):.1f}x slower")
    finally:
        for reg in regs:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
