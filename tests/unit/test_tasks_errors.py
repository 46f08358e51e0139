"""Bad input to the tasks, run as a user runs them: a clean `Error:`, never a traceback.

Every case fails before any network use, or at worst talks to 127.0.0.1 on a port
nothing listens on (the plan's mirror and nodes are loopback only).

Not covered: a non-number for an int flag (`--parallel abc`, `--timeout x`). invoke
casts those while parsing argv, before any task code runs, and prints its own
ValueError traceback; no task can catch it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INVOKE = ROOT / ".venv" / "bin" / "invoke"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def work(tmp_path: Path) -> Path:
    port = _closed_port()
    plan = {
        "access": ["mirror", "sideload"],
        "nodes": [{"name": "node-1", "address": "127.0.0.1"}],
        "mirror": {"url": f"http://127.0.0.1:{port}"},
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    (tmp_path / "port").write_text(str(port))
    # images on a loopback "upstream" nothing serves: nothing can leave the machine
    (tmp_path / "images.txt").write_text(f"127.0.0.1:{port}/test/pause:3.10\n")
    bundle = tmp_path / "bad-bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps(
        {"version": 1, "files": {}, "snaps": [], "images": ["docker.io/library/busybox:1"]}
    ))
    return tmp_path


# (id, argv with {w} for the work dir, text stderr must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    ("render-missing-plan", ["render", "--plan", "{w}/nope.yaml", "--out", "{w}/out"],
     ["nope.yaml"]),
    ("render-missing-image-list",
     ["render", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--images", "{w}/nope.txt"],
     ["nope.txt: image list not found", "Resolution:"]),
    ("mirror-no-plan-flag", ["mirror"], ["--plan FILE is required"]),
    ("mirror-missing-plan", ["mirror", "--plan", "{w}/nope.yaml"], ["nope.yaml"]),
    ("mirror-missing-bundle", ["mirror", "--plan", "{w}/plan.yaml", "--bundle", "{w}/nobundle"],
     ["nobundle: bundle directory not found", "Resolution:"]),
    ("mirror-missing-lock", ["mirror", "--plan", "{w}/plan.yaml", "--lock", "{w}/images.lock"],
     ["images.lock: images.lock not found", "Resolution:"]),
    ("mirror-missing-ca", ["mirror", "--plan", "{w}/plan.yaml", "--upstream-ca", "{w}/nope.pem"],
     ["--upstream-ca", "nope.pem: CA file not found", "Resolution:"]),
    ("mirror-ca-not-pem",
     ["mirror", "--plan", "{w}/plan.yaml", "--upstream-ca", "{w}/not-a-ca.pem"],
     ["--upstream-ca", "not-a-ca.pem: not a PEM certificate"]),
    ("mirror-parallel-0", ["mirror", "--plan", "{w}/plan.yaml", "--parallel", "0"],
     ["--parallel 0", "Resolution:"]),
    ("mirror-unreachable",
     ["mirror", "--plan", "{w}/plan.yaml", "--images", "{w}/images.txt"],
     ["127.0.0.1:{port}"]),
    ("sideload-no-out", ["sideload", "--plan", "{w}/plan.yaml"], ["--out DIR"]),
    ("sideload-bad-platform",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--platform", "amd64"],
     ["--platform"]),
    ("sideload-bad-source",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--source", "ftp://x"],
     ["--source 'ftp://x': not a registry URL"]),
    ("sideload-no-export-missing-out",
     ["sideload", "--plan", "{w}/plan.yaml", "--no-export", "--out", "{w}/missing"],
     ["missing: directory not found", "Resolution:"]),
    ("sideload-no-export-empty-out",
     ["sideload", "--plan", "{w}/plan.yaml", "--no-export", "--out", "{w}/empty"],
     ["empty: no *.tar archives", "Resolution:"]),
    ("sideload-source-unreachable",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--images", "{w}/images.txt",
      "--source", "http://127.0.0.1:{port}"],
     ["regctl could not export 127.0.0.1:{port}/test/pause:3.10", "Resolution:"]),
    ("sideload-missing-lock",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--lock", "{w}/x.lock"],
     ["x.lock: images.lock not found"]),
    ("verify-missing-bundle", ["verify", "--bundle", "{w}/nobundle"], ["nobundle"]),
    ("verify-malformed-manifest", ["verify", "--bundle", "{w}/bad-bundle"],
     ["manifest.json: images[0]: expected {\"ref\"", "Resolution:"]),
    ("prepare-missing-plan", ["prepare", "--plan", "{w}/nope.yaml", "--bundle", "{w}/b"],
     ["nope.yaml"]),
    ("preflight-missing-plan", ["preflight", "--plan", "{w}/nope.yaml"], ["nope.yaml"]),
    ("deploy-missing-bundle", ["deploy", "--plan", "{w}/nope.yaml", "--bundle", "{w}/b"],
     ["nope.yaml"]),
    ("init-bad-mode", ["init", "--out", "{w}/a.yaml", "--mode", "mirorr"], ["--mode 'mirorr'"]),
]


@pytest.mark.parametrize(("argv", "wanted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clean_error(work: Path, argv: list[str], wanted: list[str]) -> None:
    port = (work / "port").read_text()
    args = [a.replace("{w}", str(work)).replace("{port}", port) for a in argv]
    wanted = [t.replace("{port}", port) for t in wanted]
    proc = subprocess.run([str(INVOKE), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    shown = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0, shown
    assert proc.stderr.startswith("Error:"), shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    for text in wanted:
        assert text in proc.stderr, shown
    assert not (work / "out").exists(), "a failed task wrote its output"
