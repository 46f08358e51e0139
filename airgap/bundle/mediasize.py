"""Sizes and progress for media (pack and unpack): --part-size parsing, bytes for a
reader, and a meter that prints bytes and rates at most once a second."""

from __future__ import annotations

import math
import re
import time
from fractions import Fraction

from airgap.errors import AirgapError
from airgap.progress import Say

FAT32 = 4 * 1024**3 - 1  # FAT32's largest file
PROGRESS_EVERY = 1.0  # seconds between two progress lines
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)
_SIZE_FIX = ("Give bytes, or a number with K, M, G or T (powers of 1024): --part-size 4G, "
             "700M, or fat32 (4 GiB - 1 byte, the largest file FAT32 holds).")


def parse_size(text: str) -> int:
    """A part size in bytes: "4000000000", "700M", "650MB", "4G", "4GiB", "1.5G", "fat32".

    K, M, G and T are powers of 1024 whether written K, KB or KiB (a CD's "650 MB" is
    650 MiB); "fat32" is 4 GiB - 1 byte, the largest file FAT32 holds.
    """
    match = _SIZE.match(text.strip())
    if text.strip().lower() == "fat32":
        return FAT32
    size = int(Fraction(match.group(1)) * _UNITS[match.group(2).upper()]) if match else 0
    if size < 1:
        raise AirgapError(f"--part-size {text!r}: not a size of one byte or more",
                          resolution=_SIZE_FIX)
    return size


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Meter:
    """Lines with bytes and rate: the first, then one every PROGRESS_EVERY s, and the last."""

    def __init__(self, say: Say, total: int) -> None:
        self.say, self.total, self.start, self.last = say, total, time.monotonic(), -math.inf

    def __call__(self, what: str, done: int, *, last: bool = False) -> None:
        now = time.monotonic()
        if last or now - self.last >= PROGRESS_EVERY:
            self.last = now
            rate = human_bytes(done / max(now - self.start, 1e-9))
            self.say(f"{what}, {human_bytes(done)} of {human_bytes(self.total)}, {rate}/s")


__all__ = ["FAT32", "PROGRESS_EVERY", "_SIZE_FIX", "Meter", "human_bytes", "parse_size"]
