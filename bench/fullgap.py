"""Full air gap at real size: the image store, mirror --from-bundle, pack and unpack.

An upstream registry on loopback holds a dozen images shaped like Canonical
Kubernetes' list, about 2 GiB of incompressible layers in all: a base layer shared by
most images, one large image of several layers, two images sharing a big layer, and a
two-platform index. Each step runs in a process of its own (its peak RSS sampled from
/proc) against its floor or peer, alternately, after one warm-up round that is not
counted and with the order swapped every run, three times each by default (the median
is shown, every run's time too, since these ratios are near 1 and this disk swings):

- the image store (prepare's fill_store) vs `regctl image copy` of every image into an
  ocidir; and the store's blob bytes vs the unique blob bytes of the images;
- `mirror --from-bundle` into a fresh registry vs the registry's ingest floor: the
  same blobs pushed by parallel HTTP PUT (POST an upload, PUT the file), nothing else;
- pack vs `tar -c | split -b` then `openssl dgst -sha256` of the parts and `sync`;
  unpack vs `openssl dgst -sha256` of the parts, then `cat parts | tar -x` and `sync`
  (what a careful operator would type; ours fsync what they write, so the floors sync).

Prints every figure and ratio; asserts nothing. Targets: within 1.2x of each floor;
the store within 0.5% of the unique blob bytes; peak RSS under 100 MiB.

    python -m bench.fullgap [--scale 1.0] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from airgap.show import human_bytes

MiB = 1 << 20
LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CHUNK = 4 * MiB


class Layout:
    """An OCI layout written blob by blob, big layers streamed from os.urandom."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.index: list[dict[str, object]] = []

    def put(self, data: bytes, media: str) -> dict[str, object]:
        d = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / d).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{d}", "size": len(data)}

    def random_layer(self, size: int, name: str) -> dict[str, object]:
        """An uncompressed tar of one random file (incompressible)."""
        tmp = self.root / "blobs" / "tmp"
        h = hashlib.sha256()
        with tmp.open("wb") as fh:
            header = bytearray(512)
            header[0:len(name)] = name.encode()
            header[100:108] = b"0000644\0"
            header[108:124] = b"0000000\0" * 2
            header[124:136] = f"{size:011o}\0".encode()
            header[136:148] = b"00000000000\0"
            header[156:157] = b"0"
            header[257:263] = b"ustar\0"
            header[263:265] = b"00"
            header[148:156] = b" " * 8
            header[148:156] = f"{sum(header):06o}\0 ".encode()
            for part in (bytes(header),):
                fh.write(part)
                h.update(part)
            left = size
            while left:
                chunk = os.urandom(min(CHUNK, left))
                fh.write(chunk)
                h.update(chunk)
                left -= len(chunk)
            tail = b"\0" * ((-size) % 512 + 1024)
            fh.write(tail)
            h.update(tail)
        d = h.hexdigest()
        tmp.rename(self.root / "blobs" / "sha256" / d)
        return {"mediaType": LAYER, "digest": f"sha256:{d}", "size": size + 512 + len(tail)}

    def image(self, layers: Sequence[dict[str, object]], arch: str = "amd64"
              ) -> dict[str, object]:
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [x["digest"] for x in layers]}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                    "config": self.put(config, CONFIG), "layers": list(layers)}
        return self.put(json.dumps(manifest).encode(), MANIFEST)

    def tag(self, desc: dict[str, object], tag: str) -> None:
        self.index.append({**desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": INDEX, "manifests": self.index}))


def build(root: Path, scale: float) -> dict[str, str]:
    """The dozen images (tag -> repo:tag) into one layout; about 2 GiB at scale 1."""
    lay = Layout(root)

    def mb(n: float) -> int:
        return max(1, int(n * scale)) * MiB

    base = lay.random_layer(mb(30), "base.bin")
    shared = lay.random_layer(mb(300), "shared.bin")
    names: dict[str, str] = {}
    big = [lay.random_layer(mb(s), f"cilium{i}.bin") for i, s in enumerate((60, 300, 300, 200))]
    lay.tag(lay.image([base, *big]), "cilium")
    names["cilium"] = "canonical/cilium:1.17"
    for n, repo in enumerate(("canonical/cilium-operator", "canonical/coredns")):
        own = lay.random_layer(mb(40 + 10 * n), f"own{n}.bin")
        lay.tag(lay.image([base, shared, own]), f"pair{n}")
        names[f"pair{n}"] = f"{repo}:1.{n}"
    plat = [lay.image([lay.random_layer(mb(60), f"{a}.bin")], arch=a) for a in ("amd64", "arm64")]
    for p, a in zip(plat, ("amd64", "arm64"), strict=True):
        p["platform"] = {"os": "linux", "architecture": a}
    lay.tag(lay.put(json.dumps({"schemaVersion": 2, "mediaType": INDEX,
                                "manifests": plat}).encode(), INDEX), "multi")
    names["multi"] = "canonical/pause:3.10"
    for n, s in enumerate((120, 90, 80, 70, 60, 50, 40, 30)):
        lay.tag(lay.image([base, lay.random_layer(mb(s), f"app{n}.bin")]), f"app{n}")
        names[f"app{n}"] = f"canonical/app{n}:1"
    return names


def _hwm(pid: int) -> int:
    """VmHWM (peak RSS since exec) of pid and its children, the largest, in bytes."""
    best = 0
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return best


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of one child process tree, sampled every 20 ms from
    /proc (wait4's ru_maxrss would count the parent's pages copied before exec)."""
    os.sync()  # each run starts with nothing of the last one's still to be written back
    t = time.perf_counter()
    proc = subprocess.Popen(list(argv), env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _hwm(proc.pid))
        time.sleep(0.02)
    secs = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err[-2000:]}")
    return secs, peak


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="layer sizes x SCALE (1: ~2 GiB)")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each step and its floor")
    args = ap.parse_args()
    from bench.fullgap_steps import measure

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-fullgap-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measure(work, args.scale, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def say(what: str, secs: float, rss: int | None = None, note: str = "") -> None:
    rss_s = f"{rss / MiB:7.1f} MiB" if rss else " " * 11
    print(f"{what:<44} {secs:8.2f} s  {rss_s}  {note}", flush=True)


def ratio(name: str, ours: float, floor: float, target: float) -> None:
    r = ours / floor if floor else float("inf")
    print(f"  ratio {name}: {r:.2f}x (target <= {target}x) {'met' if r <= target else 'MISSED'}",
          flush=True)


__all__ = ["build", "dir_bytes", "human_bytes", "py", "ratio", "run_measured", "say"]

if __name__ == "__main__":
    main()
