"""Resolve images to digests: regctl (as `invoke prepare` did it) vs the registry client.

One loopback Distribution registry holds N offline-built images and one multi-platform
index. Both ways resolve the same references for the same platform, one image after the
other as prepare does: regctl with the calls bundle's resolve_image made (the
descriptor, the raw manifest, and for a single-platform image its config blob), and
airgap.registry.RegistryClient.resolve over one keep-alive connection. Prints both
times, the calls made and the ratio; asserts nothing but that both give the same answer.

    python -m bench.resolve [--images 24] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from airgap import tools
from airgap.mediatypes import INDEX_TYPES
from airgap.plan.images import ImageRef, parse_image_ref
from airgap.registry import ResolvedImage, pick_platforms, upstream_client
from airgap.render.sync import RegistryAccess
from tests.support.ocibuild import make_test_images, regctl_for
from tests.support.registry import start_registry

PLATFORMS = ["linux/amd64"]
RESOLVE_TIMEOUT = 120.0


class RegctlResolver:
    """bundle.resolve_image's regctl calls, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def _regctl(self, args: Sequence[str]) -> str:
        self.calls += 1
        return tools.run_tool("regctl", list(args), timeout=RESOLVE_TIMEOUT).stdout

    def resolve(self, ref: ImageRef, platforms: Sequence[str]) -> ResolvedImage:
        head = self._regctl(["manifest", "get", str(ref), "--format",
                             "{{ .GetDescriptor.Digest }} {{ .GetDescriptor.MediaType }}"]).split()
        digest, media_type = head[0], head[1] if len(head) > 1 else ""
        body = json.loads(self._regctl(["manifest", "get", str(ref.with_digest(digest)),
                                        "--format", "raw-body"]))
        if media_type in INDEX_TYPES:
            candidates = [(_platform(m.get("platform") or {}), m["digest"])
                          for m in body.get("manifests", [])]
        else:
            config = json.loads(self._regctl(["blob", "get", f"{ref.registry}/{ref.repository}",
                                              body["config"]["digest"], "--format", "raw-body"]))
            candidates = [(_platform(config), digest)]
        return ResolvedImage(ref, digest, media_type, pick_platforms(candidates, platforms))


def _platform(p: dict[str, str]) -> str:
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="single-platform images")
    parser.add_argument("--runs", type=int, default=3, help="runs of each way (median shown)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-resolve-"))
    reg = None
    try:
        reg = start_registry(work / "registry")
        names = [f"bench/app{n:02d}:1.{n}" for n in range(args.images)]
        digests = make_test_images(reg, names, multi_platform="bench/multi:1",
                                   workdir=work / "build")
        # regctl reads its registry config (http for this one) from a private home.
        os.environ.update(regctl_for(reg, work / "regctl").env)
        refs = [parse_image_ref(f"{reg.address}/{n}") for n in digests]
        print(f"{len(refs)} images ({args.images} single-platform, one 2-platform index) on "
              f"{reg.address}, {os.cpu_count()} CPUs, resolving for {', '.join(PLATFORMS)}")

        regctl_s, client_s = [], []
        for _ in range(args.runs):
            resolver = RegctlResolver()
            t = time.perf_counter()
            by_regctl = [resolver.resolve(r, PLATFORMS) for r in refs]
            regctl_s.append(time.perf_counter() - t)

            client = upstream_client(RegistryAccess(reg.address, tls="disabled"))
            t = time.perf_counter()
            by_client = [client.resolve(r, PLATFORMS) for r in refs]
            client_s.append(time.perf_counter() - t)
            client.close()
            if by_client != by_regctl:
                raise SystemExit("the two ways disagree:\n" + "\n".join(
                    f"{a} != {b}" for a, b in zip(by_regctl, by_client, strict=True) if a != b))
            if any(r.digest != digests[name] for r, name in zip(by_client, digests, strict=True)):
                raise SystemExit("a resolved digest differs from the pushed one")

        ours, theirs = statistics.median(client_s), statistics.median(regctl_s)
        print(f"{'':28} {'seconds':>8} {'calls':>18}")
        print(f"{'regctl (as prepare did)':28} {theirs:8.3f} {resolver.calls:>9} processes")
        print(f"{'RegistryClient.resolve':28} {ours:8.3f} {client.requests:>9} requests")
        print(f"ratio client/regctl: {ours / theirs:.3f} ({theirs / ours:.0f}x faster); "
              f"median of {args.runs} run(s); same digests and platforms: yes")
    finally:
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
