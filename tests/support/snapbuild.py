"""Real snaps and real-format assertions, built offline for tests.

The builders live in lab/standin.py (the lab builds stand-in snaps the same way);
this module keeps the tests' names and defaults: a "test-authority" whose keys the
tests pass with --trusted-root, and a publisher and note that say "tests". Nothing
here talks to the Snap Store.
"""

from __future__ import annotations

from lab.standin import (
    ROOT_SINCE,
    TIMESTAMP,
    Authority,
    SigningKey,
    account_key_assertion,
    build_snap,
    encode_assertion,
    join_stream,
    make_snap_set,
    new_key,
)

__all__ = [
    "ROOT_SINCE",
    "TIMESTAMP",
    "TestAuthority",
    "TestKey",
    "account_key_assertion",
    "build_snap",
    "encode_assertion",
    "join_stream",
    "make_snap_set",
    "new_key",
    "shared_authority",
]

TestKey = SigningKey


class TestAuthority(Authority):
    """A root key (trusted with --trusted-root) and a store key it signs."""

    __test__ = False  # not a pytest test class
    PUBLISHER = "test-publisher"
    NOTE = "built by the k8s-airgap tests\nnot published anywhere"

    @classmethod
    def create(
        cls, account_id: str = "test-authority", bits: int = 2048, store_until: str | None = None
    ) -> TestAuthority:
        return cls(
            new_key("root", account_id, bits), new_key("store", account_id, bits), store_until
        )


_AUTHORITIES: dict[str, TestAuthority] = {}


def shared_authority(name: str = "default") -> TestAuthority:
    """One test authority per name for the whole session (key generation is not free)."""
    if name not in _AUTHORITIES:
        _AUTHORITIES[name] = TestAuthority.create()
    return _AUTHORITIES[name]
