"""Writing an OCI image layout as one uncompressed tar, blobs streamed (never in memory)."""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from airgap.errors import AirgapError

BLOCK = 512
CHUNK = 1024 * 1024


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
            raise AirgapError(f"file shrank while being archived ({left} bytes short)",
                              resolution="Something changed the export while it was written; "
                              "run `invoke sideload` again.")
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
