"""Reading image archives the way containerd's importer sees them.

The runtime accepts an uncompressed tar holding either an OCI image layout
(``oci-layout`` + ``index.json`` + ``blobs/``) or a docker-archive (``manifest.json``).
When both are present (regctl writes both) containerd takes the OCI layout. An image
is named by the ``io.containerd.image.name`` annotation, else by the raw
``org.opencontainers.image.ref.name`` (FACTS). This module only reports what an
archive holds; deciding whether that is acceptable is ``airgap.sideload.validate``'s job;
writing one is ``airgap.sideload.layout_tar``'s.

Archives can be gigabytes: tars are read once, as a stream, hashing every member.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.errors import AirgapError
from airgap.mediatypes import (
    INDEX_TYPES,
)
from airgap.platforms import Platform, platform_matches

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
OCI_LAYOUT_VERSION = "1.0.0"

# Members up to this size are kept in memory (manifests, configs, index.json);
# larger ones are only hashed.
KEEP_LIMIT = 4 * 1024 * 1024
_EXPORT_AGAIN = ("Export the archive again with `invoke sideload` (regctl image export), "
                 "and copy it whole.")
CHUNK = 1024 * 1024
BLOCK = 512

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def detect_compression(path: Path) -> str | None:
    """The compression a file's magic bytes announce, or None for plain data."""
    with path.open("rb") as fh:
        head = fh.read(8)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class Member:
    """One regular file in the tar: its size, hashes, and its bytes when small."""

    path: str
    size: int
    sha256: str
    sha512: str | None = None
    data: bytes | None = None

    def digest(self, algorithm: str) -> str | None:
        if algorithm == "sha256":
            return f"sha256:{self.sha256}"
        if algorithm == "sha512" and self.sha512:
            return f"sha512:{self.sha512}"
        return None


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def scan_tar(path: Path) -> dict[str, Member]:
    """Every regular file of an uncompressed tar, hashed in one streaming pass."""
    members: dict[str, Member] = {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name = _norm(info.name)
                fh = tar.extractfile(info)
                if fh is None:
                    continue
                want512 = name.startswith("blobs/sha512/")
                h256 = hashlib.sha256()
                h512 = hashlib.sha512() if want512 else None
                keep = info.size <= KEEP_LIMIT
                kept: list[bytes] = []
                while chunk := fh.read(CHUNK):
                    h256.update(chunk)
                    if h512 is not None:
                        h512.update(chunk)
                    if keep:
                        kept.append(chunk)
                members[name] = Member(
                    path=name,
                    size=info.size,
                    sha256=h256.hexdigest(),
                    sha512=h512.hexdigest() if h512 is not None else None,
                    data=b"".join(kept) if keep else None,
                )
    except (tarfile.TarError, EOFError) as exc:
        raise AirgapError(
            f"{path}: not a readable tar archive ({exc})",
            resolution="Re-export the image with `invoke sideload`; "
            "the file is truncated or not a tar.",
        ) from None
    return members


@dataclass(frozen=True)
class BlobProblem:
    digest: str
    role: str  # "config", "layer 2", "manifest linux/arm64", ...
    problem: str  # "missing" or "corrupt: ..."


@dataclass
class ImageEntry:
    """One image as the runtime will record it on import."""

    name: str | None  # the name containerd gives it; None: no usable annotation
    annotations: dict[str, str]
    digest: str | None  # digest the runtime records; None for a docker-archive (it changes)
    media_type: str
    platforms: list[Platform] = field(default_factory=list)
    problems: list[BlobProblem] = field(default_factory=list)
    skipped_platforms: list[Platform] = field(default_factory=list)  # in an index, not present


@dataclass
class ArchiveContents:
    format: str  # "oci" or "docker-archive"
    images: list[ImageEntry]
    blob_count: int
    blob_bytes: int


def _json(member: Member | None, what: str, path: Path) -> Any:
    if member is None or member.data is None:
        raise AirgapError(f"{path}: {what} is missing or too large to be metadata",
                          resolution=_EXPORT_AGAIN)
    try:
        return json.loads(member.data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AirgapError(
            f"{path}: {what} is not valid JSON ({exc})",
            resolution="Re-export the image; the archive was altered.",
        ) from None


def _blob_path(digest: str) -> str | None:
    alg, _, hexpart = digest.partition(":")
    if not alg or not hexpart or "/" in hexpart:
        return None
    return f"blobs/{alg}/{hexpart}"


class _Checker:
    """Resolve descriptors against the scanned members, collecting problems."""

    def __init__(self, members: dict[str, Member]) -> None:
        self.members = members

    def blob(self, desc: dict[str, Any], role: str, problems: list[BlobProblem]) -> Member | None:
        digest = str(desc.get("digest", ""))
        bpath = _blob_path(digest)
        member = self.members.get(bpath) if bpath else None
        if member is None:
            problems.append(BlobProblem(digest or "(no digest)", role, "missing"))
            return None
        alg = digest.partition(":")[0]
        actual = member.digest(alg)
        if actual is None:
            problems.append(BlobProblem(digest, role, f"corrupt: unsupported algorithm {alg}"))
            return None
        if actual != digest:
            problems.append(BlobProblem(digest, role, f"corrupt: its content hashes to {actual}"))
            return None
        size = desc.get("size")
        if isinstance(size, int) and size != member.size:
            problems.append(BlobProblem(
                digest, role, f"corrupt: {member.size} bytes, the descriptor says {size}"
            ))
            return None
        return member

    def manifest(
        self, desc: dict[str, Any], role: str, problems: list[BlobProblem]
    ) -> Platform | None:
        """Check a manifest and every blob it names; its platform from the config."""
        member = self.blob(desc, role, problems)
        if member is None or member.data is None:
            return None
        try:
            manifest = json.loads(member.data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            problems.append(BlobProblem(str(desc.get("digest")), role, "corrupt: not JSON"))
            return None
        platform = None
        config_desc = manifest.get("config") or {}
        config = self.blob(config_desc, f"{role} config".strip(), problems)
        if config is not None and config.data is not None:
            try:
                platform = _platform_of(json.loads(config.data))
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append(
                    BlobProblem(str(config_desc.get("digest")), "config", "corrupt: not JSON")
                )
        for n, layer in enumerate(manifest.get("layers") or [], start=1):
            self.blob(layer, f"{role} layer {n}".strip(), problems)
        return platform


def _platform_of(data: Any) -> Platform | None:
    if not isinstance(data, dict):
        return None
    return Platform(
        str(data.get("os", "")), str(data.get("architecture", "")),
        str(data.get("variant", "") or ""),
    )


def _desc_platform(desc: dict[str, Any]) -> Platform | None:
    return _platform_of(desc.get("platform"))


def _hashes_to(member: Member) -> str:
    return f"corrupt: its content hashes to sha256:{member.sha256}"


def read_oci(path: Path, members: dict[str, Member], wanted: Platform | None) -> ArchiveContents:
    layout = _json(members.get("oci-layout"), "oci-layout", path)
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if version != OCI_LAYOUT_VERSION:
        raise AirgapError(
            f"{path}: unsupported OCI layout version {version!r}",
            resolution="Re-export the image with `invoke sideload` (regctl writes layout 1.0.0).",
        )
    index = _json(members.get("index.json"), "index.json", path)
    checker = _Checker(members)
    images: list[ImageEntry] = []
    for desc in index.get("manifests") or []:
        annotations = {str(k): str(v) for k, v in (desc.get("annotations") or {}).items()}
        name = annotations.get(NAME_ANNOTATION) or annotations.get(REF_ANNOTATION) or None
        media = str(desc.get("mediaType", ""))
        entry = ImageEntry(name=name, annotations=annotations, digest=str(desc.get("digest", "")),
                           media_type=media)
        if media in INDEX_TYPES:
            member = checker.blob(desc, "index", entry.problems)
            child_index: dict[str, Any] = {}
            if member is not None and member.data is not None:
                try:
                    child_index = json.loads(member.data)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    entry.problems.append(
                        BlobProblem(entry.digest or "", "index", "corrupt: not JSON")
                    )
                for child in child_index.get("manifests") or []:
                    cplat = _desc_platform(child)
                    role = f"manifest {cplat}" if cplat else "manifest"
                    other = wanted is not None and cplat is not None and not platform_matches(
                        cplat, wanted
                    )
                    absent = _blob_path(str(child.get("digest", ""))) not in members
                    if other and absent and cplat is not None:
                        entry.skipped_platforms.append(cplat)
                        continue
                    found = checker.manifest(child, role, entry.problems)
                    plat = found or cplat
                    if plat is not None:
                        entry.platforms.append(plat)
        else:
            found = checker.manifest(desc, "", entry.problems)
            if found is not None:
                entry.platforms.append(found)
        images.append(entry)
    blobs = [m for p, m in members.items() if p.startswith("blobs/")]
    return ArchiveContents("oci", images, len(blobs), sum(m.size for m in blobs))


def _digest_in_path(p: str) -> str | None:
    """Docker archives name files by digest in several ways; recover it if we can."""
    base = p.rsplit("/", 1)[-1]
    if p.startswith("blobs/sha256/"):
        return f"sha256:{base}"
    stem = base.removesuffix(".json")
    if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem):
        return f"sha256:{stem}"
    return None


def read_docker(path: Path, members: dict[str, Member]) -> ArchiveContents:
    manifest = _json(members.get("manifest.json"), "manifest.json", path)
    if not isinstance(manifest, list):
        raise AirgapError(f"{path}: manifest.json is not a docker-archive manifest list",
                          resolution=_EXPORT_AGAIN)
    images: list[ImageEntry] = []
    used: set[str] = set()
    for item in manifest:
        problems: list[BlobProblem] = []
        cfg_path = _norm(str(item.get("Config", "")))
        used.add(cfg_path)
        cfg_member = members.get(cfg_path)
        platforms: list[Platform] = []
        diff_ids: list[str] = []
        if cfg_member is None:
            problems.append(BlobProblem(cfg_path, "config", "missing"))
        else:
            want = _digest_in_path(cfg_path)
            if want and want != cfg_member.digest("sha256"):
                problems.append(BlobProblem(want, "config", _hashes_to(cfg_member)))
            elif cfg_member.data is not None:
                try:
                    cfg = json.loads(cfg_member.data)
                    plat = _platform_of(cfg)
                    if plat is not None:
                        platforms.append(plat)
                    diff_ids = [str(d) for d in (cfg.get("rootfs") or {}).get("diff_ids") or []]
                except (json.JSONDecodeError, UnicodeDecodeError):
                    problems.append(BlobProblem(cfg_path, "config", "corrupt: not JSON"))
        for n, layer in enumerate(item.get("Layers") or [], start=1):
            lpath = _norm(str(layer))
            used.add(lpath)
            member = members.get(lpath)
            if member is None:
                problems.append(BlobProblem(lpath, f"layer {n}", "missing"))
                continue
            want = _digest_in_path(lpath)
            if want is None and len(diff_ids) >= n and lpath.endswith(".tar"):
                want = diff_ids[n - 1]
            if want and want != member.digest("sha256"):
                problems.append(BlobProblem(want, f"layer {n}", _hashes_to(member)))
        tags: list[str | None] = [str(t) for t in item.get("RepoTags") or []]
        for tag in tags or [None]:
            images.append(ImageEntry(name=tag, annotations={}, digest=None,
                                     media_type="docker-archive", platforms=list(platforms),
                                     problems=list(problems)))
    files = [members[p] for p in used if p in members]
    return ArchiveContents("docker-archive", images, len(files), sum(m.size for m in files))


def read_archive(path: Path, wanted: Platform | None = None) -> ArchiveContents:
    """What the runtime would import from ``path`` (raises AirgapError if it imports nothing)."""
    compression = detect_compression(path)
    if compression is not None:
        raise AirgapError(
            f"{path}: the archive is {compression}-compressed",
            resolution="Export it uncompressed (`invoke sideload`, or `regctl image export` "
            "without --compress); the runtime ignores compressed archives such as .tar.gz.",
        )
    members = scan_tar(path)
    if "oci-layout" in members and "index.json" in members:
        return read_oci(path, members, wanted)
    if "manifest.json" in members:
        return read_docker(path, members)
    raise AirgapError(
        f"{path}: neither an OCI image layout (oci-layout, index.json) "
        "nor a docker-archive (manifest.json)",
        resolution="Export images with `invoke sideload` (regctl image export).",
    )
