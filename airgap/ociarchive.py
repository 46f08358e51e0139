"""Reading and writing image archives the way containerd's importer sees them.

The runtime accepts an uncompressed tar holding either an OCI image layout
(``oci-layout`` + ``index.json`` + ``blobs/``) or a docker-archive (``manifest.json``).
When both are present (regctl writes both) containerd takes the OCI layout. An image
is named by the ``io.containerd.image.name`` annotation, else by the raw
``org.opencontainers.image.ref.name`` (FACTS). This module only reports what an
archive holds; deciding whether that is acceptable is ``airgap.sideload``'s job.

Archives can be gigabytes: tars are read once, as a stream, hashing every member.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from airgap.errors import AirgapError

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
OCI_LAYOUT_VERSION = "1.0.0"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

# Members up to this size are kept in memory (manifests, configs, index.json);
# larger ones are only hashed.
KEEP_LIMIT = 4 * 1024 * 1024
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
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"{text!r} is not a platform such as linux/amd64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) > 2 else "")


def platform_matches(found: Platform, wanted: Platform) -> bool:
    """containerd's rule in short: os and architecture equal; the variant must match
    when the wanted platform names one (arm64 implies v8)."""
    if (found.os, found.architecture) != (wanted.os, wanted.architecture):
        return False
    if not wanted.variant:
        return True
    default = {"arm64": "v8"}.get(found.architecture, "")
    return (found.variant or default) == wanted.variant


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
        raise AirgapError(f"{path}: {what} is missing or too large to be metadata")
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
        raise AirgapError(f"{path}: manifest.json is not a docker-archive manifest list")
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


# -- writing -------------------------------------------------------------------------


def _header(name: str, size: int, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _copy_padded(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    left = size
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise AirgapError(f"file shrank while being archived ({left} bytes short)")
        dst.write(chunk)
        left -= len(chunk)
    pad = -size % BLOCK
    if pad:
        dst.write(b"\0" * pad)


def tar_overhead(sizes: Iterable[int]) -> int:
    """Bytes write_layout_tar adds on top of the files' contents."""
    return sum(BLOCK + (-s % BLOCK) for s in sizes) + 2 * BLOCK


def write_layout_tar(layout: Path, dest: Path, files: Iterable[str]) -> Path:
    """Tar ``files`` (paths relative to ``layout``) uncompressed into ``dest``, atomically.

    Written by hand rather than with tarfile.open(): no directory entries, no PAX
    headers and no record padding, so the archive is the blobs plus 512 bytes a file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for rel in files:
                src = layout / rel
                size = src.stat().st_size
                out.write(_header(rel, size))
                with src.open("rb") as fh:
                    _copy_padded(fh, out, size)
            out.write(b"\0" * (2 * BLOCK))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def layout_files(layout: Path) -> Iterator[str]:
    """oci-layout, index.json, then every blob, sorted: a stable order."""
    yield "oci-layout"
    yield "index.json"
    for blob in sorted((layout / "blobs").rglob("*")):
        if blob.is_file():
            yield blob.relative_to(layout).as_posix()
