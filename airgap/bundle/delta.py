"""Day 2 across the air gap: a delta bundle carries only what the site does not have.

A delta's manifest.json is the manifest of the whole new bundle (every file, snap and
image, as prepare writes it) plus ``base``: the sha256 of the manifest.json the site
last received, and its ``created``. The delta directory holds only the files that base
does not hold at the same path with the same sha256 (and manifest.json, its .sig). So
the base's files plus the delta's, under the delta's own signed manifest, are an
ordinary full bundle: :func:`merge_delta` builds it, and it verifies like any other.

A directory whose manifest names a base and that lacks some of its files is a delta;
one that has every file is a merged (full) bundle, whatever its manifest says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from airgap.bundle.layout import MANIFEST, OCI_DIR, PARTIAL_DIR, SIGNATURE, Bundle
from airgap.bundle.manifest import (
    BaseRef,
    Manifest,
    read_manifest,
    read_manifest_file,
    write_manifest,
)
from airgap.bundle.mediasize import human_bytes
from airgap.bundle.store import blob_path
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.fileio import Writeback, write_atomic
from airgap.progress import Say, quiet
from airgap.snaps import FileDigests, hash_file

MERGE_DIR = "merge"  # under out/.partial/
_CHUNK = 1 << 20
_FIX_BASE = ("Pass the bundle the site last received as the base, or prepare a delta "
             "--since that site's manifest.json on the connected side.")


@dataclass(frozen=True)
class BaseManifest:
    """The manifest a delta is made against (``--since``): its path, content, digest."""

    path: Path
    manifest: Manifest
    sha256: str

    def blob_digests(self) -> set[str]:
        """Image-store blobs the base holds (a blob's file is named by its digest)."""
        store = Path(OCI_DIR)
        out = set()
        for rel, d in self.manifest.files.items():
            digest = f"sha256:{d.sha256}"
            if rel == blob_path(store, digest).as_posix():
                out.add(digest)
        return out


@dataclass(frozen=True)
class DeltaReport:
    """What make_delta kept (files the base lacks) and dropped (the base has them)."""

    bundle: Path
    base_manifest_sha256: str
    base_created: str
    kept: list[str]
    dropped: list[str]
    kept_bytes: int
    dropped_bytes: int
    signature_removed: bool = False

    @property
    def empty(self) -> bool:
        """Nothing changed since the base: the delta holds only its manifest."""
        return not self.kept

    def summary(self) -> str:
        if self.empty:
            return (f"delta against {self.base_manifest_sha256[:12]}: nothing changed since "
                    f"the base ({self.base_created}): the delta holds only {MANIFEST}")
        return (f"delta against {self.base_manifest_sha256[:12]} ({self.base_created}): "
                f"{len(self.kept)} file(s) kept, {human_bytes(self.kept_bytes)}; "
                f"{len(self.dropped)} dropped (the base has them), "
                f"{human_bytes(self.dropped_bytes)}")


class DeltaError(AirgapError):
    """A delta whose files do not all verify against its base; ``problems`` holds
    (path in the manifest, what is wrong) for each, so verify can list them."""

    def __init__(self, brief: str, problems: list[tuple[str, str]], **kw: Any) -> None:
        super().__init__(brief, **kw)
        self.problems = problems


@dataclass(frozen=True)
class DeltaCheck:
    """A delta checked against its base: where each file of its manifest is (the delta
    dir or the base dir), its digests, and the inode it was hashed at."""

    delta: Path
    base: Path
    manifest: Manifest
    sources: dict[str, Path]
    digests: dict[str, FileDigests]
    inodes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)

    @property
    def from_base(self) -> list[str]:
        return sorted(r for r, p in self.sources.items() if not p.is_relative_to(self.delta))


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_base(since: Path) -> BaseManifest:
    """The ``--since`` manifest, parsed (refused, naming the file, if it does not)."""
    since = Path(since)
    if not since.is_file():
        raise AirgapError(f"--since {since}: no such file",
                          resolution="Pass --since the manifest.json of the last bundle the "
                          "site received (kept on the connected side), or leave --since out "
                          "for a full bundle.")
    try:
        manifest = read_manifest_file(since)
    except AirgapError as exc:
        raise AirgapError(f"--since {since}: not a bundle manifest: {exc.brief}",
                          details=exc.details,
                          resolution="Pass --since the manifest.json of the last bundle the "
                          "site received, unchanged, or leave --since out for a full "
                          "bundle.") from None
    return BaseManifest(since, manifest, _sha256_of(since))


def make_delta(bundle: Path, since: Path) -> DeltaReport:
    """Turn the full bundle prepare wrote in ``bundle`` into a delta against ``since``
    (the manifest.json of the last bundle the site received)."""
    base = read_base(since)
    manifest = read_manifest(bundle)
    if manifest.base is not None:
        raise AirgapError(
            f"{bundle}: already a delta against base manifest sha256 "
            f"{manifest.base.manifest_sha256}",
            resolution="Prepare the full bundle again, then make the delta from it.")
    return delta_against(bundle, base, manifest)


def delta_against(bundle: Path, base: BaseManifest, manifest: Manifest) -> DeltaReport:
    """Drop every file of ``manifest`` the base holds (same path, sha256 and size),
    then write the manifest with ``base`` set, last: until then the bundle has no
    manifest, so a bundle with one is a finished delta. A stale signature is removed."""
    layout = Bundle(bundle)
    layout.manifest.unlink(missing_ok=True)
    signed = layout.signature.is_file()
    layout.signature.unlink(missing_ok=True)
    kept, dropped, kept_bytes, dropped_bytes = [], [], 0, 0
    for rel, want in sorted(manifest.files.items()):
        old = base.manifest.files.get(rel)
        if old is not None and (old.sha256, old.size) == (want.sha256, want.size):
            (layout.root / rel).unlink(missing_ok=True)  # absent: a blob prepare skipped
            dropped.append(rel)
            dropped_bytes += want.size
        else:
            kept.append(rel)
            kept_bytes += want.size
    _remove_empty_dirs(layout)
    ref = BaseRef(base.sha256, base.manifest.created)
    write_manifest(bundle, replace(manifest, base=ref))
    return DeltaReport(layout.root, base.sha256, base.manifest.created, kept, dropped,
                       kept_bytes, dropped_bytes, signature_removed=signed)


def _remove_empty_dirs(layout: Bundle) -> None:
    skip = {layout.partial_dir, layout.connected_dir}
    for d in sorted((p for p in layout.root.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.is_relative_to(s) for s in skip):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty


def missing_files(root: Path, manifest: Manifest) -> list[str]:
    """Files of the manifest that root lacks (a stat each, nothing read)."""
    return sorted(rel for rel in manifest.files if not (Path(root) / rel).is_file())


def delta_needs_base(bundle: Path, manifest: Manifest, missing: list[str]) -> AirgapError:
    """The refusal of a delta checked on its own."""
    assert manifest.base is not None
    digest = manifest.base.manifest_sha256
    return AirgapError(
        f"{bundle} is a delta bundle against base manifest sha256 {digest}: pass --base "
        "with the bundle the site last received, or merge them first",
        details=f"{len(missing)} of {len(manifest.files)} files of its manifest are in that "
                f"base ({manifest.base.created or 'time not recorded'}), e.g. "
                + ", ".join(missing[:3]),
        resolution="Verify it with base=<the site's current bundle> (verify_bundle(..., "
                   "base=)), unpack it with base= to get the full bundle, or merge_delta().")


def check_base(delta: Path, base: Path, manifest: Manifest) -> None:
    """The base is the one the delta was made against, and a full bundle."""
    if manifest.base is None:
        raise AirgapError(f"{delta}: not a delta bundle (its {MANIFEST} names no base)",
                          resolution="Verify or unpack it without a base: it is whole.")
    layout = Bundle(base)
    if not layout.manifest.is_file():
        raise AirgapError(f"{layout.manifest}: no manifest: {base} is not a bundle",
                          resolution=_FIX_BASE)
    want, got = manifest.base.manifest_sha256, _sha256_of(layout.manifest)
    if want != got:
        raise AirgapError(
            f"delta was made against base manifest sha256 {want}; {layout.manifest} is "
            f"sha256 {got}",
            details=f"delta: {delta}; the base it names was created "
                    f"{manifest.base.created or '(not recorded)'}",
            resolution=_FIX_BASE)
    own = read_manifest(base)
    if own.base is not None and (gone := missing_files(base, own)):
        raise AirgapError(
            f"{base}: the base is itself a delta (against base manifest sha256 "
            f"{own.base.manifest_sha256}; it lacks {len(gone)} file(s), e.g. {gone[0]})",
            resolution=f"Merge {base} with its own base first, then use the merged bundle "
                       "as the base.")


def check_delta(delta: Path, base: Path, progress: Say = quiet, *,
                snap_sha3: bool = True) -> DeltaCheck:
    """Every file of the delta's manifest, in the delta dir or else in the base dir,
    stream-hashed against the manifest (with SHA3-384 for snaps, so verify need not hash
    again); refused naming the wrong base (both digests) or each missing/damaged file."""
    delta, base = Path(delta), Path(base)
    manifest = read_manifest(delta)
    check_base(delta, base, manifest)
    snaps = {s.file for s in manifest.snaps}
    problems: list[tuple[str, str]] = []
    sources: dict[str, Path] = {}
    for rel in sorted(manifest.files):
        here, there = delta / rel, base / rel
        if here.is_file():
            sources[rel] = here
        elif there.is_file():
            sources[rel] = there
        else:
            problems.append((rel, f"in neither {delta} nor the base {base}"))
    for rel in Bundle(delta).files():
        if rel not in manifest.files:
            problems.append((rel, f"{delta / rel}: not in {MANIFEST} (added after prepare?)"))

    def check(rel: str) -> tuple[str, FileDigests, tuple[int, int, int, int], str | None]:
        path, want = sources[rel], manifest.files[rel]
        progress(f"hashing {path}")
        before = _inode(path)
        got = hash_file(path, sha3=snap_sha3 and rel in snaps)
        after = _inode(path)
        if before != after:
            return rel, got, after, f"{path}: changed while it was being checked"
        if got.size != want.size:
            return rel, got, after, f"{path}: size {got.size}, the manifest says {want.size}"
        if got.sha256 != want.sha256:
            return rel, got, after, (f"{path}: sha256 {got.sha256}, the manifest says "
                                     f"{want.sha256}")
        return rel, got, after, None

    digests, inodes = {}, {}
    for rel, got, inode, problem in fan_out(check, sorted(sources), limit=4, name="delta"):
        digests[rel], inodes[rel] = got, inode
        if problem:
            problems.append((rel, problem))
    if problems:
        problems.sort()
        raise DeltaError(
            f"{delta}: {len(problems)} file(s) of the delta's manifest missing or damaged "
            f"(looked in the delta, then in the base {base}): "
            + ", ".join(r for r, _ in problems[:3]) + (" ..." if problems[3:] else ""),
            problems, details="\n".join(f"- {r}: {what}" for r, what in problems),
            resolution="Copy the named files again (into the delta or the base they belong "
                       f"to); if the base lacks them, it is not the bundle the delta was "
                       f"made against. {_FIX_BASE}")
    return DeltaCheck(delta, base, manifest, sources, digests, inodes)


def _inode(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class MergeReport:
    """How merge_delta built the full bundle: each file hard-linked (checked once, in
    check_delta) or copied (hashed again as it was copied)."""

    out: Path
    files: int
    linked: int
    copied: int
    linked_bytes: int
    copied_bytes: int
    from_base: int
    seconds: float
    already_present: bool = False


def merge_delta(delta: Path, base: Path, out: Path, progress: Say = quiet) -> MergeReport:
    """The full bundle of delta + base in ``out`` (new, or empty but for .partial), built
    in out/.partial/merge and moved into place with manifest.json last.

    Each file is hard-linked where delta/base and out share a filesystem, else copied.
    check_delta hashed every file first and noted its inode; a link is the same inode,
    so a linked file whose inode, size and mtime are still those hashed is not read
    again; a copied file is hashed again as it is copied, and refused if it differs."""
    start = time.monotonic()
    delta, base, out = Path(delta), Path(base), Path(out)
    _check_out(delta, base, out)
    layout = Bundle(out)
    if layout.manifest.is_file() and _sha256_of(layout.manifest) == _sha256_of(
            Bundle(delta).manifest) and not missing_files(out, read_manifest(out)):
        progress(f"{out} already holds this bundle: nothing to do")
        return MergeReport(out, 0, 0, 0, 0, 0, 0, time.monotonic() - start, True)
    check = check_delta(delta, base, progress, snap_sha3=False)
    probe = out
    while not probe.exists():
        probe = probe.parent
    dev = probe.stat().st_dev
    need = sum(check.digests[r].size for r, p in check.sources.items()
               if p.stat().st_dev != dev)
    if (free := shutil.disk_usage(probe).free) < need:
        raise AirgapError(
            f"{probe}: not enough free space to merge: {human_bytes(need)} to copy "
            f"(another filesystem than the delta and base), {human_bytes(free)} free",
            resolution="Free space there, or merge onto the filesystem of the base and "
                       "the delta (files are then hard-linked, not copied).")
    made = [p for p in (*reversed(out.parents), out, layout.partial_dir) if not p.exists()]
    work = layout.partial_dir / MERGE_DIR
    shutil.rmtree(work, ignore_errors=True)  # left by a merge that was stopped
    work.mkdir(parents=True)
    linked = copied = linked_bytes = copied_bytes = 0
    try:
        for rel, src in sorted(check.sources.items()):
            dst = work / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            size = check.digests[rel].size
            if _link(src, dst) and _inode(dst) == check.inodes[rel]:
                linked, linked_bytes = linked + 1, linked_bytes + size
            else:
                dst.unlink(missing_ok=True)
                _copy_checked(src, dst, check.manifest.files[rel])
                copied, copied_bytes = copied + 1, copied_bytes + size
            progress(f"merged {linked + copied}/{len(check.sources)} files")
        dlayout = Bundle(delta)
        if dlayout.signature.is_file():
            write_atomic(work / SIGNATURE, dlayout.signature.read_bytes())
        write_atomic(work / MANIFEST, dlayout.manifest.read_bytes())
        tops = sorted({p.name for p in work.iterdir()},
                      key=lambda t: (t == MANIFEST, t == SIGNATURE, t))
        for top in tops:  # manifest.json last: a bundle with a manifest is complete
            os.rename(work / top, out / top)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    work.rmdir()
    if layout.partial_dir in made:
        layout.partial_dir.rmdir()
    return MergeReport(out, len(check.sources), linked, copied, linked_bytes, copied_bytes,
                       len(check.from_base), time.monotonic() - start)


def _check_out(delta: Path, base: Path, out: Path) -> None:
    fix = "Merge into a new (or empty) directory, neither the delta nor the base."
    o = out.resolve()
    for what, p in (("the delta", delta.resolve()), ("the base", base.resolve())):
        if o == p or o.is_relative_to(p):
            raise AirgapError(f"{out}: is {what} ({p}) or inside it", resolution=fix)
    if out.exists() and not out.is_dir():
        raise AirgapError(f"{out}: not a directory", resolution=fix)
    if out.is_dir() and (other := sorted(p.name for p in out.iterdir() if p.name != PARTIAL_DIR)):
        if MANIFEST in other and _sha256_of(Bundle(out).manifest) == _sha256_of(
                Bundle(delta).manifest):
            return  # this very bundle (merge_delta checks it is whole)
        raise AirgapError(f"{out}: already holds {', '.join(other[:5])}", resolution=fix)


def _link(src: Path, dst: Path) -> bool:
    """A hard link, or False where the filesystem will not (another device, no links)."""
    try:
        os.link(src, dst)
    except OSError:
        return False
    return True


def _copy_checked(src: Path, dst: Path, want: FileDigests) -> None:
    """src to dst, hashed as it is read, fsync'd; refused when it is not what the
    manifest says (the source changed after check_delta, or the read went wrong)."""
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fh, open(dst, "xb") as to:
        writeback = Writeback(to.fileno())
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            to.write(chunk)
            size += len(chunk)
            writeback.wrote(len(chunk))
        to.flush()
        os.fsync(to.fileno())
    if (size, digest.hexdigest()) != (want.size, want.sha256):
        raise AirgapError(f"{src}: changed since it was checked (copied {size} bytes, sha256 "
                          f"{digest.hexdigest()}; the manifest says {want.size}, "
                          f"{want.sha256})", resolution="Leave the delta and the base alone "
                          "while they are merged, then merge again.")
    shutil.copymode(src, dst)
