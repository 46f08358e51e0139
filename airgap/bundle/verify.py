"""The air-gapped side's check before anything is installed: every file against the
manifest, every snap against its assertions, the lock against the manifest, and the
side-load archives against the runtime's rules."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap import sideload
from airgap.bundle.delta import (
    DeltaCheck,
    DeltaError,
    check_delta,
    delta_needs_base,
    missing_files,
)
from airgap.bundle.layout import MANIFEST, OCI_DIR, Bundle
from airgap.bundle.manifest import Manifest, SnapEntry, read_manifest
from airgap.bundle.signing import SignatureCheck, check_signature
from airgap.bundle.store import check_store
from airgap.errors import AirgapError
from airgap.plan.lock import read_lock
from airgap.progress import Say, quiet
from airgap.snaps import FileDigests, SnapError, hash_file, snap_meta, verify_snap
from airgap.snaps.trust import TrustError, TrustStore

NO_CHECK_WARNING = (
    "WARNING: --no-signature-check: snap assertions are NOT checked against any root key. "
    "A substituted or forged snap would not be detected. Use --trusted-root FILE for a "
    "brand store instead."
)




class BundleError(AirgapError):
    """A bundle that does not verify; ``report`` holds every row, failed or not."""

    def __init__(self, brief: str, report: VerifyReport, **kw: Any) -> None:
        super().__init__(brief, **kw)
        self.report = report

@dataclass(frozen=True)
class VerifyRow:
    path: str
    kind: str
    ok: bool
    detail: str
    fix: str = ""  # a failed row's own fix, when it has one (the archive validator's)


@dataclass
class VerifyReport:
    bundle: Path
    rows: list[VerifyRow] = field(default_factory=list)
    signature_check: bool = True
    sideload_checked: bool = False
    signature: SignatureCheck | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[VerifyRow]:
        return [r for r in self.rows if not r.ok]

    def add(self, path: str, kind: str, ok: bool, detail: str, fix: str = "") -> None:
        self.rows.append(VerifyRow(path, kind, ok, detail, fix))


def load_trust(trusted_root: Path | None, check_signatures: bool) -> TrustStore | None:
    """The trust store for --trusted-root / the packaged root; None when checks are off."""
    if not check_signatures:
        return None
    return TrustStore.from_file(trusted_root) if trusted_root else TrustStore.default()


@dataclass(frozen=True)
class SignerPolicy:
    """Who may sign a bundle: the ssh-keygen allowed-signers file, and whether a bundle
    with no signature at all is accepted (``--allow-unsigned``: a loud row, never for a
    signature that is present and does not verify)."""

    allowed_signers: Path | None
    allow_unsigned: bool = False


def verify_bundle(
    bundle: Path,
    trusted_root: Path | None = None,
    check_signatures: bool = True,
    progress: Say = quiet,
    signers: SignerPolicy | None = None,
    base: Path | None = None,
) -> VerifyReport:
    """Re-check every file against the manifest and every snap against its assertions;
    with ``signers``, the manifest's SSH signature first (the tasks always pass it).

    A delta bundle (its manifest names a base, and it lacks some of its files) is
    refused alone; with ``base`` (the bundle the site last received) its signature is
    checked, then check_delta hashes every file where it is (delta, else base), and the
    usual checks run on a view of the union (symlinks in a temporary directory) reusing
    those digests, so each file is read once.

    Returns the report when everything verifies; raises BundleError (carrying the
    report, one row per file) naming each file and what differs otherwise.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise AirgapError(
            f"{bundle}: bundle directory not found",
            resolution="Pass --bundle DIR, the directory `invoke prepare` wrote.",
        )
    layout = Bundle(bundle)
    manifest = read_manifest(bundle)
    trust = load_trust(trusted_root, check_signatures)
    report = VerifyReport(bundle, signature_check=trust is not None)
    if base is None and manifest.base is not None and (gone := missing_files(bundle, manifest)):
        raise delta_needs_base(bundle, manifest, gone)
    if signers is not None:
        report.signature = _verify_signature(layout, signers, report)
    if base is None:
        return _verify_files(bundle, bundle, manifest, trust, report, progress, {})
    try:
        check = check_delta(bundle, base, progress)
    except DeltaError as exc:
        for rel, what in exc.problems:
            report.add(rel, "file", False, what)
        raise _refusal(bundle, report) from exc
    with union_view(check) as view:
        return _verify_files(view, bundle, manifest, trust, report, progress, check.digests)


@contextlib.contextmanager
def union_view(check: DeltaCheck) -> Iterator[Path]:
    """The full bundle of a checked delta, as symlinks to each file where it is (the
    delta or its base) in a temporary directory: the checks below read it unchanged."""
    with tempfile.TemporaryDirectory(prefix="k8s-airgap-union-") as tmp:
        view = Path(tmp)
        for rel, src in [*check.sources.items(), (MANIFEST, Bundle(check.delta).manifest)]:
            (view / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src.resolve(), view / rel)
        yield view


def _verify_files(root: Path, shown: Path, manifest: Manifest, trust: TrustStore | None,
                  report: VerifyReport, progress: Say,
                  known: dict[str, FileDigests]) -> VerifyReport:
    """Every check after the signature, on the files under root (the bundle, or a
    delta's union view); ``known``: digests already computed (check_delta)."""
    layout = Bundle(root)
    snap_files = {s.file: s for s in manifest.snaps}
    digests: dict[str, FileDigests] = {}
    for rel, want in sorted(manifest.files.items()):
        path = root / rel
        kind = "snap" if rel in snap_files else "file"
        if not path.is_file():
            report.add(rel, kind, False, "listed in manifest.json but missing")
            continue
        progress(f"hashing {rel}")
        got = known.get(rel)
        if got is None or (rel in snap_files and got.sha3_384 is None):
            got = hash_file(path, sha3=rel in snap_files)
        digests[rel] = got
        if got.size != want.size:
            report.add(rel, kind, False, f"size {got.size}, manifest says {want.size}")
        elif got.sha256 != want.sha256:
            report.add(
                rel,
                kind,
                False,
                f"sha256 {got.sha256[:16]}..., manifest says {want.sha256[:16]}...",
            )
        elif kind == "file" and not rel.startswith(f"{OCI_DIR}/"):
            report.add(rel, kind, True, f"sha256 {got.sha256[:16]}... {got.size} bytes")
    for rel in layout.files():
        if rel not in manifest.files:
            report.add(rel, "file", False, "not in manifest.json (added after prepare?)")
    for entry in manifest.snaps:
        for rel in (entry.file, entry.assertion):
            if rel not in manifest.files:
                report.add(rel, "snap", False, "snap listed in manifest.json without a file entry")
        _verify_snap_entry(root, entry, trust, digests, report)
    _verify_required_snaps(layout, manifest, report)
    _verify_lock(layout, manifest, report)
    _verify_store(layout, manifest, report)
    report.sideload_checked = _verify_archives(layout, report)
    if not report.ok:
        raise _refusal(shown, report)
    return report


def _refusal(bundle: Path, report: VerifyReport) -> BundleError:
    fails = report.failures
    return BundleError(
        f"{bundle}: {len(fails)} problem(s): "
        + "; ".join(f"{r.path}: {r.detail}" for r in fails[:3])
        + (" ..." if len(fails) > 3 else ""),
        report,
        details="\n".join(f"- {r.path}: {r.detail}" for r in fails),
        resolution=_resolution(fails),
    )


def _resolution(fails: list[VerifyRow]) -> str:
    """A damaged copy is copied again; a bad side-load archive gets the validator's own
    fix (prepare lists whatever is in images/, so re-running it alone cannot help)."""
    fixes = list(dict.fromkeys(f"{r.path}: {r.fix}" for r in fails if r.fix))
    others = [r for r in fails if not r.fix]
    out = []
    if others:
        out.append("Do not install from this bundle; copy it again, or re-run "
                   "`invoke prepare --bundle DIR` on the connected side.")
    if fixes:
        out.append("On the connected side, fix the side-load archives: " + " ".join(
            f if f.endswith(".") else f + "." for f in fixes)
            + " Then run `invoke prepare --bundle DIR` again (it validates the archives "
            "and lists them in the manifest) and carry the bundle across again.")
    return " ".join(out)


def _verify_snap_entry(
    bundle: Path,
    entry: SnapEntry,
    trust: TrustStore | None,
    digests: dict[str, FileDigests],
    report: VerifyReport,
) -> None:
    snap, assertion = bundle / entry.file, bundle / entry.assertion
    if not snap.is_file() or not assertion.is_file():
        reported = {r.path for r in report.rows}
        for rel, p in ((entry.file, snap), (entry.assertion, assertion)):
            if not p.is_file() and rel not in reported:
                report.add(rel, "snap", False, "missing")
        return
    try:
        v = verify_snap(snap, assertion, entry.name, trust=trust, digests=digests.get(entry.file))
    except (SnapError, TrustError) as exc:
        report.add(entry.file, "snap", False, exc.brief)
        return
    if v.revision != entry.revision or v.sha3_384 != entry.sha3_384:
        report.add(
            entry.file,
            "snap",
            False,
            f"assertion says revision {v.revision} sha3-384 {v.sha3_384[:12]}..., manifest "
            f"says revision {entry.revision} sha3-384 {entry.sha3_384[:12]}...",
        )
        return
    bad = [r for r in report.rows if r.path == entry.file and not r.ok]
    if not bad:
        report.add(
            entry.file,
            "snap",
            True,
            f"{entry.name} rev {v.revision}, sha3-384 and size match; chain: {v.chain_text}",
        )


def _verify_lock(layout: Bundle, manifest: Manifest, report: VerifyReport) -> None:
    path, rel = layout.lock, layout.rel(layout.lock)
    if not path.is_file():
        return
    try:
        lock = read_lock(path)
    except AirgapError as exc:
        report.add(rel, "lock", False, exc.brief)
        return
    got = {str(i.ref): (i.digest, i.platforms) for i in lock.images}
    want = {str(i.ref): (i.digest, i.platforms) for i in manifest.images}
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        report.add(
            rel, "lock", False, f"images differ from manifest.json: {', '.join(diff[:3])}"
        )
    else:
        report.add(rel, "lock", True, f"{len(got)} image(s) match manifest.json")


def _verify_signature(layout: Bundle, signers: SignerPolicy,
                      report: VerifyReport) -> SignatureCheck | None:
    rel = layout.rel(layout.signature)
    try:
        sig = check_signature(layout.root, signers.allowed_signers,
                              allow_unsigned=signers.allow_unsigned)
    except AirgapError as exc:
        report.add(rel, "signature", False, f"{exc.brief} Resolution: {exc.resolution or ''}")
        return None
    report.add(rel, "signature", True, sig.detail)  # unsigned: accepted knowingly, loudly
    return sig


def _verify_required_snaps(layout: Bundle, manifest: Manifest, report: VerifyReport) -> None:
    """The snaps the procedure needs, from the k8s snap itself (its base from its
    meta/snap.yaml, and snapd), not from the manifest's list."""
    names = {s.name for s in manifest.snaps}
    k8s = next((s for s in manifest.snaps if s.name == "k8s"), None)
    if k8s is None:
        report.add("snaps/k8s.snap", "snap", False, "the bundle has no k8s snap")
        return
    try:
        base = snap_meta(layout.root / k8s.file).base
    except AirgapError as exc:
        report.add(k8s.file, "snap", False, exc.brief)
        return
    for need in [b for b in (base, "snapd") if b]:
        if need not in names:
            what = f"its base {need} (meta/snap.yaml)" if need == base else "snapd"
            report.add(f"snaps/{need}.snap", "snap", False,
                       f"k8s needs {what}, and the bundle does not have it: offline, "
                       "snapd would try the store. Resolution: re-run `invoke prepare`.")


def _verify_store(layout: Bundle, manifest: Manifest, report: VerifyReport) -> None:
    """The image store: its files are hashed above with the rest; here, that every image
    of the lock is in it whole (each manifest and blob it names, by digest)."""
    rel = layout.rel(layout.oci_dir)
    if not layout.oci_dir.is_dir():
        return  # prepared with --no-images
    if not layout.lock.is_file():
        report.add(rel, "store", False, "an image store without images.lock")
        return
    try:
        problems = check_store(layout.root, read_lock(layout.lock))
    except AirgapError as exc:
        problems = [exc.brief]
    for problem in problems:
        report.add(rel, "store", False, problem)
    if not problems:
        blobs = [f for f in manifest.files if f.startswith(f"{OCI_DIR}/blobs/")]
        size = sum(manifest.files[f].size for f in blobs)
        report.add(rel, "store", True,
                   f"{len(manifest.images)} image(s) complete: {len(blobs)} blobs, "
                   f"{size / 2**20:.1f} MiB, each matching manifest.json and its digest")


def _verify_archives(layout: Bundle, report: VerifyReport) -> bool:
    """Run the side-load validator on the bundle's side-load archives, if it has any."""
    for stray in sideload.not_imported(layout.images_dir):
        err = sideload.not_imported_error([stray], "in the bundle")
        report.add(
            layout.rel(stray),
            "archive",
            False,
            f"{err.brief.split(': ', 1)[1]}. Resolution: {err.resolution}",
            fix=err.resolution or "",
        )
    archives = layout.archives()
    if not archives:
        return False
    lock = read_lock(layout.lock) if layout.lock.is_file() else None
    platforms = lock.platforms if lock else []
    for archive in archives:
        if not archive.is_file():
            continue  # a directory named *.tar: not_imported named it above
        rel = layout.rel(archive)
        errors: list[tuple[str, str]] = []  # (platform: problem, the validator's fix)
        for plat in platforms or ["linux/amd64"]:
            expected = sideload.expected_from_lock(lock, plat) if lock else None
            try:
                rep = sideload.validate_archive(archive, expected, plat, display=rel)
            except AirgapError as exc:
                errors.append((f"{plat}: {exc.brief}", exc.resolution or ""))
                continue
            report.add(
                rel, "archive", True, f"{plat}: {len(rep.images)} image(s) valid for the runtime"
            )
            break
        else:
            fix = " ".join(dict.fromkeys(f for _, f in errors if f))
            report.add(rel, "archive", False,
                       "; ".join(p for p, _ in errors) + f". Resolution: {fix}", fix=fix)
    return True
