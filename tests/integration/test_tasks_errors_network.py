"""Bad input that a task can only find out by trying the network: still a clean `Error:`.

The mirror and the image registry are 127.0.0.1 on a port nothing listens on (bound,
then released), so nothing can leave the machine. regctl does the export.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.require import require_binary
from tests.support.taskrun import assert_clean_error, bad_input_workdir, run_task

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mirror_unreachable_names_the_mirror(tmp_path: Path) -> None:
    port = _closed_port()
    w = bad_input_workdir(tmp_path, port)
    proc = run_task("mirror", "--plan", f"{w}/plan.yaml", "--images", f"{w}/images.txt")
    assert_clean_error(proc, [f"127.0.0.1:{port}"])


def test_sideload_source_unreachable_names_the_image(tmp_path: Path) -> None:
    require_binary("regctl")
    port = _closed_port()
    w = bad_input_workdir(tmp_path, port)
    proc = run_task(
        "sideload", "--plan", f"{w}/plan.yaml", "--out", f"{w}/out",
        "--images", f"{w}/images.txt", "--source", f"http://127.0.0.1:{port}",
    )
    assert_clean_error(
        proc, [f"regctl could not export 127.0.0.1:{port}/test/pause:3.10", "Resolution:"]
    )
    assert not (w / "out").exists(), "a failed export left its --out behind"
