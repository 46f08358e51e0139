"""Snaps: download them, check them offline against their assertions, look inside.

On the air-gapped side `snap ack` + `snap install` is the only thing standing between
a corrupted or substituted file and the nodes, and it fails late and vaguely. Here the
same facts snapd checks are checked first, in Python, without snapd: the file's
SHA3-384 and size against the snap-revision, the snap-id between snap-declaration
and snap-revision, the snap's name, and (airgap.snaps.trust) the signature chain.

Files are streamed in large chunks (a k8s snap is hundreds of MiB), never read whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import AirgapError
from airgap.snaps.assertions import Assertion, AssertionError_, b64url_nopad, find, read_stream
from airgap.snaps.trust import Chain, TrustError, TrustStore, verify_chains

CHUNK = 4 * 1024 * 1024


class SnapError(AirgapError):
    """A snap that does not match its assertions, or cannot be fetched or read."""

    default_resolution = ("Fetch it again with `invoke prepare` (a re-run keeps what verifies "
                          "and downloads only what is missing or bad).")


@dataclass(frozen=True)
class FileDigests:
    size: int
    sha256: str
    sha3_384: str | None = None


def hash_file(path: Path, *, sha3: bool = False, chunk: int = CHUNK) -> FileDigests:
    """sha256 (and SHA3-384 for snaps) in one streaming pass over the file.

    With both digests, each runs in its own thread on the same chunk while the next
    chunk is read (hashlib releases the GIL on large updates): the pass then costs
    about as much as SHA3-384 alone, the slower of the two.
    """
    h256 = hashlib.sha256()
    h3 = hashlib.sha3_384() if sha3 else None
    size = 0
    with open(path, "rb", buffering=0) as fh:
        if h3 is None:
            buf = bytearray(chunk)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                h256.update(view[:n])
                size += n
            return FileDigests(size, h256.hexdigest(), None)
        bufs = (bytearray(chunk), bytearray(chunk))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha3") as pool:
            current = 0
            n = fh.readinto(bufs[current])
            while n:
                part = memoryview(bufs[current])[:n]
                third = pool.submit(h3.update, part)
                h256.update(part)
                current ^= 1
                following = fh.readinto(bufs[current])  # overlaps the SHA3 of this chunk
                third.result()
                size += n
                n = following
    return FileDigests(size, h256.hexdigest(), b64url_nopad(h3.digest()))


def snap_sha3_384(path: Path, chunk: int = CHUNK) -> tuple[str, int]:
    """The snap-sha3-384 of a file as the store writes it, and its size."""
    h = hashlib.sha3_384()
    buf = bytearray(chunk)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return b64url_nopad(h.digest()), size


@dataclass(frozen=True)
class SnapAssertions:
    """The snap-declaration and snap-revision that describe one snap file."""

    declaration: Assertion
    revision: Assertion
    stream: list[Assertion]

    @property
    def name(self) -> str:
        return self.declaration.header("snap-name")

    @property
    def snap_id(self) -> str:
        return self.revision.header("snap-id")

    @property
    def snap_revision(self) -> str:
        return self.revision.header("snap-revision")

    @property
    def sha3_384(self) -> str:
        return self.revision.header("snap-sha3-384")

    @property
    def size(self) -> int:
        text = self.revision.header("snap-size")
        if not text.isdigit():
            raise SnapError(f"{self.revision.where}: snap-size {text!r} is not a number")
        return int(text)


def snap_assertions(
    stream: Sequence[Assertion], assert_path: Path, name: str, sha3: str | None = None
) -> SnapAssertions:
    """Pick the declaration and revision for ``name`` and check they agree."""
    decls = find(stream, "snap-declaration")
    revs = find(stream, "snap-revision")
    if not revs:
        raise SnapError(
            f"{assert_path}: no snap-revision assertion (it says nothing about any snap file)",
            resolution=f"Download {name} again with `snap download`; keep the .assert it writes.",
        )
    if not decls:
        raise SnapError(
            f"{assert_path}: no snap-declaration assertion",
            resolution=f"Download {name} again with `snap download`.",
        )
    matching = [d for d in decls if d.get("snap-name") == name]
    if not matching:
        names = ", ".join(repr(d.get("snap-name")) for d in decls)
        raise SnapError(
            f"{assert_path}: the snap-declaration is for snap {names}, expected {name!r}",
            resolution=f"Put the .assert of {name} next to {name}.snap.",
        )
    decl = matching[0]
    rev = revs[0]
    if sha3 is not None:
        rev = next((r for r in revs if r.get("snap-sha3-384") == sha3), revs[0])
    if rev.get("snap-id") != decl.get("snap-id"):
        raise SnapError(
            f"{assert_path}: snap-id mismatch: snap-declaration of {name!r} has snap-id "
            f"{decl.get('snap-id')}, snap-revision has snap-id {rev.get('snap-id')}",
            resolution="The assertions are for different snaps; download the snap again.",
        )
    try:
        for header in ("snap-sha3-384", "snap-size", "snap-revision"):
            rev.header(header)
    except AssertionError_ as exc:
        raise SnapError(exc.brief) from None
    return SnapAssertions(decl, rev, list(stream))


@dataclass(frozen=True)
class VerifiedSnap:
    name: str
    path: Path
    assert_path: Path
    revision: str
    snap_id: str
    sha3_384: str
    size: int
    sha256: str
    chains: tuple[Chain, ...] | None

    @property
    def chain_text(self) -> str:
        """The key chain of its snap-revision, e.g. `root -> store -> snap-revision`."""
        if self.chains is None:
            return "NOT CHECKED (--no-signature-check)"
        for c in self.chains:
            if c.assertion.type == "snap-revision":
                return c.describe()
        return "?"


def verify_snap(
    snap: Path,
    assert_path: Path,
    name: str,
    *,
    trust: TrustStore | None,
    digests: FileDigests | None = None,
) -> VerifiedSnap:
    """Check a .snap against its .assert as snapd would; SnapError says what differs."""
    if not snap.is_file():
        raise SnapError(f"{snap}: snap file not found")
    try:
        stream = read_stream(assert_path)
    except AssertionError_ as exc:
        raise SnapError(
            exc.brief,
            resolution=exc.resolution or f"Download {name} again; its .assert is damaged.",
        ) from None
    if digests is None or digests.sha3_384 is None:
        digests = hash_file(snap, sha3=True)
    assert digests.sha3_384 is not None
    sa = snap_assertions(stream, assert_path, name, digests.sha3_384)
    chains: tuple[Chain, ...] | None = None
    if trust is not None:
        try:
            chains = tuple(verify_chains(stream, trust))
        except (TrustError, AssertionError_) as exc:
            raise SnapError(
                f"signature check failed: {exc.brief}",
                resolution=exc.resolution
                or f"Do not install {snap.name}; download it again from the store.",
            ) from None
    want_size, want_sha3 = sa.size, sa.sha3_384
    got_size, got_sha3 = digests.size, digests.sha3_384
    if got_size != want_size:
        if got_sha3 == want_sha3:
            raise SnapError(
                f"{assert_path}: snap-size {want_size} is wrong: {snap.name} has {got_size} bytes "
                "and its snap-sha3-384 matches",
                resolution="The assertion is inconsistent; "
                "download the snap and its assertion again.",
            )
        what = "truncated" if got_size < want_size else "longer than published"
        raise SnapError(
            f"{snap}: {what}: {got_size} bytes, snap-revision {sa.snap_revision} says snap-size "
            f"{want_size}",
            resolution=f"Fetch {name} again (re-run `invoke prepare`).",
        )
    if got_sha3 != want_sha3:
        raise SnapError(
            f"{snap}: content differs from snap-revision {sa.snap_revision}: snap-sha3-384 is "
            f"{got_sha3}, the assertion says {want_sha3}",
            resolution=f"The file is corrupted or not the published {name}; fetch it again.",
        )
    return VerifiedSnap(
        name=name,
        path=snap,
        assert_path=assert_path,
        revision=sa.snap_revision,
        snap_id=sa.snap_id,
        sha3_384=got_sha3,
        size=got_size,
        sha256=digests.sha256,
        chains=chains,
    )
