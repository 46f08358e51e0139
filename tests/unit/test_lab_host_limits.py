"""lab.host.raise_limits: LXD's production settings, raised, never lowered."""

from __future__ import annotations

from pathlib import Path

from lab.host import HOST_LIMITS, raise_limits


def test_low_limits_are_raised_and_high_ones_kept(tmp_path: Path) -> None:
    for key in HOST_LIMITS:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "fs/inotify/max_user_instances").write_text("128\n")
    (tmp_path / "fs/inotify/max_user_watches").write_text("9999999\n")  # higher: kept
    (tmp_path / "kernel/keys/maxkeys").write_text("200\n")
    (tmp_path / "kernel/keys/maxbytes").write_text("20000\n")
    done = raise_limits(tmp_path)
    assert done == ["fs.inotify.max_user_instances 128 -> 1024",
                    "kernel.keys.maxkeys 200 -> 2000", "kernel.keys.maxbytes 20000 -> 2000000"]
    assert (tmp_path / "fs/inotify/max_user_watches").read_text() == "9999999\n"
    assert raise_limits(tmp_path) == []  # a second run changes nothing


def test_a_missing_key_is_skipped(tmp_path: Path) -> None:
    assert raise_limits(tmp_path) == []
