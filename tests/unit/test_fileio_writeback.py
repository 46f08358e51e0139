"""airgap.fileio.Writeback: starts writeback of a growing file in steps, every byte once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap import fileio
from airgap.fileio import Writeback


def test_ranges_cover_every_byte_once_in_steps(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int, int]] = []

    def record(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((fd, offset, length, flags))
        return 0

    monkeypatch.setattr(fileio, "WRITEBACK_STEP", 100)
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: record)
    wb = Writeback(7)
    for n in (40, 40, 40, 90, 10, 5):  # 225 bytes
        wb.wrote(n)
    wb.flush()
    wb.flush()  # nothing new: no call
    assert [(c[1], c[2]) for c in calls] == [(0, 120), (120, 100), (220, 5)]
    assert {c[0] for c in calls} == {7} and {c[3] for c in calls} == {2}


def test_without_sync_file_range_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: None)
    wb = Writeback(-1)  # a bad fd would fail any real call
    wb.wrote(1 << 30)
    wb.flush()
    assert wb.done == wb.written == 1 << 30


@pytest.mark.skipif(not os.path.exists("/proc/self"), reason="Linux only")
def test_the_real_call_accepts_a_file_and_refuses_a_bad_fd(tmp_path: Path) -> None:
    call = fileio._sync_file_range()
    assert call is not None  # glibc has had it since 2.6
    path = tmp_path / "f"
    with path.open("wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        assert call(fh.fileno(), 0, 4096, 2) == 0
    assert call(-1, 0, 4096, 2) == -1
