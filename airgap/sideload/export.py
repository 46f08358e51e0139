"""Export: regctl writes each image as a named OCI layout for the plan's platform;
``--single-archive`` writes one archive with every blob once."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from airgap import tools
from airgap.errors import AirgapError, CommandError
from airgap.mediatypes import OCI_INDEX
from airgap.progress import Say, quiet
from airgap.sideload.archive import NAME_ANNOTATION, REF_ANNOTATION
from airgap.sideload.layout_tar import layout_files, write_layout_tar
from airgap.sideload.select import SideloadImage, Source, expected_refs
from airgap.sideload.validate import ArchiveReport, validate_archives

SINGLE_ARCHIVE = "images.tar"


EXPORT_TIMEOUT = 3600.0


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
    progress: Say = quiet,
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
    progress: Say,
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
            raise AirgapError(f"regctl wrote no manifest for {img.ref.name} into {layout}",
                              resolution="Run the export again with --debug to see regctl's "
                              "output; check `invoke tools --check`.")
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
