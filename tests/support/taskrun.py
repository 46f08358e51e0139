"""Run the product's tasks as a user does, through `python -m invoke` of this interpreter.

Not `.venv/bin/invoke` by path: the unit tests must run from a clean clone wherever
the Python dependencies are installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_task(
    *args: str, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], wanted: list[str]) -> None:
    """Non-zero exit, stderr starting with `Error:` and holding each wanted text, no traceback."""
    shown = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0, shown
    assert proc.stderr.startswith("Error:"), shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    for text in wanted:
        assert text in proc.stderr, shown


def bad_input_workdir(tmp_path: Path, port: int) -> Path:
    """A plan, an image list, a CA that is not one and a malformed bundle in tmp_path.

    The plan's mirror, node and image registry are 127.0.0.1:port, so nothing a task
    tries can leave the machine.
    """
    plan = {
        "access": ["mirror", "sideload"],
        "nodes": [{"name": "node-1", "address": "127.0.0.1"}],
        "mirror": {"url": f"http://127.0.0.1:{port}"},
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    (tmp_path / "images.txt").write_text(f"127.0.0.1:{port}/test/pause:3.10\n")
    bundle = tmp_path / "bad-bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(
        json.dumps(
            {"version": 1, "files": {}, "snaps": [], "images": ["docker.io/library/busybox:1"]}
        )
    )
    return tmp_path
