"""Time to verify a 1 GiB snap against its assertion vs `openssl dgst -sha3-384`.

Run: python -m bench.verify [--size-mib N]. Prints both times and the ratio (target
<= 1.2: our streaming check should cost no more than hashing the file with openssl).
The file and its assertion are written to a temporary directory and deleted after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from airgap.assertions import parse_stream  # noqa: E402
from airgap.snaps import verify_snap  # noqa: E402
from airgap.trust import TrustStore  # noqa: E402
from tests.support.snapbuild import TestAuthority  # noqa: E402


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1024 * 1024)
    with path.open("wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is not installed")
    probe = subprocess.run(["openssl", "dgst", "-sha3-384", "/dev/null"], capture_output=True)
    if probe.returncode != 0:
        sys.exit("this openssl has no sha3-384")
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        snap = Path(tmp) / "big.snap"
        _write_file(snap, args.size_mib * 1024 * 1024)
        auth = TestAuthority.create()
        # the assertion hashes the file once; its own cost is not part of the timing
        assertion = Path(tmp) / "big.assert"
        t = time.perf_counter()
        assertion.write_bytes(_assert_streaming(auth, snap))
        trust = TrustStore.from_assertions(parse_stream(auth.root_assertion))
        print(
            f"file: {args.size_mib} MiB; assertion written in {time.perf_counter() - t:.2f} s "
            "(also warms the page cache)"
        )
        t = time.perf_counter()
        subprocess.run(["openssl", "dgst", "-sha3-384", str(snap)], check=True, capture_output=True)
        openssl = time.perf_counter() - t
        t = time.perf_counter()
        v = verify_snap(snap, assertion, "big", trust=trust)
        ours = time.perf_counter() - t
        assert v.size == snap.stat().st_size
    print(
        f"openssl dgst -sha3-384:          {openssl:7.2f} s ({args.size_mib / openssl:6.0f} MiB/s)"
    )
    print(f"verify_snap (sha3+sha256+chain): {ours:7.2f} s ({args.size_mib / ours:6.0f} MiB/s)")
    print(f"ratio ours/openssl: {ours / openssl:.2f} (target <= 1.2)")


def _assert_streaming(auth: TestAuthority, snap: Path) -> bytes:
    from airgap.snaps import snap_sha3_384
    from tests.support.snapbuild import join_stream

    sha3, size = snap_sha3_384(snap)
    sid = "b" * 32
    return join_stream(
        [auth.store_assertion, auth.declaration("big", sid), auth.revision(sid, sha3, size)]
    )


if __name__ == "__main__":
    main()
