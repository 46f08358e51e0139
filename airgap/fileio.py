"""Atomic file writes: a failed step leaves no half-written output."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> Path:
    """Write data to path via a temporary file in the same directory, then rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


WRITEBACK_STEP = 32 << 20  # start writing back every 32 MiB written
_SYNC_FILE_RANGE_WRITE = 2


class Writeback:
    """Starts the kernel writing a file's new bytes to disk while more are written, so
    that the fsync at the end waits for little (bench.fullgap: a gigabyte written to the
    page cache and fsync'd only at the end waited as long again). Linux
    sync_file_range(SYNC_FILE_RANGE_WRITE): asynchronous, the pages stay cached; a
    no-op where libc lacks it. Durability still comes from an fsync."""

    def __init__(self, fd: int) -> None:
        self.fd, self.done, self.written = fd, 0, 0

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written - self.done >= WRITEBACK_STEP:
            self.flush()

    def flush(self) -> None:
        """Start writeback of everything written since the last call."""
        call = _sync_file_range()
        if call is not None and self.written > self.done:
            call(self.fd, self.done, self.written - self.done, _SYNC_FILE_RANGE_WRITE)
        self.done = self.written


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        # The process's own symbols (libc among them): find_library would run ldconfig.
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], fn)
