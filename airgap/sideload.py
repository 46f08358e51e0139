"""Side-load mode: image archives the runtime will really import, delivered and confirmed.

Side-loading fails silently (FACTS): an archive without a usable name imports nothing
and exits 0, a compressed tar is ignored, an archive for the preparing machine's
platform is useless on the nodes, and files copied after install are only imported
when containerd restarts. So every archive is exported with a fully qualified,
digest-free ``--name`` for the plan's platform, validated against the runtime's rules
before it can be shipped, and after delivery each node is asked which images it holds.

Digests: archives are OCI layouts (containerd keeps an OCI archive's digest; a
docker-archive import rewrites it). A single-platform export of a multi-platform index
holds the platform's manifest, so the digest the runtime records, and the one we
expect, is that platform manifest's digest (images.lock ``platforms[P]``), not the
index digest the tag resolves to.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rich.markup import escape
from rich.table import Table

from airgap import tools
from airgap.config import CONTAINERD_UNIT, SIDELOAD_DIR, Plan
from airgap.errors import AirgapError, CommandError
from airgap.images import ImageRef, parse_image_ref
from airgap.lock import ImageLock
from airgap.nodes import Node
from airgap.ociarchive import (
    NAME_ANNOTATION,
    OCI_INDEX,
    REF_ANNOTATION,
    ImageEntry,
    layout_files,
    parse_platform,
    platform_matches,
    read_archive,
    write_layout_tar,
)

SINGLE_ARCHIVE = "images.tar"
EXPORT_TIMEOUT = 3600.0
CONFIRM_TIMEOUT = 120.0
CONFIRM_INTERVAL = 2.0
SNAP_CTR = "/snap/k8s/current/bin/ctr"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- what to export -------------------------------------------------------------------


@dataclass(frozen=True)
class SideloadImage:
    """One image to export: its name on the nodes, where to pull it, what digest to expect."""

    ref: ImageRef  # digest-free, fully qualified: the name kubelet asks for
    source: str  # the reference regctl reads (upstream, or a connected-side registry)
    expected_digest: str | None = None  # the digest the runtime will record

    @property
    def archive_name(self) -> str:
        return archive_file_name(self.ref)


def archive_file_name(ref: ImageRef) -> str:
    """A readable, unique file name: ghcr.io_canonical_k8s-snap_pause_3.10.tar."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref.name) + ".tar"


@dataclass(frozen=True)
class Source:
    """A connected-side registry to export from instead of each image's upstream.

    ``http://HOST:PORT[/prefix]``; the prefix may contain {registry} like mirror.path_prefix.
    """

    scheme: str
    host: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Source:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AirgapError(
                f"--source {url!r}: not a registry URL",
                resolution="Write http://HOST:PORT or https://HOST:PORT[/nested/path].",
            )
        return cls(parts.scheme, parts.netloc, parts.path.strip("/"))

    def ref_for(self, ref: ImageRef) -> ImageRef:
        return ref.in_registry(self.host, self.prefix.replace("{registry}", ref.registry))

    def regctl_args(self) -> list[str]:
        return ["--host", f"reg={self.host},tls=disabled"] if self.scheme == "http" else []


def plan_platform(plan: Plan, platform: str | None) -> str:
    """The nodes' platform: --platform, else the plan's only platform."""
    if platform:
        try:
            parse_platform(platform)
        except ValueError as exc:
            raise AirgapError(f"--platform: {exc}") from None
        return platform
    if len(plan.platforms) != 1:
        raise AirgapError(
            f"{plan.source}: platforms lists {', '.join(plan.platforms)}; an archive holds one",
            resolution="Pass --platform for the nodes you deliver to, and write each platform's "
            "archives to their own --out directory.",
        )
    return plan.platforms[0]


def select_images(
    refs: Sequence[ImageRef],
    platform: str,
    *,
    lock: ImageLock | None = None,
    source: Source | None = None,
) -> list[SideloadImage]:
    """Pair each image with the reference to export from and the digest to expect.

    With a lock, the export is pinned to the locked digest, and the expected digest is
    the platform's manifest digest (or the image digest when it is a single manifest).
    """
    out = []
    for ref in refs:
        name = ImageRef(ref.registry, ref.repository, ref.tag or "latest", None)
        src = source.ref_for(name) if source else name
        expected = None
        locked = lock.find(name) if lock else None
        if locked is not None:
            src = src.with_digest(locked.digest)
            expected = locked.platforms.get(platform)
            if expected is None and locked.media_type and "index" not in locked.media_type \
                    and "list" not in locked.media_type:
                expected = locked.digest
            if expected is None and locked.platforms:
                raise AirgapError(
                    f"{name.name}: images.lock has no {platform} manifest "
                    f"(it has {', '.join(sorted(locked.platforms))})",
                    resolution="Re-run `invoke prepare` with this platform in the plan.",
                )
        elif ref.digest:
            src = src.with_digest(ref.digest)
        out.append(SideloadImage(name, str(src), expected))
    return out


def expected_refs(images: Sequence[SideloadImage]) -> list[ImageRef]:
    """What validate_archives expects: each name, with the digest the runtime records
    when it is known."""
    return [i.ref.with_digest(i.expected_digest) if i.expected_digest else i.ref
            for i in images]


def expected_from_lock(lock: ImageLock, platform: str) -> list[ImageRef]:
    """What validate_archive should expect for a bundle: names with the digests the
    runtime records for ``platform``."""
    return expected_refs(select_images(lock.refs(), platform, lock=lock))


# -- validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveImage:
    name: str
    digest: str | None  # None: docker-archive (the runtime rewrites the digest)
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class ArchiveReport:
    path: Path
    format: str
    images: tuple[ArchiveImage, ...]
    size: int
    blob_count: int
    blob_bytes: int


def _closest(name: str, expected: Sequence[ImageRef]) -> ImageRef | None:
    """The image list entry an archive's (wrong) name most likely meant."""
    if len(expected) == 1:
        return expected[0]
    try:
        ref = parse_image_ref(name.split("@", 1)[0])
    except ValueError:
        ref = None
    if ref is not None:
        for cand in expected:
            if (cand.repository, cand.tag) == (ref.repository, ref.tag):
                return cand
        last = ref.repository.rsplit("/", 1)[-1]
        for cand in expected:
            if (cand.repository.rsplit("/", 1)[-1], cand.tag) == (last, ref.tag):
                return cand
    return None


def _fix_name(name: str | None, expected: Sequence[ImageRef]) -> str:
    guess = _closest(name or "", expected) if expected else None
    if guess is None and name:
        try:
            guess = parse_image_ref(name.split("@", 1)[0])
        except ValueError:
            guess = None
    target = guess.name if guess else "<registry>/<repository>:<tag>"
    return f"Re-export with --name {target} (`invoke sideload` does this)."


def _check_image(
    entry: ImageEntry,
    fmt: str,
    expected: Sequence[ImageRef] | None,
    wanted: str,
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    exp = list(expected or [])
    label = entry.name or (entry.digest or "an image")
    name = entry.name
    if fmt == "docker-archive" and name:
        with contextlib.suppress(ValueError):
            name = parse_image_ref(name).name  # containerd normalises RepoTags
    if not name:
        problems.append((
            f"image {entry.digest} has no name ({NAME_ANNOTATION} or {REF_ANNOTATION}): "
            "the runtime imports nothing from it",
            _fix_name(None, exp),
        ))
    elif "@" in name:
        problems.append((
            f"image is named {name!r}: a name with a digest is never found by kubelet",
            _fix_name(name, exp),
        ))
    else:
        try:
            qualified = parse_image_ref(name).name
        except ValueError:
            qualified = None
        if qualified != name:
            problems.append((
                f"image is named {name!r}, not a fully qualified name "
                f"(kubelet asks for {qualified or 'registry/repository:tag'})",
                _fix_name(name, exp),
            ))
        elif exp and name not in {r.name for r in exp}:
            guess = _closest(name, exp)
            said = f"the image list says {guess.name!r}" if guess else "not in the image list"
            problems.append((
                f"image is named {name!r}, {said}",
                _fix_name(name, exp) if guess else "Export only images of the image list "
                "(`invoke sideload`), or add this image to the plan's images.",
            ))
    want = parse_platform(wanted)
    if not any(platform_matches(p, want) for p in entry.platforms):
        found = ", ".join(str(p) for p in entry.platforms) or "unknown"
        problems.append((
            f"image {label} is for {found}, the plan's nodes are {wanted}",
            f"Re-export with --platform {wanted} (the runtime imports only its own platform); "
            f"an image with no {wanted} variant cannot run on these nodes.",
        ))
    for blob in entry.problems:
        role = f" ({blob.role})" if blob.role else ""
        problems.append((
            f"image {label}: blob {blob.digest}{role} is {blob.problem}",
            "Re-export the image; the archive was truncated or altered after export.",
        ))
    if name and entry.digest and fmt == "oci":
        for ref in exp:
            if ref.name == name and ref.digest and ref.digest != entry.digest:
                problems.append((
                    f"image {name} is {entry.digest}, the image list pins {ref.digest}",
                    "Re-export from the lock (`invoke sideload --bundle DIR`).",
                ))
    return problems


def validate_archive(
    path: Path,
    expected: Sequence[ImageRef] | None,
    platform: str,
    *,
    require_suffix: bool = True,
    display: str | None = None,
) -> ArchiveReport:
    """Check an archive against the runtime's rules; AirgapError says what to fix.

    ``expected``: the image list; every image in the archive must carry exactly one of
    these names, and when an entry has a digest, the digest the runtime will record
    (see expected_from_lock). None checks only that names are fully qualified.
    """
    path = Path(path)
    if not path.is_file():
        raise AirgapError(f"{path}: archive not found")
    if require_suffix and path.suffix != ".tar":
        raise AirgapError(
            f"{path}: the runtime imports only files named *.tar",
            resolution=f"Rename it to {path.name.split('.', 1)[0]}.tar (uncompressed).",
        )
    contents = read_archive(path, parse_platform(platform))
    if not contents.images:
        raise AirgapError(
            f"{path}: holds no image (index.json lists no manifest)",
            resolution="Re-export with `invoke sideload`.",
        )
    problems: list[tuple[str, str]] = []
    for entry in contents.images:
        problems.extend(_check_image(entry, contents.format, expected, platform))
    names = [e.name for e in contents.images if e.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append((f"names {dup[0]} twice", "Export each image once."))
    if problems:
        brief = f"{display or path}: {problems[0][0]}"
        more = problems[1:]
        if more:
            brief += f" (and {len(more)} more problem(s))"
        raise AirgapError(
            brief,
            details="\n".join(f"- also: {p}" for p, _ in more) or None,
            resolution=" ".join(dict.fromkeys(r for _, r in problems)),
        )
    images = tuple(
        ArchiveImage(
            name=parse_image_ref(e.name).name if contents.format == "docker-archive" and e.name
            else str(e.name),
            digest=e.digest,
            platforms=tuple(str(p) for p in e.platforms),
        )
        for e in contents.images
    )
    return ArchiveReport(path, contents.format, images, path.stat().st_size,
                         contents.blob_count, contents.blob_bytes)


def validate_archives(
    paths: Sequence[Path],
    expected: Sequence[ImageRef] | None,
    platform: str,
    *,
    display: Callable[[Path], str] | None = None,
) -> list[ArchiveReport]:
    """Validate each archive, then the set: no image twice, every expected image present."""
    reports = [
        validate_archive(p, expected, platform, display=display(p) if display else None)
        for p in paths
    ]
    seen: dict[str, Path] = {}
    for rep in reports:
        for img in rep.images:
            if img.name in seen:
                raise AirgapError(
                    f"{img.name} is in both {seen[img.name]} and {rep.path}",
                    resolution="Keep one: which one the runtime imports last is not defined.",
                )
            seen[img.name] = rep.path
    if expected is not None:
        missing = [r.name for r in expected if r.name not in seen]
        if missing:
            raise AirgapError(
                f"{len(missing)} image(s) of the image list are in no archive: "
                + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
                resolution="Run `invoke sideload` again to export them.",
            )
    return reports


COMPRESSED_SUFFIXES = (".gz", ".tgz", ".zst", ".xz", ".bz2", ".lz4")


def not_imported(directory: Path) -> list[Path]:
    """Files beside the archives that the runtime would silently skip.

    The k8s snap's containerd imports only uncompressed ``*.tar`` (FACTS): a
    ``.tar.gz`` is ignored without a word, and its images are then missing offline.
    """
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix != ".tar")


def not_imported_error(files: Sequence[Path], where: str) -> AirgapError:
    first = files[0]
    compressed = first.name.endswith(COMPRESSED_SUFFIXES)
    why = (
        "is compressed, and the runtime imports only uncompressed *.tar"
        if compressed
        else "is not named *.tar, and the runtime imports only *.tar"
    )
    others = f" (and {len(files) - 1} more: {', '.join(f.name for f in files[1:4])})" if (
        len(files) > 1
    ) else ""
    fix = (
        f"Decompress it (e.g. `gunzip {first}` for .gz) so that it ends in .tar, or remove it"
        if compressed
        else "Rename it to *.tar if it is an uncompressed archive, or remove it"
    )
    return AirgapError(
        f"{first}: {why}; its images would be missing on the nodes{others}",
        resolution=f"{fix}; `invoke sideload` writes archives the runtime imports. ({where})",
    )


def archives_in(out_dir: Path) -> list[Path]:
    """The *.tar archives a previous export wrote into ``out_dir`` (--no-export)."""
    if not out_dir.is_dir():
        raise AirgapError(
            f"{out_dir}: directory not found",
            resolution="Export the archives first (`invoke sideload --out DIR` without "
            "--no-export), or pass the directory that holds them (--out, or --bundle for "
            "BUNDLE/images).",
        )
    stray = not_imported(out_dir)
    if stray:
        raise not_imported_error(stray, f"found in {out_dir}")
    archives = sorted(out_dir.glob("*.tar"))
    if not archives:
        raise AirgapError(
            f"{out_dir}: no *.tar archives",
            resolution="Export them first (`invoke sideload --out DIR` without --no-export); "
            "the runtime imports only uncompressed files named *.tar.",
        )
    return archives


# -- export ----------------------------------------------------------------------------


def _regctl(args: Sequence[str], source: Source | None, img: SideloadImage) -> None:
    try:
        tools.run_tool(
            "regctl", [*(source.regctl_args() if source else []), *args], timeout=EXPORT_TIMEOUT
        )
    except CommandError as exc:
        raise AirgapError(
            f"regctl could not export {img.ref.name} from {img.source}",
            details=exc.details,
            resolution="Check that the registry holds this image and is reachable from this "
            "machine (--source for a connected-side registry); nothing was written.",
        ) from None


def export_images(
    images: Sequence[SideloadImage],
    out_dir: Path,
    platform: str,
    *,
    source: Source | None = None,
    single_archive: bool = False,
    progress: Progress = _quiet,
) -> list[ArchiveReport]:
    """Export, validate, and only then move the archives into out_dir (all or nothing)."""
    if not images:
        raise AirgapError("no images to export",
                          resolution="Give an image list (--images), a bundle (--bundle), "
                          "or images: in the plan.")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = expected_refs(images)
    work = Path(tempfile.mkdtemp(prefix=".sideload-", dir=out_dir))
    ok = False
    try:
        if single_archive:
            built = [_build_single(images, work, platform, source, progress)]
        else:
            built = []
            for img in images:
                progress(f"export {img.ref.name}")
                tmp = work / img.archive_name
                _regctl(["image", "export", "--platform", platform, "--name", img.ref.name,
                         img.source, str(tmp)], source, img)
                built.append(tmp)
        progress("validate")
        reports = validate_archives(
            built, expected, platform, display=lambda p: f"{p.name} (exported, not written)"
        )
        final = []
        for rep in reports:
            dest = out_dir / rep.path.name
            rep.path.replace(dest)
            final.append(ArchiveReport(dest, rep.format, rep.images, rep.size,
                                       rep.blob_count, rep.blob_bytes))
        ok = True
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # a failed export leaves no trace, not even an empty --out


def _build_single(
    images: Sequence[SideloadImage],
    work: Path,
    platform: str,
    source: Source | None,
    progress: Progress,
) -> Path:
    """One OCI layout for all images: regctl copies into an ocidir (each blob once),
    then index.json is rewritten with one named entry per image."""
    layout = work / "layout"
    for n, img in enumerate(images):
        progress(f"copy {img.ref.name}")
        _regctl(["image", "copy", "--platform", platform, img.source,
                 f"ocidir://{layout}:img{n}"], source, img)
    index = json.loads((layout / "index.json").read_text())
    by_tag = {
        (d.get("annotations") or {}).get(REF_ANNOTATION): d for d in index.get("manifests", [])
    }
    manifests = []
    for n, img in enumerate(images):
        desc = by_tag.get(f"img{n}")
        if desc is None:
            raise AirgapError(f"regctl wrote no manifest for {img.ref.name} into {layout}")
        manifests.append({
            "mediaType": desc["mediaType"],
            "digest": desc["digest"],
            "size": desc["size"],
            "annotations": {NAME_ANNOTATION: img.ref.name, REF_ANNOTATION: img.ref.name},
        })
    (layout / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
        separators=(",", ":"),
    ))
    progress("write single archive")
    return write_layout_tar(layout, work / SINGLE_ARCHIVE, layout_files(layout))


# -- delivery --------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeAccess:
    """How to reach the container runtime on a node.

    The defaults are the k8s snap's: archives in /var/snap/k8s/common/images, imported
    only when containerd starts. ``restart`` returns how it restarted the runtime, or
    None when the runtime is not installed (the archives are then imported at its first
    start, and cannot be confirmed yet).
    """

    images_dir: str = SIDELOAD_DIR
    ctr: tuple[str, ...] | None = None  # None: `ctr` on PATH, else the snap's
    restart: Callable[[Node], str | None] | None = None


def _probe(node: Node, argv: Sequence[str]) -> bool:
    try:
        return node.run(argv, check=False, timeout=60).ok
    except AirgapError:  # command not found on this transport
        return False


def restart_runtime(node: Node) -> str | None:
    """snap restart when the snap's containerd runs; the lab's stand-in is a plain unit.

    An installed k8s snap is not a running containerd: until bootstrap/join configures
    and starts it, its unit is inactive, and restarting it would fail (or start an
    unconfigured runtime). Then None: the snap imports the archives when it starts.
    """
    if _probe(node, ["snap", "list", "k8s"]):
        if not _probe(node, ["systemctl", "is-active", "--quiet", CONTAINERD_UNIT]):
            return None
        node.run(["snap", "restart", "k8s.containerd"], timeout=300)
        return "snap restart k8s.containerd"
    if _probe(node, ["systemctl", "cat", f"{CONTAINERD_UNIT}.service"]):
        node.run(["systemctl", "restart", CONTAINERD_UNIT], timeout=300)
        return f"systemctl restart {CONTAINERD_UNIT}"
    return None


def ctr_command(node: Node, runtime: RuntimeAccess | None = None) -> list[str]:
    """How to run ctr on the node: the runtime's own, the PATH's, or the snap's."""
    runtime = runtime or RuntimeAccess()
    if runtime.ctr is not None:
        return list(runtime.ctr)
    if _probe(node, ["ctr", "--version"]):
        return ["ctr"]
    return [SNAP_CTR]


def parse_ctr_images(text: str) -> dict[str, str]:
    """name -> digest from `ctr images ls` (columns REF TYPE DIGEST ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].startswith("sha"):
            out[cols[0]] = cols[2]
    return out


@dataclass(frozen=True)
class DeliveryRow:
    image: str
    expected: str | None
    found: str | None
    status: str  # ok, missing, wrong digest, pending, present (digest not pinned)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "present (digest not pinned)")


@dataclass
class NodeDelivery:
    node: str
    copied: list[str] = field(default_factory=list)
    restart: str | None = None
    rows: list[DeliveryRow] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.rows)

    @property
    def pending(self) -> bool:
        """The runtime is not installed yet: the archives are imported at its first start."""
        return self.restart is None and self.error is None


def _rows(found: dict[str, str], want: dict[str, str | None]) -> list[DeliveryRow]:
    rows = []
    for name, digest in sorted(want.items()):
        got = found.get(name)
        if got is None:
            status = "missing"
        elif digest is None:
            status = "present (digest not pinned)"
        else:
            status = "ok" if got == digest else "wrong digest"
        rows.append(DeliveryRow(name, digest, got, status))
    return rows


def _confirm(
    node: Node, runtime: RuntimeAccess, want: dict[str, str | None], timeout: float
) -> list[DeliveryRow]:
    ctr = ctr_command(node, runtime)
    deadline = time.monotonic() + timeout
    while True:
        found = parse_ctr_images(node.run([*ctr, "-n", "k8s.io", "images", "ls"]).stdout)
        rows = _rows(found, want)
        if all(r.ok for r in rows) or time.monotonic() >= deadline:
            return rows
        time.sleep(CONFIRM_INTERVAL)


def confirm_images(
    node: Node,
    want: dict[str, str | None],
    *,
    runtime: RuntimeAccess | None = None,
    timeout: float = CONFIRM_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[DeliveryRow]:
    """Poll `ctr images ls` until every wanted image is there with its digest.

    For a containerd that has just been started (bootstrap/join): a failing ctr (the
    socket is not up yet) counts as "nothing imported yet", not as an error.
    """
    ctr = ctr_command(node, runtime)
    deadline = clock() + timeout
    while True:
        res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
        rows = _rows(parse_ctr_images(res.stdout) if res.ok else {}, want)
        if all(r.ok for r in rows) or clock() >= deadline:
            return rows
        sleep(CONFIRM_INTERVAL)


def _deliver_one(
    node: Node,
    reports: Sequence[ArchiveReport],
    runtime: RuntimeAccess,
    timeout: float,
    progress: Progress,
) -> NodeDelivery:
    result = NodeDelivery(node.name)
    want = {img.name: img.digest for rep in reports for img in rep.images}
    try:
        for rep in reports:
            progress(f"{node.name}: copy {rep.path.name}")
            node.put(rep.path, f"{runtime.images_dir}/{rep.path.name}", 0o644)
            result.copied.append(rep.path.name)
        progress(f"{node.name}: restart the runtime")
        result.restart = (runtime.restart or restart_runtime)(node)
        if result.restart is None:
            result.rows = [DeliveryRow(n, d, None, "pending") for n, d in sorted(want.items())]
            return result
        progress(f"{node.name}: confirm images")
        result.rows = _confirm(node, runtime, want, timeout)
    except AirgapError as exc:
        result.error = str(exc).splitlines()[0]
    return result


def deliver(
    plan: Plan,
    nodes: Sequence[Node],
    archives: Sequence[Path],
    *,
    expected: Sequence[ImageRef] | None = None,
    platform: str | None = None,
    runtime: RuntimeAccess | None = None,
    timeout: float = CONFIRM_TIMEOUT,
    progress: Progress = _quiet,
) -> list[NodeDelivery]:
    """Validate every archive (nothing moves if one fails), copy them to every node in
    parallel, restart the runtime (import happens only at start), and confirm on each
    node that every image is in namespace k8s.io with the expected digest.

    A node where the runtime is not installed yet gets status "pending": the snap
    imports the archives when containerd first starts (deploy).
    """
    if not archives:
        raise AirgapError("no archives to deliver",
                          resolution="Run `invoke sideload --out DIR` first.")
    if not nodes:
        raise AirgapError(f"{plan.source}: no nodes to deliver to")
    wanted = plan_platform(plan, platform)
    progress("validate archives")
    reports = validate_archives(list(archives), expected, wanted)
    rt = runtime or RuntimeAccess()
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        return list(pool.map(lambda n: _deliver_one(n, reports, rt, timeout, progress), nodes))


# -- report ----------------------------------------------------------------------------


def archive_table(reports: Sequence[ArchiveReport], platform: str, out_dir: Path) -> Table:
    """One row per image: the archive holding it, its digest and the archive's size."""
    table = Table(title=f"Side-load archives ({platform}) in {out_dir}")
    for col in ("archive", "image", "digest", "size"):
        table.add_column(col)
    for rep in reports:
        for n, img in enumerate(rep.images):
            table.add_row(rep.path.name if n == 0 else "", img.name,
                          img.digest or "(docker-archive: set on import)",
                          f"{rep.size / 1e6:.1f} MB" if n == 0 else "")
    return table


def delivery_table(results: Sequence[NodeDelivery]) -> Table:
    """One row per node and image: the digest expected, the one found, the status."""
    table = Table(title="Side-load delivery")
    for col in ("node", "image", "expected", "found", "status"):
        table.add_column(col)
    for res in results:
        if res.error:
            table.add_row(res.node, "", "", "", f"[red]error: {escape(res.error)}[/red]")
        for row in res.rows:
            color = "green" if row.ok else ("yellow" if row.status == "pending" else "red")
            table.add_row(res.node, row.image, row.expected or "-", row.found or "-",
                          f"[{color}]{row.status}[/{color}]")
    return table


def delivery_outcome(results: Sequence[NodeDelivery]) -> tuple[str | None, str | None]:
    """(error, note): an error when a node failed to confirm its images; a note naming
    the nodes whose runtime is not installed yet (pending, not a failure)."""
    failed = [r.node for r in results if not r.ok and not r.pending]
    pending = [r.node for r in results if r.pending]
    error = f"side-loaded images not confirmed on {', '.join(failed)}" if failed else None
    note = (f"Runtime not installed on {', '.join(pending)}: the archives are imported when "
            "containerd first starts (invoke deploy)." if pending else None)
    return error, note
