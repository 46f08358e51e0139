"""pack and unpack of a 300 MiB bundle (random bytes, gzip'd layers, text), in a child
process whose peak RSS is measured: memory stays flat, whatever the size. The figures
(MiB/s for pack, unpack, and a plain copy and read of the same bytes) are printed, not
asserted."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airgap.bundle.manifest import Manifest, write_manifest
from airgap.snaps import FileDigests

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

# Runs in a fresh interpreter: peak RSS before and after, so only pack/unpack count.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from airgap.bundle.pack import pack
from airgap.bundle.unpack import unpack

bundle, out, dest = map(Path, sys.argv[1:4])
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
t0 = time.monotonic()
report = pack(bundle, out, 64 * 1024 * 1024)
t1 = time.monotonic()
after_pack = rss()
result = unpack(out, dest, consume=True)
t2 = time.monotonic()
print(json.dumps({"base": base, "after_pack": after_pack, "after_unpack": rss(),
                  "pack_s": t1 - t0, "unpack_s": t2 - t1, "check_s": result.check_seconds,
                  "bytes_in": report.bytes_in, "bytes_out": report.bytes_out,
                  "parts": len(report.parts), "consumed": len(result.consumed),
                  "compressed": [f.path for f in report.files if f.compressed]}))
"""


def _write_random(path: Path, size: int) -> None:
    """Random bytes, written 1 MiB at a time (never whole in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for _ in range(size // MiB):
            fh.write(os.urandom(MiB))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _make_bundle(root: Path) -> None:
    _write_random(root / "snaps" / "k8s_1234.snap", 200 * MiB)
    (root / "oci" / "blobs" / "sha256").mkdir(parents=True)
    for n in range(4):  # image layers: gzip'd, so incompressible
        layer = root / "oci" / "blobs" / "sha256" / f"layer{n}"
        with gzip.open(layer, "wb", compresslevel=1) as fh:
            for _ in range(20):
                fh.write(os.urandom(MiB))
    text = b"".join(b"registry.example/img%05d:v1@sha256:%064x\n" % (i, i) for i in range(2000))
    with open(root / "images.lock", "wb") as fh:
        for _ in range(20 * MiB // len(text)):
            fh.write(text)
    files = {p.relative_to(root).as_posix(): FileDigests(p.stat().st_size, _sha256(p))
             for p in sorted(root.rglob("*")) if p.is_file()}
    write_manifest(root, Manifest(files=files, snaps=[], images=[], platforms=[], tools={}))


def _rate(n: int, seconds: float) -> str:
    return f"{n / MiB / max(seconds, 1e-9):.0f} MiB/s"


def test_300_mib_round_trip_in_flat_memory(tmp_path: Path) -> None:
    bundle, out, dest = tmp_path / "bundle", tmp_path / "media", tmp_path / "restored"
    _make_bundle(bundle)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), str(out), str(dest)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    growth = max(got["after_pack"], got["after_unpack"]) - got["base"]
    assert growth < 100 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB"
    assert got["bytes_in"] >= 295 * MiB and got["parts"] >= 4
    assert got["consumed"] == got["parts"]
    assert got["compressed"] == ["images.lock", "manifest.json"]
    for p in sorted(bundle.rglob("*")):
        if p.is_file():
            assert _sha256(dest / p.relative_to(bundle)) == _sha256(p), p

    # what the same bytes cost without pack: a copy (copy_file_range, as cp) and a read
    t0 = time.monotonic()
    shutil.copytree(bundle, tmp_path / "copy")
    copy_s = time.monotonic() - t0
    t0 = time.monotonic()
    for p in sorted(dest.rglob("*")):
        if p.is_file():
            with open(p, "rb", buffering=0) as fh:
                while fh.read(MiB):
                    pass
    read_s = time.monotonic() - t0
    total = got["bytes_in"]
    print(f"\npack {total / MiB:.0f} MiB into {got['parts']} parts "
          f"({got['bytes_out'] / MiB:.0f} MiB): {got['pack_s']:.1f} s, "
          f"{_rate(total, got['pack_s'])}; unpack (consume): {got['unpack_s']:.1f} s, "
          f"{_rate(total, got['unpack_s'])} (part check {got['check_s']:.1f} s); "
          f"copytree {_rate(total, copy_s)}; read {_rate(total, read_s)}; "
          f"peak RSS growth {growth / MiB:.1f} MiB")
