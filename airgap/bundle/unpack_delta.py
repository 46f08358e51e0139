"""unpack with a base: a delta pack is reassembled (airgap.bundle.unpack, every guarantee
kept) into dest/.partial/delta, then merged with the site's bundle into dest
(airgap.bundle.delta.merge_delta), so that dest is the full bundle.

The delta's manifest.json is read out of the parts first (checked against the index's
sha256), so a base that is not the one the delta names is refused before anything is
written or a part consumed. If the merge fails after consume deleted the parts, the
reassembled delta is kept where the next unpack (or merge_delta) finds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError

from airgap.bundle.delta import check_base, merge_delta
from airgap.bundle.layout import MANIFEST, PARTIAL_DIR, Bundle
from airgap.bundle.manifest import Manifest, ManifestDocument
from airgap.bundle.pack import FileEntry, PackIndex, zstd_filter
from airgap.bundle.unpack import UnpackReport, read_index, unpack
from airgap.errors import AirgapError
from airgap.progress import Say, quiet
from airgap.snaps import hash_file

DELTA_DIR = "delta"  # under dest/.partial/: the reassembled delta


def unpack_onto_base(parts: Path, dest: Path, base: Path, *, consume: bool = False,
                     progress: Say | None = None) -> UnpackReport:
    """The delta packed in parts/, merged with ``base`` (the bundle the site last
    received) into dest: the full bundle, as if its own pack had been unpacked."""
    say = progress or quiet
    start = time.monotonic()
    parts, dest, base = Path(parts), Path(dest), Path(base)
    index = read_index(parts)
    packed = next(f for f in index.files if f.path == MANIFEST)
    layout = Bundle(dest)
    if layout.manifest.is_file() and hash_file(layout.manifest).sha256 == packed.sha256:
        return unpack(parts, dest, consume=consume, progress=say)  # says it is there
    manifest = packed_manifest(parts, index, packed)
    check_base(parts / packed.path, base, manifest)
    if dest.exists() and not dest.is_dir():
        raise AirgapError(f"{dest}: not a directory", resolution="Unpack into a new directory.")
    if dest.is_dir() and (other := sorted(p.name for p in dest.iterdir()
                                          if p.name != PARTIAL_DIR)):
        raise AirgapError(f"{dest}: already holds {', '.join(other[:5])}",
                          resolution="Unpack into an empty (or new) directory, or delete them.")
    made = [p for p in (*reversed(dest.parents), dest, layout.partial_dir) if not p.exists()]
    work = layout.partial_dir / DELTA_DIR
    kept = _reassembled(work, index, packed)
    try:
        if kept:
            say(f"{work} already holds this delta (an earlier unpack): merging it")
            rep = UnpackReport(work, index, index.parts, index.files, index.total,
                               index.files_total, index.ratio, 0.0, 0.0)
        else:
            shutil.rmtree(work, ignore_errors=True)
            rep = unpack(parts, work, consume=consume, progress=say)
    except BaseException:
        _remove(made)
        raise
    try:
        merged = merge_delta(work, base, dest, say)
    except BaseException as exc:
        if not (rep.consumed or kept) or not isinstance(exc, AirgapError):
            shutil.rmtree(work, ignore_errors=True)
            _remove(made)
            raise
        raise AirgapError(exc.brief, details=exc.details, resolution=(
            f"{exc.resolution or ''} The parts are consumed; the reassembled delta is kept "
            f"in {work}: run the unpack again (with the same --base) once fixed.").strip()
        ) from exc
    shutil.rmtree(work)
    if layout.partial_dir in made:
        layout.partial_dir.rmdir()
    say(f"merged with {base}: {merged.files} files, {merged.from_base} from the base, "
        f"{merged.linked} hard-linked, {merged.copied} copied")
    return replace(rep, dest=dest, seconds=time.monotonic() - start)


def _reassembled(work: Path, index: PackIndex, packed: FileEntry) -> bool:
    """work holds this very delta, every packed file of its size (kept by a merge that
    failed after consume; merge_delta hashes each file again)."""
    manifest = Bundle(work).manifest
    if not manifest.is_file() or hash_file(manifest).sha256 != packed.sha256:
        return False
    return all((work / f.path).is_file() and (work / f.path).stat().st_size == f.size
               for f in index.files)


def _remove(made: list[Path]) -> None:
    for p in reversed(made):
        with contextlib.suppress(OSError):
            if p.name == PARTIAL_DIR:
                shutil.rmtree(p)
            else:
                p.rmdir()


def packed_manifest(parts: Path, index: PackIndex, entry: FileEntry) -> Manifest:
    """manifest.json read straight out of the parts (decompressed if stored so),
    checked against the index's sha256: nothing is written."""
    data, offset, left = bytearray(), entry.offset, entry.stored
    for part in index.parts:
        if left == 0:
            break
        if offset >= part.size:
            offset -= part.size
            continue
        path = parts / part.name
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read(min(left, part.size - offset))
        except OSError as exc:
            raise AirgapError(f"{path}: {exc.strerror or exc}",
                              resolution="Copy the part again from the media.") from exc
        data += chunk
        left -= len(chunk)
        offset = 0
    raw = (b"".join(zstd_filter(["-d"], [bytes(data)])) if entry.compressed
           else bytes(data))
    where = parts / index.name
    if hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise AirgapError(f"{where}: the {MANIFEST} in the parts does not match the index",
                          resolution="Copy the parts again from the media, then unpack "
                                     "again (unpack names each damaged part).")
    try:
        return ManifestDocument.model_validate_json(raw).manifest()
    except ValidationError as exc:
        raise AirgapError(f"{where}: the packed {MANIFEST} is not a bundle manifest "
                          f"({exc.errors()[0]['loc']})",
                          resolution="Pack the bundle again on the connected side.") from None
