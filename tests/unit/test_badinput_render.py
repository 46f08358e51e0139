"""Bad plans and image lists through `invoke render` as a user runs it.

Each case must give one clear first line naming the file and the field (or line), exit
non-zero, print no traceback, and leave --out untouched (not created, or a previous
render unchanged).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "access": ["mirror"],
    "nodes": [
        {"name": "node-1", "address": "10.0.0.1"},
        {"name": "node-2", "address": "10.0.0.2", "role": "worker"},
    ],
    "mirror": {"url": "http://10.0.0.9:5050"},
}


def with_(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        target = data
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return data


# (id, plan (dict or raw text), extra files, extra args, text the first line must hold)
CASES: list[tuple[str, Any, dict[str, str], list[str], list[str]]] = [
    ("unknown-field", with_(acess=["mirror"]), {}, [], ["plan.yaml: acess: unknown field"]),
    (
        "yaml-syntax",
        "access: [mirror\nnodes:\n  - name: a\n",
        {},
        [],
        ["plan.yaml: line", "not valid YAML"],
    ),
    ("empty-file", "", {}, [], ["plan.yaml: the plan must be a YAML mapping"]),
    ("list-not-mapping", "- access\n- nodes\n", {}, [], ["plan.yaml: the plan must be"]),
    (
        "node-address",
        with_(nodes=[{"name": "node-1", "address": "node-1.lan"}]),
        {},
        [],
        ["plan.yaml: nodes[0].address: 'node-1.lan' is not an IP address"],
    ),
    (
        "node-name",
        with_(nodes=[{"name": "Node_1", "address": "10.0.0.1"}]),
        {},
        [],
        ["plan.yaml: nodes[0].name: must be a lowercase host name"],
    ),
    (
        "duplicate-node",
        with_(nodes=[{"name": "a", "address": "10.0.0.1"}, {"name": "a", "address": "10.0.0.2"}]),
        {},
        [],
        ["plan.yaml: nodes: duplicate node name 'a'"],
    ),
    ("unknown-mode", with_(access=["mirorr"]), {}, [], ["plan.yaml: access[0]:"]),
    (
        "mirror-missing",
        {k: v for k, v in GOOD.items() if k != "mirror"},
        {},
        [],
        ["plan.yaml:", "access includes mirror but there is no mirror: section"],
    ),
    (
        "mirror-no-scheme",
        with_(mirror__url="10.0.0.9:5050"),
        {},
        [],
        ["plan.yaml: mirror.url: '10.0.0.9:5050' needs a scheme"],
    ),
    (
        "mirror-bad-port",
        with_(mirror__url="http://10.0.0.9:99999"),
        {},
        [],
        ["plan.yaml: mirror.url:", "invalid port"],
    ),
    (
        "ca-missing",
        with_(mirror__url="https://m:5443", mirror__ca_file="nope.crt"),
        {},
        [],
        ["plan.yaml: mirror.ca_file: nope.crt does not exist"],
    ),
    (
        "ca-not-pem",
        with_(mirror__url="https://m:5443", mirror__ca_file="ca.crt"),
        {"ca.crt": "this is not a certificate\n"},
        [],
        ["plan.yaml: mirror.ca_file:", "ca.crt is not a PEM certificate"],
    ),
    (
        "env-name",
        with_(mirror__username_env="MIRROR-USER", mirror__password_env="P"),
        {},
        [],
        ["plan.yaml: mirror.username_env: 'MIRROR-USER' must be the NAME"],
    ),
    (
        "prefix-port",
        with_(mirror__path_prefix="m/{registry}", images={"extra": ["localhost:5000/a:1"]}),
        {},
        [],
        ["plan.yaml:", "mirror.path_prefix", "localhost:5000"],
    ),
    (
        "proxy-creds",
        with_(access=["proxy"], proxy={"http": "http://u:secret@squid:3128"}),
        {},
        [],
        ["plan.yaml: proxy.http: credentials in the proxy URL are not supported"],
    ),
    (
        "pod-cidr",
        with_(network={"pod_cidr": "10.1.0.0/33"}),
        {},
        [],
        ["plan.yaml: network.pod_cidr: '10.1.0.0/33' is not a network"],
    ),
    (
        "networkd-no-file",
        with_(network={"route_persistence": "networkd"}),
        {},
        [],
        ["plan.yaml: network:", "set networkd_file"],
    ),
    (
        "platform",
        with_(platforms=["linux/amd64", "darwin/arm64"]),
        {},
        [],
        ["plan.yaml: platforms: 'darwin/arm64' is not a platform"],
    ),
    (
        "extra-image",
        with_(images={"extra": ["nginx", "ghcr.io/UPPER/x:1"]}),
        {},
        [],
        ["plan.yaml: images.extra: item 1: invalid image reference"],
    ),
    (
        "images-file-missing",
        with_(images={"files": ["work.txt"]}),
        {},
        [],
        ["plan.yaml: images.files: work.txt does not exist"],
    ),
    (
        "images-file-bad-line",
        with_(images={"files": ["work.txt"]}),
        {"work.txt": "nginx\n# ok\nghcr.io/a/b:1 ghcr.io/c/d:2\n"},
        [],
        ["work.txt:3: invalid image reference", "white space"],
    ),
    (
        "list-images-bad-line",
        GOOD,
        {"list.txt": "ghcr.io/canonical/pause:3.10\r\nghcr.io/x@sha256:12\r\n"},
        ["--images", "list.txt"],
        ["list.txt:2: invalid image reference", "not a digest"],
    ),
    ("list-images-missing", GOOD, {}, ["--images", "nope.txt"], ["nope.txt: image list not found"]),
    (
        "bundle-bad-lock",
        GOOD,
        {"bundle/images.lock": "{not json"},
        ["--bundle", "bundle"],
        ["images.lock: not valid JSON"],
    ),
]


def snapshot(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def run_render(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "render", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_case(tmp_path: Path, plan: Any, files: dict[str, str]) -> None:
    text = plan if isinstance(plan, str) else yaml.safe_dump(plan)
    (tmp_path / "plan.yaml").write_text(text)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)


@pytest.mark.parametrize(
    ("plan", "files", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_fails_cleanly_and_writes_nothing(
    tmp_path: Path, plan: Any, files: dict[str, str], args: list[str], expected: list[str]
) -> None:
    write_case(tmp_path, plan, files)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_render(tmp_path, "--plan", "plan.yaml", "--out", "out", *args)
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("Error: "), proc.stderr
    for text in expected:
        assert text in first, f"{text!r} not in {first!r}"
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp dir left behind


def test_bad_plan_leaves_a_previous_render_unchanged(tmp_path: Path) -> None:
    write_case(tmp_path, GOOD, {})
    assert run_render(tmp_path, "--plan", "plan.yaml", "--out", "out").returncode == 0
    before = snapshot(tmp_path / "out")
    assert before
    write_case(tmp_path, with_(mirror__url="ftp://m"), {})
    proc = run_render(tmp_path, "--plan", "plan.yaml", "--out", "out")
    assert proc.returncode == 1
    assert "plan.yaml: mirror.url:" in proc.stderr.splitlines()[0]
    assert snapshot(tmp_path / "out") == before


def test_out_that_is_a_file_or_a_foreign_directory_is_refused(tmp_path: Path) -> None:
    write_case(tmp_path, GOOD, {"afile": "keep me\n", "mine/notes.txt": "keep me too\n"})
    proc = run_render(tmp_path, "--plan", "plan.yaml", "--out", "afile")
    assert proc.returncode == 1
    assert "afile: exists and is not a directory" in proc.stderr.splitlines()[0]
    assert (tmp_path / "afile").read_text() == "keep me\n"
    proc = run_render(tmp_path, "--plan", "plan.yaml", "--out", "mine")
    assert proc.returncode == 1
    assert "mine: directory is not empty and was not written by `invoke render`" in proc.stderr
    assert snapshot(tmp_path / "mine") == {"notes.txt": b"keep me too\n"}


def test_missing_flags_are_reported(tmp_path: Path) -> None:
    proc = run_render(tmp_path, "--out", "out")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: --plan FILE and --out DIR are required")
    assert not (tmp_path / "out").exists()


def test_case_count() -> None:
    assert len(CASES) >= 15
