"""Time to verify a chain of 3 assertions (root -> store -> snap-revision).

Run: python -m bench.trust. Uses Canonical's real assertions (tests/data/assertions):
the root key is 8192-bit RSA, the store key 4096-bit. Expected: milliseconds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from airgap.snaps.assertions import parse_stream
from airgap.snaps.trust import TrustStore, verify_chains

ROOT = Path(__file__).resolve().parent.parent

DATA = ROOT / "tests" / "data" / "assertions"
RUNS = 200


def main() -> None:
    root = (DATA / "canonical-root.account-key.assert").read_bytes()
    store = (DATA / "canonical-store.account-key.assert").read_bytes()
    revision = (DATA / "hello-world_29.snap-revision.assert").read_bytes()
    full, chain_only = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        trust = TrustStore.from_assertions(parse_stream(root, "root"))  # incl. root self-signature
        t1 = time.perf_counter()
        chains = verify_chains(parse_stream(store, "store") + parse_stream(revision, "rev"), trust)
        t2 = time.perf_counter()
        full.append(t2 - t0)
        chain_only.append(t2 - t1)
    assert chains[-1].describe() == "root -> store -> snap-revision"
    print(f"chain: {chains[-1].describe()} ({RUNS} runs)")
    print(
        f"load root + verify 3 assertions: median {statistics.median(full) * 1e3:.2f} ms, "
        f"max {max(full) * 1e3:.2f} ms"
    )
    print(
        f"verify store key + snap-revision (root loaded): median "
        f"{statistics.median(chain_only) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
