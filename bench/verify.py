"""Verify a 1 GiB snap against its assertion vs `openssl dgst -sha3-384` of the same file.

Run from the project root: python -m bench.verify [--size-mib N] [--runs N]. Our check
computes SHA3-384 (against the snap-revision) and sha256 (for the manifest) and walks
the signature chain; openssl computes SHA3-384 alone, the physical floor of the check.
Runs alternate (ours, openssl) after one warm-up of the page cache; the median of each
is printed with the ratio (target <= 1.05). The file lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from airgap.snaps import snap_sha3_384, verify_snap
from airgap.snaps.assertions import parse_stream
from airgap.snaps.trust import TrustStore
from lab.standin import Authority, join_stream

TARGET = 1.05


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)


def _timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is not installed")
    probe = subprocess.run(["openssl", "dgst", "-sha3-384", "/dev/null"], capture_output=True)
    if probe.returncode != 0:
        sys.exit("this openssl has no sha3-384")
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        snap = Path(tmp) / "big.snap"
        _write_file(snap, args.size_mib * 1024 * 1024)
        auth = Authority.create()
        sha3, size = snap_sha3_384(snap)  # also warms the page cache
        sid = "b" * 32
        assertion = Path(tmp) / "big.assert"
        assertion.write_bytes(
            join_stream(
                [auth.store_assertion, auth.declaration("big", sid), auth.revision(sid, sha3, size)]
            )
        )
        trust = TrustStore.from_assertions(parse_stream(auth.root_assertion))

        def ours() -> None:
            v = verify_snap(snap, assertion, "big", trust=trust)
            assert v.size == size

        def openssl(algo: str) -> None:
            subprocess.run(["openssl", "dgst", f"-{algo}", str(snap)], check=True,
                           capture_output=True)

        times: dict[str, list[float]] = {"ours": [], "sha3-384": [], "sha256": []}
        for _ in range(args.runs):
            times["ours"].append(_timed(ours))
            times["sha3-384"].append(_timed(lambda: openssl("sha3-384")))
            times["sha256"].append(_timed(lambda: openssl("sha256")))
    med = {k: statistics.median(v) for k, v in times.items()}
    mib = args.size_mib
    print(f"file: {mib} MiB, {args.runs} alternating runs, medians:")
    print(f"  openssl dgst -sha3-384 (floor):      {med['sha3-384']:6.2f} s "
          f"({mib / med['sha3-384']:5.0f} MiB/s)")
    print(f"  openssl dgst -sha256 (for scale):    {med['sha256']:6.2f} s "
          f"({mib / med['sha256']:5.0f} MiB/s)")
    print(f"  verify_snap (sha3 + sha256 + chain): {med['ours']:6.2f} s "
          f"({mib / med['ours']:5.0f} MiB/s)")
    print("  per-run ratios ours/sha3-384: "
          + ", ".join(f"{o / s:.2f}" for o, s in zip(times["ours"], times["sha3-384"],
                                                     strict=True)))
    ratio = med["ours"] / med["sha3-384"]
    print(f"ratio ours/openssl sha3-384 (median): {ratio:.2f} (target <= {TARGET})"
          + ("" if ratio <= TARGET else "  MISSED"))


if __name__ == "__main__":
    main()
