"""The runtime's rules, checked before anything is shipped (FACTS): an archive without
a fully qualified name imports nothing, a compressed tar is ignored, another platform is
useless on the nodes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import AirgapError
from airgap.plan.images import ImageRef, parse_image_ref
from airgap.platforms import parse_platform, platform_matches
from airgap.sideload.archive import NAME_ANNOTATION, REF_ANNOTATION, ImageEntry, read_archive


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
        raise AirgapError(f"{path}: archive not found",
                          resolution="Pass the .tar files `invoke sideload --out DIR` wrote.")
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
    """Everything in the archive directory that the runtime would silently skip.

    The k8s snap's containerd imports only uncompressed ``*.tar`` files directly in its
    images directory (FACTS): a ``.tar.gz`` or ``.tgz``, any other name, and anything
    in a subdirectory are ignored without a word, and their images are then missing
    offline.
    """
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not (p.is_file() and p.suffix == ".tar"))


def _skip_reason(path: Path) -> tuple[str, str]:
    """(why the runtime skips it, how to fix it) for one file of not_imported."""
    resend = "re-export with `invoke sideload --bundle DIR` (uncompressed *.tar)"
    if path.is_dir():
        return ("is a directory, and the runtime imports only *.tar files directly in the "
                "images directory",
                f"Move its archives up into {path.parent}, {resend}, or remove it")
    if path.name.endswith(COMPRESSED_SUFFIXES):
        if path.name.endswith((".gz", ".tgz")):
            stem = path.name.rsplit(".", 1)[0] + (".tar" if path.suffix == ".tgz" else "")
            how = f"`gunzip {path}` (it writes {stem})"
        else:
            how = "its tool (zstd -d, xz -d, bzip2 -d, lz4 -d)"
        return ("is compressed, and the runtime imports only uncompressed *.tar",
                f"Decompress it with {how} so that it ends in .tar, {resend}, or remove it")
    return ("is not named *.tar, and the runtime imports only *.tar",
            f"Rename it to *.tar if it is an uncompressed archive, {resend}, or remove it")


def not_imported_error(files: Sequence[Path], where: str) -> AirgapError:
    first = files[0]
    why, fix = _skip_reason(first)
    others = f" (and {len(files) - 1} more: {', '.join(f.name for f in files[1:4])})" if (
        len(files) > 1
    ) else ""
    return AirgapError(
        f"{first}: {why}; its images would be missing on the nodes{others}",
        details="\n".join(f"- {f}: {_skip_reason(f)[0]}" for f in files[1:]) or None,
        resolution=f"{fix}. ({where})",
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
