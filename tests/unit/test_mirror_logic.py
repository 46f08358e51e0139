"""Mirror mode's pure parts: seed planning for shared layers, messages, the summary."""

from __future__ import annotations

import pytest

from airgap.mirror import (
    _NO_SPACE,
    ImageResult,
    MirrorError,
    MirrorReport,
    Status,
    _raise_unless_complete,
    _seed_split,
    _split_path,
    _Work,
)
from airgap.plan.images import parse_image_ref
from airgap.show import human_bytes
from airgap.show.mirror import summary_line

BASE = "sha256:" + "b" * 64


def work(repo: str, blobs: dict[str, int]) -> _Work:
    ref = parse_image_ref(f"up.example:5000/{repo}:1")
    w = _Work(result=ImageResult(ref=ref, target=f"m/{repo}:1"), source=ref, repo=repo,
              reference="1")
    w.missing_blobs.update(blobs)
    return w


def test_shared_layer_is_seeded_once_and_the_rest_wait() -> None:
    pending = [work(f"app{n}", {BASE: 1_000_000, f"sha256:{n:064d}": 100}) for n in range(5)]
    seeds, rest, shared = _seed_split(pending)
    assert len(seeds) == 1 and len(rest) == 4
    assert shared == {BASE: 1_000_000}


def test_no_shared_layers_means_one_regsync_run() -> None:
    pending = [work(f"app{n}", {f"sha256:{n:064d}": 100}) for n in range(3)]
    seeds, rest, shared = _seed_split(pending)
    assert seeds == [] and rest == pending and shared == {}


def test_split_path() -> None:
    assert _split_path("my/own/app:1") == ("my/own/app", ":", "1")
    assert _split_path("app@sha256:" + "a" * 64) == ("app", "@", "sha256:" + "a" * 64)


def test_enospc_from_distribution_is_recognised() -> None:
    body = r'{\"Op\":\"write\",\"Path\":\"/x/startedat\",\"Err\":28}'
    assert _NO_SPACE.search(body)
    assert not _NO_SPACE.search(r'{\"Err\":2}')


def report_with(*statuses: Status, error: str | None = None) -> MirrorReport:
    images = [ImageResult(ref=parse_image_ref(f"up.example/app{n}:1"), target="t", status=s,
                          bytes_copied=1024 if s is Status.synced else 0)
              for n, s in enumerate(statuses)]
    return MirrorReport(mirror="http://m:5000", images=images, regsync_error=error)


def test_complete_report_does_not_raise() -> None:
    _raise_unless_complete(report_with(Status.synced, Status.present))


def test_missing_upstream_names_the_image() -> None:
    with pytest.raises(MirrorError, match=r"1 image\(s\) missing upstream \(up.example/app1:1\)"):
        _raise_unless_complete(report_with(Status.synced, Status.missing_upstream))


def test_disk_full_resolution_says_storage() -> None:
    rep = report_with(Status.missing, error="regsync exited 1:\nthe mirror ran out of disk space")
    with pytest.raises(MirrorError) as err:
        _raise_unless_complete(rep)
    assert "storage" in (err.value.resolution or "")
    assert err.value.report is rep


def test_summary_line_counts() -> None:
    line = summary_line(report_with(Status.synced, Status.present, Status.mismatch))
    assert "3 image(s): 1 synced, 1 already present, 1 failed" in line
    assert "1.0 KiB" in line
    assert human_bytes(0) == "0 B" and human_bytes(5 * 1024 * 1024) == "5.0 MiB"
