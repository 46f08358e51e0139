"""Offline trust: check an assertion's signature chain up to Canonical's root key.

snapd refuses a snap whose assertions do not chain to the root account-key it
embeds; we run the same check on the connected side (before anything crosses the
gap) and again on the air-gapped side, without snapd. The packaged anchor is the
byte-exact root account-key snapd embeds (airgap/data/canonical-root.account-key.assert);
``--trusted-root FILE`` replaces it for brand stores and tests.

Wire formats: airgap.openpgp; an account-key's id (public-key-sha3-384) is the
unpadded base64url SHA3-384 of its decoded public-key bytes.

A chain that reaches the root is not enough: like snapd (asserts/*.go
checkConsistency, ``db.IsTrustedAccount(authority-id)``), the assertion types in
DIRECTLY_TRUSTED must have an authority-id that is a trusted root's account, or any
developer key the store certified could sign a snap-declaration or snap-revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import resources
from pathlib import Path

from airgap.snaps.assertions import (
    Assertion,
    AssertionError_,
    decode_b64_strict,
    parse_stream,
    read_stream,
)
from airgap.snaps.openpgp import (
    PublicKey,
    Signature,
    TrustError,
    check_signature,
    parse_public_key,
    parse_signature,
)

ROOT_RESOURCE = "canonical-root.account-key.assert"


MAX_CHAIN = 8


# Types snapd's checkConsistency refuses unless authority-id is a trusted account
# ("... is not signed by a directly trusted authority" / "is not signed by a store").
DIRECTLY_TRUSTED = frozenset(
    {
        "account",
        "account-key",
        "snap-declaration",
        "snap-revision",
        "base-declaration",
        "store",
        "repair",
    }
)


@dataclass(frozen=True)
class AccountKey:
    assertion: Assertion
    key: PublicKey
    account_id: str
    name: str
    since: datetime
    until: datetime | None
    issuers: frozenset[bytes] = frozenset()

    @property
    def key_id(self) -> str:
        return self.key.key_id

    def valid_at(self, when: datetime) -> bool:
        return self.since <= when and (self.until is None or when < self.until)

    @property
    def short(self) -> str:
        return f"{self.account_id}/{self.name} ({self.key_id[:12]}...)"


@dataclass(frozen=True)
class Chain:
    """How one assertion verified: its signing keys from the root down."""

    assertion: Assertion
    keys: tuple[AccountKey, ...]

    def describe(self) -> str:
        names = [k.name for k in self.keys]
        return " -> ".join([*names, self.assertion.type])


def account_key(assertion: Assertion) -> AccountKey:
    """An account-key assertion's public key, checked against its public-key-sha3-384."""
    where = assertion.where
    if assertion.type != "account-key":
        raise TrustError(f"{where}: not an account-key")
    try:
        blob = decode_b64_strict(assertion.body, f"{where}: body")
    except AssertionError_ as exc:
        raise TrustError(exc.brief) from None
    key = parse_public_key(blob, where)
    claimed = assertion.header("public-key-sha3-384")
    if claimed != key.key_id:
        raise TrustError(
            f"{where}: public-key-sha3-384 {claimed} does not match the key in its body "
            f"({key.key_id})"
        )
    until = assertion.time("until") if assertion.get("until") else None
    return AccountKey(
        assertion=assertion,
        key=key,
        account_id=assertion.header("account-id"),
        name=assertion.header("name"),
        since=assertion.time("since"),
        until=until,
    )


def signing_time(assertion: Assertion) -> datetime | None:
    """When the assertion was made: its timestamp, else (account-keys) its since."""
    for name in ("timestamp", "since"):
        if assertion.get(name):
            return assertion.time(name)
    return None


@dataclass
class TrustStore:
    """Trusted roots plus the account-keys seen in streams (trusted only once chained)."""

    roots: dict[str, AccountKey]
    candidates: dict[str, list[Assertion]] = field(default_factory=dict)

    @classmethod
    def from_assertions(cls, assertions: Sequence[Assertion]) -> TrustStore:
        """Roots are trusted by construction, but must be self-consistent and self-signed."""
        roots: dict[str, AccountKey] = {}
        for a in assertions:
            if a.headers.get("type") != "account-key":
                raise TrustError(f"{a.where}: a trusted root must be an account-key")
            ak = account_key(a)
            if a.header("sign-key-sha3-384") != ak.key_id:
                raise TrustError(
                    f"{a.where}: a trusted root must be self-signed "
                    "(sign-key-sha3-384 equal to its public-key-sha3-384)"
                )
            sig = parse_signature(a.signature, a.where)
            learned = frozenset([sig.issuer]) if sig.issuer else frozenset()
            check_signature(a, ak.key, learned)
            roots[ak.key_id] = replace(ak, issuers=learned)
        if not roots:
            raise TrustError("no trusted root account-key")
        return cls(roots=roots)

    @classmethod
    def from_file(cls, path: str | Path) -> TrustStore:
        try:
            return cls.from_assertions(read_stream(path))
        except AssertionError_ as exc:
            raise TrustError(
                f"trusted root: {exc.brief}",
                resolution="Pass a valid account-key assertion with --trusted-root.",
            ) from None

    @classmethod
    def default(cls) -> TrustStore:
        """Canonical's root account-key, shipped with the package."""
        data = resources.files("airgap").joinpath("data", ROOT_RESOURCE).read_bytes()
        return cls.from_assertions(parse_stream(data, source=f"airgap/data/{ROOT_RESOURCE}"))

    def describe_roots(self) -> str:
        return ", ".join(k.short for k in self.roots.values())

    @property
    def trusted_accounts(self) -> frozenset[str]:
        """snapd's trusted set: the accounts of the roots (``canonical`` by default)."""
        return frozenset(k.account_id for k in self.roots.values())

    def _check_authority(self, assertion: Assertion, authority: str) -> None:
        """snapd refuses these types from any account but a root's, chain or no chain."""
        kind = assertion.get("type")
        if kind not in DIRECTLY_TRUSTED or authority in self.trusted_accounts:
            return
        trusted = ", ".join(repr(a) for a in sorted(self.trusted_accounts))
        raise TrustError(
            f"{assertion.where}: {kind} is not signed by a directly trusted authority: "
            f"authority-id {authority!r}, but snapd accepts a {kind} only from the trusted "
            f"root's account ({trusted})",
            resolution="Use the .assert exactly as `snap download` wrote it; for a brand store "
            "pass its root with --trusted-root.",
        )

    def add(self, assertions: Iterable[Assertion]) -> None:
        """Offer account-keys (from a stream) that may sign other assertions."""
        for a in assertions:
            kid = a.headers.get("public-key-sha3-384")
            if a.headers.get("type") == "account-key" and isinstance(kid, str):
                self.candidates.setdefault(kid, []).append(a)

    def verify(self, assertion: Assertion, _depth: int = 0) -> Chain:
        """The chain from a trusted root to ``assertion``; TrustError says where it breaks."""
        where = assertion.where
        if _depth > MAX_CHAIN:
            raise TrustError(f"{where}: signature chain longer than {MAX_CHAIN} keys (a loop?)")
        try:
            sign_key = assertion.header("sign-key-sha3-384")
            authority = assertion.header("authority-id")
            when = signing_time(assertion)
        except AssertionError_ as exc:
            raise TrustError(exc.brief) from None
        if sign_key in self.roots:
            signer = self.roots[sign_key]
            parents: tuple[AccountKey, ...] = ()
        else:
            signer, parents = self._chained_key(sign_key, where, _depth)
        if signer.account_id != authority:
            raise TrustError(
                f"{where}: authority-id {authority!r} but signed by a key of account "
                f"{signer.account_id!r} ({signer.name})"
            )
        if when is not None and not signer.valid_at(when):
            until = signer.until.isoformat() if signer.until else "no end"
            raise TrustError(
                f"{where}: signing key {signer.short} is not valid at the assertion's time "
                f"{when.isoformat()} (valid {signer.since.isoformat()} to {until})"
            )
        check_signature(assertion, signer.key, signer.issuers)
        self._check_authority(assertion, authority)
        return Chain(assertion=assertion, keys=(*parents, signer))

    def _chained_key(
        self, key_id: str, where: str, depth: int
    ) -> tuple[AccountKey, tuple[AccountKey, ...]]:
        options = self.candidates.get(key_id, [])
        if not options:
            raise TrustError(
                f"{where}: signed by key {key_id}, which is neither a trusted root "
                f"({self.describe_roots()}) nor an account-key in the same stream",
                resolution="Use the .assert exactly as `snap download` wrote it; for a brand store "
                "pass its root with --trusted-root.",
            )
        last: TrustError | None = None
        for candidate in options:
            try:
                ak = account_key(candidate)
                chain = self.verify(candidate, depth + 1)
            except (TrustError, AssertionError_) as exc:
                last = exc if isinstance(exc, TrustError) else TrustError(exc.brief)
                continue
            return ak, chain.keys
        assert last is not None
        raise TrustError(
            f"{where}: its signing key does not verify: {last.brief}", resolution=last.resolution
        ) from None


def verify_chains(assertions: Sequence[Assertion], store: TrustStore) -> list[Chain]:
    """Verify every assertion in a stream up to a trusted root.

    All of them, not only the snap-declaration and snap-revision: an assertion whose
    type was altered must fail too, not drop out of the check.
    """
    store.add(assertions)
    return [store.verify(a) for a in assertions]


__all__ = [
    "DIRECTLY_TRUSTED",
    "MAX_CHAIN",
    "ROOT_RESOURCE",
    "AccountKey",
    "Chain",
    "PublicKey",
    "Signature",
    "TrustError",
    "TrustStore",
    "account_key",
    "check_signature",
    "parse_public_key",
    "parse_signature",
    "signing_time",
    "verify_chains",
]
