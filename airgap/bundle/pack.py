"""Carry a bundle across the air gap on media: ``pack`` cuts it into parts of at most a
given size plus an index; airgap.bundle.unpack checks every part, then rebuilds it.

The format (version 1). A pack is one byte stream cut into ``NAME.part-0001``,
``NAME.part-0002``, ... (each at most the part size; all but the last exactly it), NAME
being ``k8s-airgap-`` and the first 12 hex digits of manifest.json's sha256, so that parts
of two packs never share a name. The stream holds the bundle's files one after another and
nothing else: each file as it is, or as one zstd frame. ``index.json``, written last (parts
without it are visibly an unfinished pack), is the framing: each part's name, size and
sha256, and for each file its path, size, sha256 and mode, whether it is compressed, and
where it lies in the stream (``offset``, ``stored`` bytes). Without this tool one file
comes back with ``cat NAME.part-* | tail -c +$((offset + 1)) | head -c STORED`` (then
``zstd -d`` if compressed). Not tar: a tar header needs a member's size before its data,
so every compressed file would need a temporary copy; here zstd writes into the stream.

Compression (``auto``): zstd -3 on the first 8 MiB of each file; the whole file is
compressed only if that sample shrinks by at least 10% (image layers are gzip'd and do
not). zstd runs as a filter on a named pipe (``airgap.process`` starts programs with
stdin on /dev/null), so no file is ever held in memory or copied to a temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from airgap import process
from airgap.bundle.layout import MANIFEST, SIGNATURE, Bundle
from airgap.bundle.manifest import read_manifest
from airgap.bundle.mediasize import _SIZE_FIX, Meter
from airgap.bundle.mediasize import FAT32 as FAT32  # re-exported: pack's public names
from airgap.bundle.mediasize import human_bytes as human_bytes
from airgap.bundle.mediasize import parse_size as parse_size
from airgap.errors import AirgapError, CommandError
from airgap.fileio import Writeback, write_atomic
from airgap.progress import Say, quiet

INDEX = "index.json"
NAME_PREFIX = "k8s-airgap-"
PART_NAME = re.compile(r"^(?P<name>.+)\.part-(?P<number>\d{4,})$")
CHUNK = 1 << 20
SAMPLE = 8 << 20  # bytes of each file zstd tries first
MIN_GAIN = 0.10  # a file is compressed when its sample shrinks by at least this much
PROBE = 1 << 20  # bytes zlib tries first, in-process
PROBE_GAIN = 0.03
ZSTD = ["-3"]
COMPRESS_MODES = ("auto", "never", "always")
_Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Count = Annotated[int, Field(ge=0)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PartEntry(_Entry):
    """One part: its file name, size and sha256."""

    name: str
    size: Annotated[int, Field(ge=1)]
    sha256: _Hex64


class FileEntry(_Entry):
    """One bundle file as it was (size, sha256, mode), and where and how the stream holds it."""

    path: str
    size: _Count
    sha256: _Hex64
    mode: Annotated[int, Field(ge=0, le=0o777)]
    compressed: bool
    offset: _Count
    stored: _Count
    # zstd -3 of the first 8 MiB / its size (auto only; None when the in-process zlib
    # probe of the first MiB already showed that compression would not pay)
    sample_ratio: float | None = None

    @property
    def ratio(self) -> float:  # stored bytes per original byte: 0.25 is a quarter, 1.0 as is
        return self.stored / self.size if self.size else 1.0


class PackIndex(_Entry):
    """index.json: the format, every part, every file."""

    format: Literal["k8s-airgap-pack"]
    version: Literal[1]
    name: str
    part_size: Annotated[int, Field(ge=1)]
    compressor: str
    total: _Count  # bytes of the stream: every part
    files_total: _Count  # bytes of the bundle: every file as it was
    parts: list[PartEntry]
    files: list[FileEntry]

    @property
    def ratio(self) -> float:  # bytes of the parts per bundle byte (1.0: nothing gained)
        return self.total / self.files_total if self.files_total else 1.0


@dataclass(frozen=True)
class PackReport:
    """What pack wrote, for the summary table (ratio: media bytes per bundle byte)."""

    out: Path
    index: PackIndex
    parts: list[PartEntry]
    files: list[FileEntry]
    bytes_in: int  # the bundle's files
    bytes_out: int  # the parts
    ratio: float
    seconds: float

    @property
    def rate(self) -> float:  # bundle bytes per second
        return self.bytes_in / max(self.seconds, 1e-9)


def zstd_filter(args: list[str], chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``zstd ARGS`` over chunks, streamed: a thread writes them into a named pipe zstd
    reads; its stdout comes back piece by piece. CommandError when zstd fails."""
    with tempfile.TemporaryDirectory(prefix="k8s-airgap-zstd-") as tmp, \
            tempfile.TemporaryFile() as err:
        fifo = os.path.join(tmp, "in")
        os.mkfifo(fifo, 0o600)
        argv = ["zstd", *args, "-q", "-c", fifo]
        proc = process.popen(argv, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        failed: list[BaseException] = []
        feeder = threading.Thread(target=_feed, args=(fifo, chunks, failed), daemon=True)
        feeder.start()
        try:
            while data := os.read(proc.stdout.fileno(), CHUNK):
                yield data
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the reader stopped early
                proc.kill()
            proc.wait()
            while feeder.is_alive():  # zstd is gone: an open() waiting for it goes on to EPIPE
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
                feeder.join(0.01)
            proc.stdout.close()
        if failed:
            raise failed[0]
        if code != 0:
            err.seek(0)
            raise CommandError(argv, code, "", err.read().decode(errors="replace"))


def _feed(fifo: str, chunks: Iterable[bytes], failed: list[BaseException]) -> None:
    try:
        with open(fifo, "wb") as fh:  # open() returns once zstd opens the pipe too
            for chunk in chunks:
                fh.write(chunk)
    except BrokenPipeError:
        pass  # zstd stopped reading: its exit status says why
    except BaseException as exc:  # handed to the reading thread
        failed.append(exc)


def pieces(data: bytes) -> Iterator[bytes]:
    return (data[start:start + CHUNK] for start in range(0, len(data), CHUNK))


class _PartWriter:
    """The stream, cut into parts of at most part_size bytes as it is written; each part
    is fsync'd before the next begins, so the index, written last, describes parts on disk."""

    def __init__(self, out: Path, name: str, part_size: int) -> None:
        self.out, self.name, self.part_size = out, name, part_size
        self.parts: list[PartEntry] = []
        self.paths: list[Path] = []
        self.total = self._size = 0
        self._fh: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._writeback = Writeback(-1)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._fh is None:
                self.paths.append(self.out / f"{self.name}.part-{len(self.parts) + 1:04d}")
                self._fh = open(self.paths[-1], "xb")  # noqa: SIM115 - closed by _close/abort
                self._hash, self._size = hashlib.sha256(), 0
                self._writeback = Writeback(self._fh.fileno())
            piece = view[:self.part_size - self._size]
            try:
                self._fh.write(piece)
            except OSError as exc:
                raise self._refusal(exc) from exc
            self._hash.update(piece)
            self._size += len(piece)
            self._writeback.wrote(len(piece))
            self.total += len(piece)
            view = view[len(piece):]
            if self._size == self.part_size:
                self._close()

    @property
    def position(self) -> int:
        """Bytes of the stream handed to the writer so far (offsets in the index)."""
        return self.total

    def finish(self) -> list[PartEntry]:
        if self._fh is not None:
            self._close()
        return self.parts

    def abort(self) -> None:  # remove every part this run wrote
        if self._fh is not None:
            self._fh.close()
        for path in self.paths:
            path.unlink(missing_ok=True)

    def _close(self) -> None:
        assert self._fh is not None
        try:
            self._fh.flush()
            self._writeback.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise self._refusal(exc) from exc
        self._fh.close()
        self._fh = None
        self.parts.append(PartEntry(name=self.paths[-1].name, size=self._size,
                                    sha256=self._hash.hexdigest()))

    def _refusal(self, exc: OSError) -> AirgapError:
        full = " (the medium is full)" if exc.errno == errno.ENOSPC else ""
        return AirgapError(f"{self.paths[-1]}: cannot write{full}: {exc.strerror}",
                           details=f"{human_bytes(self.total)} of the pack written; removed.",
                           resolution=f"Free space in {self.out} or pack onto a larger "
                                      "medium; the pack is at most the bundle's size.")


def pack(bundle: Path, out: Path, part_size: int, *, progress: Say | None = None,
         compress: str = "auto") -> PackReport:
    """Write the bundle into out/NAME.part-NNNN (each at most part_size bytes), then
    out/index.json. Each file's sha256 is checked against the manifest on the way; on any
    failure every part this run wrote is removed."""
    if not isinstance(part_size, int) or part_size < 1:
        raise AirgapError(f"--part-size {part_size!r}: a part must hold at least one byte",
                          resolution=_SIZE_FIX)
    if compress not in COMPRESS_MODES:
        raise AirgapError(f"--compress {compress!r}: not a mode",
                          resolution=f"Use one of {', '.join(COMPRESS_MODES)}.")
    layout, out = Bundle(Path(bundle)), Path(out)
    if not layout.manifest.is_file():
        raise AirgapError(
            f"{layout.manifest}: missing: the bundle is not complete",
            resolution="Run `invoke prepare --bundle DIR` on the connected side first "
                       "(it writes manifest.json last), then pack that directory.")
    expected = read_manifest(layout.root).files
    sources = [*layout.files(), *([SIGNATURE] if layout.signature.is_file() else []), MANIFEST]
    name = NAME_PREFIX + hashlib.sha256(layout.manifest.read_bytes()).hexdigest()[:12]
    _check_out(out, layout.root, name, progress or quiet)
    meter = Meter(progress or quiet, sum((layout.root / rel).stat().st_size for rel in sources))
    writer, read = _ThreadedPartWriter(out, name, part_size), [0]  # read: bundle bytes so far
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for rel in sources:
            entry = _pack_file(layout.root, rel, compress, writer, meter, read)
            known = expected.get(rel)
            if known and (known.size, known.sha256) != (entry.size, entry.sha256):
                raise AirgapError(
                    f"{layout.root / rel}: differs from the manifest",
                    details=f"size {entry.size}, sha256 {entry.sha256}\nmanifest: size "
                            f"{known.size}, sha256 {known.sha256}",
                    resolution="Run `invoke verify --bundle DIR` to see every damaged "
                               "file, and `invoke prepare` again; nothing was packed.")
            files.append(entry)
        parts = writer.finish()
        index = PackIndex(format="k8s-airgap-pack", version=1, name=name,
                          part_size=part_size, compressor="zstd " + " ".join(ZSTD),
                          total=writer.total, files_total=sum(f.size for f in files),
                          parts=parts, files=files)
        write_atomic(out / INDEX, index.model_dump_json(indent=2) + "\n")
    except OSError as exc:  # reading the bundle, or making out (parts: AirgapError)
        writer.abort()
        raise AirgapError(f"{exc.filename or layout.root}: {exc.strerror or exc}",
                          resolution="Make the bundle readable and --out writable.") from exc
    except BaseException:
        writer.abort()
        raise
    meter(f"packed {len(files)} files into {len(index.parts)} parts", read[0], last=True)
    return PackReport(out, index, index.parts, index.files, index.files_total, index.total,
                      index.ratio, time.monotonic() - meter.start)


class _ThreadedPartWriter(_PartWriter):
    """The same parts, written (and hashed, and fsync'd) by a thread of their own, so
    that reading and hashing the bundle's files overlaps writing the parts (measured in
    bench/fullgap.py: the one-thread pack was hash- and fsync-bound)."""

    DEPTH = 16  # chunks in flight (at most 16 MiB)

    def __init__(self, out: Path, name: str, part_size: int) -> None:
        super().__init__(out, name, part_size)
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._queued = 0
        self._thread = threading.Thread(target=self._drain, name="pack-writer", daemon=True)
        self._thread.start()

    @property
    def position(self) -> int:
        return self._queued

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    super().write(item)
                except BaseException as exc:  # handed to the reading thread
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queued += len(data)
        self._queue.put(bytes(data))

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> list[PartEntry]:
        self._stop()
        if self._error is not None:
            raise self._error
        return super().finish()

    def abort(self) -> None:
        self._error = self._error or AirgapError("pack aborted", resolution="Run it again.")
        self._stop()
        super().abort()


def _pack_file(root: Path, rel: str, mode: str, writer: _PartWriter, meter: Meter,
               read: list[int]) -> FileEntry:
    """One file into the stream: read once, hashed as read, compressed if it pays."""
    offset, digest, size = writer.position, hashlib.sha256(), 0
    with open(root / rel, "rb") as fh:
        perm = os.fstat(fh.fileno()).st_mode & 0o777
        head = fh.read(SAMPLE)
        more = fh.read(1) if len(head) == SAMPLE else b""
        sample, ratio = None, None
        if mode == "auto" and head and _may_shrink(head):
            sample = b"".join(zstd_filter(ZSTD, pieces(head)))
            ratio = round(len(sample) / len(head), 4)
        # else: zlib -1 on its first MiB gained under 3%, zstd would not pay (no ratio)
        compressed = bool(head) and (mode == "always"
                                     or (ratio is not None and ratio <= 1 - MIN_GAIN))

        def data() -> Iterator[bytes]:
            nonlocal size
            rest = iter(lambda: fh.read(CHUNK), b"") if more else iter(())
            for piece in itertools.chain(pieces(head), [more] if more else [], rest):
                digest.update(piece)
                size += len(piece)
                read[0] += len(piece)
                yield piece

        if compressed and sample is not None and not more:
            for _ in data():  # the sample was the whole file: its zstd output is stored
                pass
            stream: Iterable[bytes] = [sample]
        else:
            stream = zstd_filter([*ZSTD, "-T0"], data()) if compressed else data()
        for piece in stream:
            writer.write(piece)
            meter(f"writing part {len(writer.parts) + 1}", read[0])
    return FileEntry(path=rel, size=size, sha256=digest.hexdigest(), mode=perm,
                     compressed=compressed, offset=offset, stored=writer.position - offset,
                     sample_ratio=ratio)


def _may_shrink(head: bytes) -> bool:
    """A quick in-process look before a zstd run: zlib level 1 on the first MiB. Data
    that deflate cannot shrink by 3% (gzip'd layers, random bytes) does not reach the
    10% zstd -3 needs; this saves a zstd process per image blob (measured in
    bench/fullgap.py)."""
    probe = head[:PROBE]
    return len(zlib.compress(probe, 1)) < len(probe) * (1 - PROBE_GAIN)


def _check_out(out: Path, root: Path, name: str, say: Say) -> None:
    """Refuse an out inside the bundle or holding another pack; remove the parts of an
    unfinished pack of this same bundle (no index.json: that pack was stopped)."""
    if out.exists() and not out.is_dir():
        raise AirgapError(f"{out}: not a directory", resolution="Give --out a directory.")
    if out.resolve().is_relative_to(root.resolve()):
        raise AirgapError(f"{out}: inside the bundle {root}",
                          resolution="Pack into a directory outside the bundle.")
    fix = f"Pack into an empty directory, or delete {out}/{INDEX} and the *.part-* files."
    if (out / INDEX).exists():
        try:
            other = json.loads((out / INDEX).read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            other = None
        what = "this bundle" if other == name else f"another bundle ({other or 'unreadable'})"
        raise AirgapError(f"{out}: already holds a complete pack of {what}", resolution=fix)
    parts = sorted(p for p in out.iterdir() if PART_NAME.match(p.name)) if out.is_dir() else []
    if foreign := [p.name for p in parts if p.name.rsplit(".part-", 1)[0] != name]:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if foreign[3:] else "")
        raise AirgapError(f"{out}: holds parts of another, unfinished pack: {shown}",
                          details=f"This bundle's parts are named {name}.part-NNNN.",
                          resolution=fix)
    if parts:
        say(f"removing {len(parts)} parts of an unfinished pack of this bundle in {out}")
        for p in parts:
            p.unlink()
