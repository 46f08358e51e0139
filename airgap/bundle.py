"""The bundle that crosses the gap: prepared and checked on the connected side,
re-checked on the air-gapped side before anything is installed.

Layout (DIR): snaps/<name>.snap + snaps/<name>.assert for k8s, its base (from
meta/snap.yaml) and snapd; images.lock; images/*.tar (optional side-load archives);
manifest.json, written last and atomically, so a bundle with a manifest is complete.
The manifest lists every file's sha256 and size, each snap's revision, channel and
snap-sha3-384, each image's digests and the tool versions used. DIR/connected/ is
working space of the connected side and never part of the bundle.
"""

from __future__ import annotations

import json
import platform as _platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airgap import __version__, process, sideload, tools
from airgap.config import Plan, workload_images
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.images import ImageRef, merge_images
from airgap.lock import ImageLock, LockedImage, read_lock, write_lock
from airgap.snaps import (
    FileDigests,
    SnapError,
    VerifiedSnap,
    copy_file,
    download_snap,
    find_local_snap,
    hash_file,
    snap_images,
    snap_meta,
    verify_snap,
)
from airgap.trust import TrustError, TrustStore

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SNAPS_DIR = "snaps"
LOCK_FILE = "images.lock"
IMAGES_DIR = "images"
CONNECTED_DIR = "connected"
PARTIAL_DIR = ".partial"
SUPPORT_CHANNEL = "latest/stable"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
RESOLVE_TIMEOUT = 120.0
NO_CHECK_WARNING = (
    "WARNING: --no-signature-check: snap assertions are NOT checked against any root key. "
    "A substituted or forged snap would not be detected. Use --trusted-root FILE for a "
    "brand store instead."
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class BundleError(AirgapError):
    """A bundle that does not verify; ``report`` holds every row, failed or not."""

    def __init__(self, brief: str, report: VerifyReport, **kw: Any) -> None:
        super().__init__(brief, **kw)
        self.report = report


# --- the manifest -----------------------------------------------------------------------


@dataclass(frozen=True)
class SnapEntry:
    name: str
    revision: str
    channel: str
    sha3_384: str
    snap_id: str
    file: str
    assertion: str
    chain: str

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "revision": self.revision,
            "channel": self.channel,
            "sha3_384": self.sha3_384,
            "snap_id": self.snap_id,
            "file": self.file,
            "assert": self.assertion,
            "chain": self.chain,
        }


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileDigests]
    snaps: list[SnapEntry]
    images: list[LockedImage]
    platforms: list[str]
    tools: dict[str, str]
    created: str = ""
    signature_check: bool = True
    trusted_roots: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "created": self.created,
            "files": {
                p: {"sha256": d.sha256, "size": d.size} for p, d in sorted(self.files.items())
            },
            "snaps": [s.to_json() for s in self.snaps],
            "images": [
                {
                    "ref": str(i.ref),
                    "digest": i.digest,
                    "platforms": dict(sorted(i.platforms.items())),
                }
                for i in sorted(self.images, key=lambda i: str(i.ref))
            ],
            "platforms": list(self.platforms),
            "signature_check": self.signature_check,
            "trusted_roots": list(self.trusted_roots),
            "tools": dict(sorted(self.tools.items())),
        }


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    return write_atomic(bundle / MANIFEST, json.dumps(manifest.to_json(), indent=2) + "\n")


def read_manifest(bundle: Path) -> Manifest:
    """manifest.json of a bundle; AirgapError when missing (prepare did not finish) or bad."""
    path = Path(bundle) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AirgapError(
            f"{path}: no manifest: the bundle is incomplete (prepare did not finish)",
            resolution="Run `invoke prepare --bundle DIR` again on the connected side "
            "and copy the whole directory.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AirgapError(
            f"{path}: not valid JSON ({exc})",
            resolution="Copy the bundle again, or re-run `invoke prepare`.",
        ) from None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise AirgapError(
            f"{path}: unsupported manifest version",
            resolution="Prepare and verify with the same k8s-airgap version.",
        )
    files = _manifest_files(path, data.get("files"))
    snaps = _manifest_snaps(path, data.get("snaps"))
    images = _manifest_images(path, data.get("images", []))
    for rel in [*files, *(s.file for s in snaps), *(s.assertion for s in snaps)]:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise AirgapError(f"{path}: entry {rel!r} points outside the bundle")
    return Manifest(
        files=files,
        snaps=snaps,
        images=images,
        platforms=list(data.get("platforms", [])),
        tools=dict(data.get("tools", {})),
        created=str(data.get("created", "")),
        signature_check=bool(data.get("signature_check", True)),
        trusted_roots=list(data.get("trusted_roots", [])),
    )


_SNAP_KEYS = ("name", "revision", "channel", "sha3_384", "snap_id", "file", "assert")


def _malformed(path: Path, where: str, shape: str) -> AirgapError:
    return AirgapError(
        f"{path}: {where}: expected {shape}",
        resolution="The manifest was edited or damaged: copy the bundle again, or re-run "
        "`invoke prepare --bundle DIR` on the connected side.",
    )


def _manifest_files(path: Path, raw: object) -> dict[str, FileDigests]:
    shape = '{"size": <bytes>, "sha256": "<hex>"}'
    if not isinstance(raw, dict):
        raise _malformed(path, "files", f"an object mapping each path to {shape}")
    files = {}
    for rel, v in raw.items():
        size = v.get("size") if isinstance(v, dict) else None
        digest = v.get("sha256") if isinstance(v, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(digest, str):
            raise _malformed(path, f"files[{rel!r}]", shape)
        files[str(rel)] = FileDigests(size, digest)
    return files


def _manifest_snaps(path: Path, raw: object) -> list[SnapEntry]:
    shape = "{" + ", ".join(f'"{k}": "..."' for k in _SNAP_KEYS) + "}"
    if not isinstance(raw, list):
        raise _malformed(path, "snaps", f"a list of {shape}")
    snaps = []
    for n, s in enumerate(raw):
        if not isinstance(s, dict):
            raise _malformed(path, f"snaps[{n}]", shape)
        bad = [k for k in _SNAP_KEYS if not isinstance(s.get(k), str)
               and not (k == "revision" and isinstance(s.get(k), int))]
        if bad or not isinstance(s.get("chain", ""), str):
            key = bad[0] if bad else "chain"
            if key not in s:
                raise _malformed(path, f"snaps[{n}]: no {key!r}", shape)
            raise _malformed(path, f"snaps[{n}].{key}", f"a string (an entry is {shape})")
        snaps.append(SnapEntry(
            name=s["name"], revision=str(s["revision"]), channel=s["channel"],
            sha3_384=s["sha3_384"], snap_id=s["snap_id"], file=s["file"],
            assertion=s["assert"], chain=s.get("chain", ""),
        ))
    return snaps


def _manifest_images(path: Path, raw: object) -> list[LockedImage]:
    from airgap.images import parse_image_ref

    shape = ('{"ref": "<registry>/<repository>:<tag>", "digest": "sha256:<hex>", '
             '"platforms": {"<os>/<arch>": "sha256:<hex>"}}')
    if not isinstance(raw, list):
        raise _malformed(path, "images", f"a list of {shape}")
    images = []
    for n, i in enumerate(raw):
        platforms = i.get("platforms", {}) if isinstance(i, dict) else None
        if (not isinstance(i, dict) or not isinstance(i.get("ref"), str)
                or not isinstance(i.get("digest"), str) or not isinstance(platforms, dict)
                or not all(isinstance(v, str) for v in platforms.values())):
            raise _malformed(path, f"images[{n}]", shape)
        try:
            ref = parse_image_ref(i["ref"])
        except ValueError as exc:
            raise _malformed(path, f"images[{n}].ref", f"an image reference ({exc})") from None
        images.append(LockedImage(ref=ref, digest=i["digest"],
                                  platforms={str(k): v for k, v in platforms.items()}))
    return images


def bundle_files(bundle: Path) -> list[str]:
    """Every file that crosses the gap (relative paths): all but the manifest and connected/."""
    out = []
    for p in sorted(bundle.rglob("*")):
        rel = p.relative_to(bundle)
        if rel.parts[0] in (MANIFEST, CONNECTED_DIR, PARTIAL_DIR) or not p.is_file():
            continue
        out.append(rel.as_posix())
    return out


# --- images -----------------------------------------------------------------------------


def _regctl(args: Sequence[str]) -> str:
    return tools.run_tool("regctl", list(args), timeout=RESOLVE_TIMEOUT).stdout


def resolve_image(ref: ImageRef, platforms: Sequence[str], source: str) -> LockedImage:
    """Tag -> digest, and per target platform the manifest digest the runtime will pull."""
    from airgap.ociarchive import parse_platform, platform_matches

    text = str(ref)
    try:
        head = _regctl(
            [
                "manifest",
                "get",
                text,
                "--format",
                "{{ .GetDescriptor.Digest }} {{ .GetDescriptor.MediaType }}",
            ]
        ).split()
        digest, media_type = head[0], head[1] if len(head) > 1 else ""
        pinned = str(ref.with_digest(digest))
        body = json.loads(_regctl(["manifest", "get", pinned, "--format", "raw-body"]))
        per_platform: dict[str, str] = {}
        if media_type in INDEX_TYPES:
            entries = body.get("manifests", [])
            for want in platforms:
                w = parse_platform(want)
                for m in entries:
                    p = m.get("platform") or {}
                    found = parse_platform(
                        f"{p.get('os', '?')}/{p.get('architecture', '?')}"
                        + (f"/{p['variant']}" if p.get("variant") else "")
                    )
                    if platform_matches(found, w):
                        per_platform[want] = m["digest"]
                        break
        else:
            config = json.loads(
                _regctl(
                    [
                        "blob",
                        "get",
                        f"{ref.registry}/{ref.repository}",
                        body["config"]["digest"],
                        "--format",
                        "raw-body",
                    ]
                )
            )
            found_text = f"{config.get('os', '?')}/{config.get('architecture', '?')}" + (
                f"/{config['variant']}" if config.get("variant") else ""
            )
            for want in platforms:
                if platform_matches(parse_platform(found_text), parse_platform(want)):
                    per_platform[want] = digest
    except AirgapError as exc:
        raise AirgapError(
            f"cannot resolve image {text} ({source})",
            details=str(exc),
            resolution="Check that the registry is reachable from this machine "
            "and the image exists (regctl config: REGCTL_CONFIG).",
        ) from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AirgapError(f"cannot resolve image {text}: unexpected manifest ({exc!r})") from None
    missing = [p for p in platforms if p not in per_platform]
    if missing:
        raise AirgapError(
            f"image {text} ({source}) has no {', '.join(missing)} variant",
            resolution="Remove that platform from the plan or use an image built for it.",
        )
    return LockedImage(
        ref=ref, digest=digest, media_type=media_type, platforms=per_platform, source=source
    )


def resolve_images(
    k8s: Sequence[ImageRef],
    workload: Sequence[ImageRef],
    platforms: Sequence[str],
    progress: Progress = _quiet,
) -> ImageLock:
    k8s_names = {r.name for r in k8s}
    images = merge_images(k8s, workload)
    locked = []
    for n, ref in enumerate(images, 1):
        progress(f"resolving image {n}/{len(images)}: {ref}")
        locked.append(resolve_image(ref, platforms, "k8s" if ref.name in k8s_names else "workload"))
    return ImageLock(platforms=list(platforms), images=locked)


# --- prepare ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSnap:
    snap: VerifiedSnap
    channel: str
    action: str  # kept / downloaded / copied


@dataclass(frozen=True)
class PrepareReport:
    bundle: Path
    snaps: list[PreparedSnap]
    lock: ImageLock
    images_action: str
    manifest: Path
    signature_check: bool


def _fetch_snap(
    name: str,
    channel: str,
    bundle: Path,
    from_dir: Path | None,
    trust: TrustStore | None,
    progress: Progress,
) -> PreparedSnap:
    """Keep a snap that still verifies; otherwise fetch it again and verify before keeping."""
    snap, assertion = bundle / SNAPS_DIR / f"{name}.snap", bundle / SNAPS_DIR / f"{name}.assert"
    if snap.is_file() and assertion.is_file():
        progress(f"checking {name} already in the bundle")
        try:
            return PreparedSnap(verify_snap(snap, assertion, name, trust=trust), channel, "kept")
        except SnapError as exc:
            progress(f"{name} in the bundle does not verify ({exc.brief}); fetching again")
    partial = bundle / PARTIAL_DIR
    if from_dir is not None:
        progress(f"copying {name} from {from_dir}")
        src_snap, src_assert = find_local_snap(from_dir, name)
        action = "copied"
    else:
        progress(f"snap download {name} --channel {channel}")
        src_snap, src_assert = download_snap(name, channel, partial)
        action = "downloaded"
    verified = verify_snap(src_snap, src_assert, name, trust=trust)
    copy_file(src_assert, assertion)
    if src_snap.parent == partial:
        src_snap.replace(snap)
    else:
        copy_file(src_snap, snap)
    return PreparedSnap(replace(verified, path=snap, assert_path=assertion), channel, action)


def _tool_versions(downloaded: bool, resolved: bool) -> dict[str, str]:
    out = {"k8s-airgap": __version__, "python": _platform.python_version()}
    first = process.run(["unsquashfs", "-version"], check=False).stdout.splitlines()
    out["unsquashfs"] = first[0] if first else "?"
    if resolved:
        out["regctl"] = (
            _regctl(["version", "--format", "{{.VCSTag}}"]).strip() or tools.REGCLIENT_VERSION
        )
    if downloaded and shutil.which("snap"):
        lines = process.run(["snap", "version"], check=False).stdout.splitlines()
        out["snap"] = lines[0].split(None, 1)[-1].strip() if lines else "?"
    return out


def _lock_matches(path: Path, images: Sequence[ImageRef], platforms: Sequence[str]) -> bool:
    try:
        lock = read_lock(path)
    except AirgapError:
        return False
    return sorted(lock.platforms) == sorted(platforms) and sorted(
        str(i.ref) for i in lock.images
    ) == sorted(str(r) for r in images)


def prepare_bundle(
    plan: Plan,
    bundle: Path,
    *,
    from_dir: Path | None = None,
    trust: TrustStore | None,
    refresh_images: bool = False,
    progress: Progress = _quiet,
) -> PrepareReport:
    """Fetch and verify the snaps, pin the images, write the manifest last."""
    bundle = Path(bundle)
    if from_dir is not None and not from_dir.is_dir():
        raise AirgapError(
            f"--from {from_dir}: not a directory",
            resolution="Point --from at the directory holding the .snap and .assert files.",
        )
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / MANIFEST).unlink(missing_ok=True)  # the bundle is incomplete until the end
    snaps = [_fetch_snap("k8s", plan.k8s.channel, bundle, from_dir, trust, progress)]
    k8s_snap = snaps[0].snap.path
    meta = snap_meta(k8s_snap)
    if meta.name != "k8s":
        raise AirgapError(f"{k8s_snap}: meta/snap.yaml names snap {meta.name!r}, not k8s")
    support = [meta.base] if meta.base else []
    for name in [*support, "snapd"]:
        if name not in {s.snap.name for s in snaps}:
            snaps.append(_fetch_snap(name, SUPPORT_CHANNEL, bundle, from_dir, trust, progress))
    shutil.rmtree(bundle / PARTIAL_DIR, ignore_errors=True)

    progress("reading images.txt from the k8s snap")
    k8s_images = snap_images(k8s_snap)
    workload = workload_images(plan)
    lock_path = bundle / LOCK_FILE
    wanted = merge_images(k8s_images, workload)
    if not refresh_images and _lock_matches(lock_path, wanted, plan.platforms):
        lock, images_action = read_lock(lock_path), "kept"
    else:
        lock = resolve_images(k8s_images, workload, plan.platforms, progress)
        write_lock(lock_path, lock)
        images_action = "resolved"

    progress("hashing the bundle for the manifest")
    files = {rel: hash_file(bundle / rel) for rel in bundle_files(bundle)}
    entries = [
        SnapEntry(
            name=p.snap.name,
            revision=p.snap.revision,
            channel=p.channel,
            sha3_384=p.snap.sha3_384,
            snap_id=p.snap.snap_id,
            file=f"{SNAPS_DIR}/{p.snap.name}.snap",
            assertion=f"{SNAPS_DIR}/{p.snap.name}.assert",
            chain=p.snap.chain_text,
        )
        for p in snaps
    ]
    manifest = Manifest(
        files=files,
        snaps=entries,
        images=lock.images,
        platforms=list(lock.platforms),
        tools=_tool_versions(
            any(p.action == "downloaded" for p in snaps), images_action == "resolved"
        ),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        signature_check=trust is not None,
        trusted_roots=sorted(trust.roots) if trust is not None else [],
    )
    path = write_manifest(bundle, manifest)
    return PrepareReport(bundle, snaps, lock, images_action, path, trust is not None)


# --- verify -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRow:
    path: str
    kind: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    bundle: Path
    rows: list[VerifyRow] = field(default_factory=list)
    signature_check: bool = True
    sideload_checked: bool = False

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[VerifyRow]:
        return [r for r in self.rows if not r.ok]

    def add(self, path: str, kind: str, ok: bool, detail: str) -> None:
        self.rows.append(VerifyRow(path, kind, ok, detail))


def load_trust(trusted_root: Path | None, check_signatures: bool) -> TrustStore | None:
    """The trust store for --trusted-root / the packaged root; None when checks are off."""
    if not check_signatures:
        return None
    return TrustStore.from_file(trusted_root) if trusted_root else TrustStore.default()


def verify_bundle(
    bundle: Path,
    trusted_root: Path | None = None,
    check_signatures: bool = True,
    progress: Progress = _quiet,
) -> VerifyReport:
    """Re-check every file against the manifest and every snap against its assertions.

    Returns the report when everything verifies; raises BundleError (carrying the
    report, one row per file) naming each file and what differs otherwise.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise AirgapError(
            f"{bundle}: bundle directory not found",
            resolution="Pass --bundle DIR, the directory `invoke prepare` wrote.",
        )
    manifest = read_manifest(bundle)
    trust = load_trust(trusted_root, check_signatures)
    report = VerifyReport(bundle, signature_check=trust is not None)
    snap_files = {s.file: s for s in manifest.snaps}
    digests: dict[str, FileDigests] = {}
    for rel, want in sorted(manifest.files.items()):
        path = bundle / rel
        kind = "snap" if rel in snap_files else "file"
        if not path.is_file():
            report.add(rel, kind, False, "listed in manifest.json but missing")
            continue
        progress(f"hashing {rel}")
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
        elif kind == "file":
            report.add(rel, kind, True, f"sha256 {got.sha256[:16]}... {got.size} bytes")
    for rel in bundle_files(bundle):
        if rel not in manifest.files:
            report.add(rel, "file", False, "not in manifest.json (added after prepare?)")
    for entry in manifest.snaps:
        for rel in (entry.file, entry.assertion):
            if rel not in manifest.files:
                report.add(rel, "snap", False, "snap listed in manifest.json without a file entry")
        _verify_snap_entry(bundle, entry, trust, digests, report)
    _verify_lock(bundle, manifest, report)
    report.sideload_checked = _verify_archives(bundle, report)
    if not report.ok:
        fails = report.failures
        raise BundleError(
            f"{bundle}: {len(fails)} problem(s): "
            + "; ".join(f"{r.path}: {r.detail}" for r in fails[:3])
            + (" ..." if len(fails) > 3 else ""),
            report,
            details="\n".join(f"- {r.path}: {r.detail}" for r in fails),
            resolution="Do not install from this bundle; copy it again, or re-run "
            "`invoke prepare --bundle DIR` on the connected side.",
        )
    return report


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


def _verify_lock(bundle: Path, manifest: Manifest, report: VerifyReport) -> None:
    path = bundle / LOCK_FILE
    if not path.is_file():
        return
    try:
        lock = read_lock(path)
    except AirgapError as exc:
        report.add(LOCK_FILE, "lock", False, exc.brief)
        return
    got = {str(i.ref): (i.digest, i.platforms) for i in lock.images}
    want = {str(i.ref): (i.digest, i.platforms) for i in manifest.images}
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        report.add(
            LOCK_FILE, "lock", False, f"images differ from manifest.json: {', '.join(diff[:3])}"
        )
    else:
        report.add(LOCK_FILE, "lock", True, f"{len(got)} image(s) match manifest.json")


def _verify_archives(bundle: Path, report: VerifyReport) -> bool:
    """Run the side-load validator on images/*.tar when the side-load module is present."""
    for stray in sideload.not_imported(bundle / IMAGES_DIR):
        err = sideload.not_imported_error([stray], "in the bundle")
        report.add(
            stray.relative_to(bundle).as_posix(),
            "archive",
            False,
            f"{err.brief.split(': ', 1)[1]}. Resolution: {err.resolution}",
        )
    archives = sorted((bundle / IMAGES_DIR).glob("*.tar"))
    if not archives:
        return False
    lock_path = bundle / LOCK_FILE
    lock = read_lock(lock_path) if lock_path.is_file() else None
    platforms = lock.platforms if lock else []
    for archive in archives:
        rel = archive.relative_to(bundle).as_posix()
        errors = []
        for plat in platforms or ["linux/amd64"]:
            expected = sideload.expected_from_lock(lock, plat) if lock else None
            try:
                rep = sideload.validate_archive(archive, expected, plat)
            except AirgapError as exc:
                errors.append(f"{plat}: {exc.brief}")
                continue
            report.add(
                rel, "archive", True, f"{plat}: {len(rep.images)} image(s) valid for the runtime"
            )
            break
        else:
            report.add(rel, "archive", False, "; ".join(errors))
    return True
