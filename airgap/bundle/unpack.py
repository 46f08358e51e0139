"""Put a packed bundle back together (the format: airgap.bundle.pack), checking it first.

Nothing is written until the index is read, dest holds no other bundle, its filesystem has
room and every part has its size and sha256. Files are rebuilt in dest/.partial/unpack
(the bundle's place for unfinished work), each checked against its sha256 as written, and
moved into place once all match, manifest.json last (a bundle with a manifest is
complete); on any failure that directory is removed.

Free space on dest's filesystem, the rule (space_needed):
- without consume, or with the parts on another filesystem: the bundle's size, the sum of
  its files' sizes (the parts stay where they are);
- consume=True, parts on dest's filesystem: each part is deleted once read, so the need is
  the most the unpack adds at once: at the end of each part, bundle bytes written by then
  minus the parts deleted before it (a file stored as is counts what has been read of it,
  a compressed one counts whole once begun). Without compression, about one part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from airgap.bundle.layout import CONNECTED_DIR, MANIFEST, PARTIAL_DIR, SIGNATURE, Bundle
from airgap.bundle.mediasize import Meter, human_bytes
from airgap.bundle.pack import (
    CHUNK,
    INDEX,
    FileEntry,
    PackIndex,
    PartEntry,
    zstd_filter,
)
from airgap.errors import AirgapError, CommandError
from airgap.fileio import Writeback
from airgap.progress import Say, quiet
from airgap.snaps import hash_file

WORK_DIR = "unpack"  # under dest/.partial/
_DAMAGED = ("The parts passed their check, so they changed since or the pack was written "
            "wrong: copy them again from the media, or pack the bundle again.")


@dataclass(frozen=True)
class UnpackReport:
    """What unpack did, for the summary table. already_present: dest held this very
    bundle (its manifest.json is the packed one), so nothing was written or deleted."""

    dest: Path
    index: PackIndex
    parts: list[PartEntry]
    files: list[FileEntry]
    bytes_in: int  # the parts
    bytes_out: int  # the bundle's files
    ratio: float  # parts bytes per bundle byte
    seconds: float
    check_seconds: float  # of which: checking every part
    consumed: list[str] = field(default_factory=list)  # parts deleted
    already_present: bool = False

    @property
    def rate(self) -> float:  # bundle bytes per second
        return self.bytes_out / max(self.seconds, 1e-9)


def unpack(parts: Path, dest: Path, *, consume: bool = False, progress: Say | None = None,
           base: Path | None = None) -> UnpackReport:
    """Rebuild the bundle packed in parts/ (index.json and its parts) into dest.

    Refused, with nothing written, when index.json is missing or invalid, a part is
    missing or damaged (one error names every such part and says which are fine), dest
    holds another bundle, or dest's filesystem has less free space than space_needed.
    consume=True deletes each part as soon as it has been read. With ``base`` (the site's
    bundle), a delta pack is merged with it into the full bundle (bundle.unpack_delta).
    """
    if base is not None:
        from airgap.bundle.unpack_delta import unpack_onto_base
        return unpack_onto_base(parts, dest, base, consume=consume, progress=progress)
    say = progress or quiet
    start = time.monotonic()
    parts, dest = Path(parts), Path(dest)
    index = read_index(parts)
    report = UnpackReport(dest, index, index.parts, index.files, index.total,
                          index.files_total, index.ratio, 0.0, 0.0)
    if _check_dest(dest, parts, index):
        say(f"{dest} already holds this bundle: nothing to do")
        return replace(report, already_present=True)
    if any(f.compressed for f in index.files) and shutil.which("zstd") is None:
        raise AirgapError("zstd is not installed: the pack holds compressed files",
                          resolution="apt-get install zstd, then run unpack again.")
    if consume and not os.access(parts, os.W_OK):
        raise AirgapError(f"{parts}: not writable, so consume cannot delete the parts",
                          resolution="Copy the parts to a writable disk, or drop --consume.")
    try:
        _check_space(parts, dest, index, consume)
        _check_parts(parts, index, Meter(say, index.total))
        checked = time.monotonic() - start
        consumed = _rebuild(parts, dest, index, consume, Meter(say, index.total))
    except OSError as exc:  # reading the parts, making dest (writing files: AirgapError)
        raise AirgapError(f"{exc.filename or parts}: {exc.strerror or exc}",
                          resolution="Make the parts readable and dest writable.") from exc
    return replace(report, seconds=time.monotonic() - start, check_seconds=checked,
                   consumed=consumed)


def read_index(parts: Path) -> PackIndex:
    """parts/index.json, validated: names, paths inside the bundle, a stream that adds up."""
    path = Path(parts) / INDEX
    fix = ("Copy index.json again from the media; if it is the same there, pack the "
           "bundle again on the connected side.")
    try:
        index = PackIndex.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise AirgapError(
            f"{path}: missing: {parts} is not a pack, or not all of it (pack writes "
            "index.json last)",
            resolution="Copy index.json from the media along with the parts; if the "
                       "media has none, the pack did not finish: run pack again.") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        raise AirgapError(f"{path}: not a k8s-airgap pack index ({where}: {first['msg']})",
                          resolution=fix) from None
    if problem := index_problem(index):
        raise AirgapError(f"{path}: {problem}", resolution=fix)
    return index


def index_problem(index: PackIndex) -> str | None:
    """What makes an index unusable, or None: a path that escapes dest (absolute, ..) or
    is not shipped, a clash between paths, part names, or a stream that does not add up."""
    if "/" in index.name or "\0" in index.name:
        return f"the name {index.name!r} is not a file name"
    for number, part in enumerate(index.parts, 1):
        if part.name != f"{index.name}.part-{number:04d}":
            return f"part {number} is named {part.name!r}, not {index.name}.part-{number:04d}"
        if part.size > index.part_size:
            return f"{part.name} is larger than the part size ({index.part_size})"
    seen: set[str] = set()
    dirs: set[str] = set()
    offset = 0
    for f in index.files:
        steps = f.path.split("/")
        if (f.path.startswith("/") or "\0" in f.path or "\\" in f.path
                or any(s in ("", ".", "..") for s in steps)
                or steps[0] in (PARTIAL_DIR, CONNECTED_DIR)):
            return f"file {f.path!r}: not a path inside a bundle"
        if f.path in seen or f.path in dirs or any(
                "/".join(steps[:i]) in seen for i in range(1, len(steps))):
            return f"file {f.path!r}: listed twice, or both as a file and a directory"
        seen.add(f.path)
        dirs.update("/".join(steps[:i]) for i in range(1, len(steps)))
        if f.offset != offset or (not f.compressed and f.stored != f.size):
            return f"file {f.path!r}: offset or stored size does not follow from the others"
        offset += f.stored
    if MANIFEST not in seen:
        return f"it lists no {MANIFEST}"
    if {offset, sum(p.size for p in index.parts)} != {index.total} or sum(
            f.size for f in index.files) != index.files_total:
        return "the files, the parts and the totals (total, files_total) do not add up"
    return None


def space_needed(index: PackIndex, consuming: bool) -> int:
    """Bytes of free space the unpack needs on dest's filesystem (the rule: module
    docstring). consuming: consume=True and the parts on that same filesystem."""
    if not consuming:
        return index.files_total
    need = deleted = end = done = i = 0
    files = index.files
    for part in index.parts:
        end += part.size
        while i < len(files) and files[i].offset + files[i].stored <= end:
            done += files[i].size
            i += 1
        begun = 0
        if i < len(files) and files[i].offset < end:
            begun = files[i].size if files[i].compressed else end - files[i].offset
        need = max(need, done + begun - deleted)
        deleted += part.size
    return need


def _check_dest(dest: Path, parts: Path, index: PackIndex) -> bool:
    """Refuse a dest that holds another bundle or anything the pack would write; True
    when it holds this very bundle already."""
    fix = "Unpack into an empty (or new) directory."
    if dest.exists() and not dest.is_dir():
        raise AirgapError(f"{dest}: not a directory", resolution=fix)
    if parts.resolve().is_relative_to(dest.resolve()):
        raise AirgapError(f"{dest}: holds the parts ({parts}); they would end up in the "
                          "bundle", resolution=fix)
    manifest = Bundle(dest).manifest
    if manifest.is_file() and not manifest.is_symlink():
        packed = next(f for f in index.files if f.path == MANIFEST)
        if hash_file(manifest).sha256 == packed.sha256:
            return True
        raise AirgapError(f"{dest}: already holds a different bundle (its {MANIFEST} is "
                          f"not the packed one)", resolution=fix + " Or delete that bundle.")
    tops = sorted({f.path.split("/")[0] for f in index.files})
    clash = [t for t in tops if os.path.lexists(dest / t)]
    if os.path.islink(dest / PARTIAL_DIR):
        clash.append(PARTIAL_DIR)
    if clash:
        raise AirgapError(f"{dest}: already holds {', '.join(clash)}, which the pack would "
                          "write", resolution=fix + " Or delete them.")
    return False


def _check_space(parts: Path, dest: Path, index: PackIndex, consume: bool) -> None:
    probe = dest
    while not probe.exists():
        probe = probe.parent
    consuming = consume and os.stat(parts).st_dev == os.stat(probe).st_dev
    need = space_needed(index, consuming)
    free = shutil.disk_usage(probe).free
    if free >= need:
        return
    rule = ("with consume and the parts on this filesystem: the most the unpack adds at "
            "once, bundle bytes written minus parts already deleted" if consuming else
            "the bundle's size, the sum of its files (the parts stay where they are)")
    hint = "" if consuming or consume else ", or --consume if the parts are on this disk"
    raise AirgapError(
        f"{probe}: not enough free space to unpack: needs {human_bytes(need)} ({need} "
        f"bytes), has {human_bytes(free)} ({free} bytes)",
        details=f"rule: {rule}; the bundle is {index.files_total} bytes, the pack "
                f"{index.total} bytes in {len(index.parts)} parts.",
        resolution=f"Free {human_bytes(need - free)} there or unpack elsewhere{hint}.")


def _check_parts(parts: Path, index: PackIndex, meter: Meter) -> None:
    """Every part present, of its size and sha256: one error naming every bad part.
    Parts are hashed in parallel (hashlib releases the GIL), a thread per core."""
    bad: dict[int, str] = {}
    fine: list[int] = []
    done = 0

    def check(number: int, part: PartEntry) -> str | None:
        path = parts / part.name
        size = path.stat().st_size if path.is_file() else None
        if size is None:
            return f"{part.name}: missing"
        if size != part.size:
            what = "truncated" if size < part.size else "too long"
            return f"{part.name}: {what}: {size} bytes, the index says {part.size}"
        if (digest := hash_file(path).sha256) != part.sha256:
            return f"{part.name}: damaged: sha256 {digest}, the index says {part.sha256}"
        return None

    width = max(1, min(len(index.parts), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(width, thread_name_prefix="unpack-check") as pool:
        jobs = {pool.submit(check, n, part): (n, part)
                for n, part in enumerate(index.parts, 1)}
        for job in as_completed(jobs):
            number, part = jobs[job]
            if (problem := job.result()) is None:
                fine.append(number)
            else:
                bad[number] = problem
            done += part.size
            meter(f"checked {len(fine) + len(bad)}/{len(index.parts)} parts", done)
    if bad:
        lines = [bad[n] for n in sorted(bad)]
        names = [line.split(":")[0] for line in lines]
        fine.sort()
        good = (f"fine ({len(fine)}): {index.name}.part-{_ranges(fine)}" if fine
                else "no part is fine")
        raise AirgapError(
            f"{parts}: {len(bad)} of {len(index.parts)} parts missing or damaged: "
            + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if names[5:] else ""),
            details="\n".join([*lines, good]),
            resolution=f"Copy only the parts named above again from the media into {parts} "
                       "(the others are fine), then unpack again.")


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "0001..0003, 0005"."""
    runs = [[n for _, n in run] for _, run in groupby(enumerate(numbers), lambda p: p[1] - p[0])]
    return ", ".join(f"{r[0]:04d}" if len(r) == 1 else f"{r[0]:04d}..{r[-1]:04d}" for r in runs)


class _PartReader:
    """The stream, read back across the parts in order; with consume, each part is
    deleted as soon as its last byte has been read."""

    def __init__(self, parts: Path, index: PackIndex, consume: bool) -> None:
        self.dir, self.parts, self.consume = parts, index.parts, consume
        self.number = self.done = self._left = 0  # the part being read (from 1); bytes read
        self.consumed: list[str] = []
        self._fh: BinaryIO | None = None

    def pieces(self, count: int) -> Iterator[bytes]:
        """Exactly count bytes of the stream, in pieces of at most CHUNK."""
        while count:
            data = self._read(min(count, CHUNK))
            count -= len(data)
            yield data

    def _read(self, n: int) -> bytes:
        try:
            if self._fh is None:
                part = self.parts[self.number]
                self.number += 1
                self._fh, self._left = open(self.dir / part.name, "rb"), part.size  # noqa: SIM115
            data = self._fh.read(min(n, self._left))
        except OSError as exc:
            raise self._refusal(exc.strerror or str(exc)) from exc
        if not data:
            raise self._refusal("shorter than when it was checked")
        self._left -= len(data)
        self.done += len(data)
        if not self._left:
            self.close()
            if self.consume:
                (self.dir / self.parts[self.number - 1].name).unlink()
                self.consumed.append(self.parts[self.number - 1].name)
        return data

    def _refusal(self, what: str) -> AirgapError:
        return AirgapError(f"{self.dir / self.parts[self.number - 1].name}: {what}",
                           resolution="Copy it again from the media, then unpack again.")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _rebuild(parts: Path, dest: Path, index: PackIndex, consume: bool,
             meter: Meter) -> list[str]:
    """Every file into dest/.partial/unpack, checked, then moved into place; the parts
    consumed."""
    layout = Bundle(dest)
    made = [] if layout.partial_dir.exists() else [layout.partial_dir]
    missing = dest
    while not missing.exists():  # dest and any parent it lacks: removed again on failure
        made.append(missing)
        missing = missing.parent
    work = layout.partial_dir / WORK_DIR
    if work.exists():
        shutil.rmtree(work)  # left by an unpack that was stopped
    work.mkdir(parents=True)
    reader = _PartReader(parts, index, consume)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="unpack-hash") as hasher:
            for f in index.files:
                _rebuild_file(reader, work, f, hasher, lambda: meter(
                    f"unpacking part {reader.number}/{len(index.parts)}", reader.done))
        _fsync_all(work, index.files)
        tops = sorted({f.path.split("/")[0] for f in index.files},
                      key=lambda t: (t == MANIFEST, t == SIGNATURE, t))
        for top in tops:  # manifest.json last: a bundle with a manifest is complete
            if os.path.lexists(dest / top):
                raise AirgapError(f"{dest / top}: appeared during the unpack",
                                  resolution="Let one unpack at a time write into dest.")
            os.rename(work / top, dest / top)
    except BaseException as exc:
        reader.close()
        shutil.rmtree(work, ignore_errors=True)
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()
        if not (reader.consumed and isinstance(exc, AirgapError)):
            raise
        gone = f"consume had already deleted {', '.join(reader.consumed)}"
        fix = f"{exc.resolution or ''} Copy those again first.".strip()
        raise AirgapError(exc.brief, details=f"{exc.details or ''}\n{gone}".strip(),
                          resolution=fix) from exc
    work.rmdir()
    if layout.partial_dir in made:
        layout.partial_dir.rmdir()
    meter(f"unpacked {len(index.files)} files", reader.done, last=True)
    return reader.consumed


def _rebuild_file(reader: _PartReader, work: Path, f: FileEntry,
                  hasher: ThreadPoolExecutor, tick: Callable[[], None]) -> None:
    """One file from the stream, checked against its size and sha256 as it is written.
    Each piece is hashed by the hasher thread while it is written and the next one is
    read; the kernel is told to start writing the file back as it grows (Writeback), and
    _fsync_all makes it durable once every file is written."""
    target = work / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.resolve().is_relative_to(work.resolve()):
        raise AirgapError(f"{f.path}: would be written outside {work}",
                          resolution="Pack the bundle again; its index is not sound.")
    digest, size = hashlib.sha256(), 0
    stream = reader.pieces(f.stored)
    pending: list[Future[None]] = []
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb", buffering=0) as out:
            writeback = Writeback(fd)
            for piece in zstd_filter(["-d"], stream) if f.compressed else stream:
                size += len(piece)
                if size > f.size:
                    break
                pending.append(hasher.submit(digest.update, piece))
                view = memoryview(piece)
                while view:
                    view = view[out.write(view) or 0:]
                writeback.wrote(len(piece))
                if len(pending) > 2:  # at most three pieces in memory
                    pending.pop(0).result()
                tick()
            writeback.flush()
    except OSError as exc:
        raise AirgapError(f"{target}: cannot write: {exc.strerror}",
                          resolution="Free space on that disk (or fix its permissions), "
                                     "then unpack again.") from exc
    except CommandError as exc:
        raise AirgapError(f"{f.path}: its compressed bytes do not decompress",
                          details=exc.details, resolution=_DAMAGED) from exc
    finally:
        for job in pending:
            job.result()
    if size != f.size or digest.hexdigest() != f.sha256:
        raise AirgapError(f"{f.path}: unpacked, it does not match the index (size, sha256)",
                          details=f"expected {f.size} bytes, sha256 {f.sha256}",
                          resolution=_DAMAGED)
    os.chmod(target, f.mode)


def _fsync_all(work: Path, files: list[FileEntry]) -> None:
    """Every rebuilt file on disk before any is moved into place: fsync'd a few at a time
    (most of their bytes are already written back: Writeback)."""
    def sync(f: FileEntry) -> None:
        fd = os.open(work / f.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        with ThreadPoolExecutor(4, thread_name_prefix="unpack-fsync") as pool:
            list(pool.map(sync, files))
    except OSError as exc:
        raise AirgapError(f"{exc.filename or work}: cannot write: {exc.strerror}",
                          resolution="Free space on that disk, then unpack again.") from exc
