"""`invoke render` and `invoke init` as a user runs them, plus `invoke --list` / `--help`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]


def invoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def files_under(path: Path) -> list[str]:
    """Rendered files, without the marker that identifies a previous render."""
    return sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and p.name != ".airgap-render"
    )


def test_list_shows_tasks_with_one_line_help(tmp_path: Path) -> None:
    proc = invoke(tmp_path, "--list")
    assert proc.returncode == 0
    lines = {
        line.split()[0]: line
        for line in proc.stdout.splitlines()[2:]
        if line.strip() and not line.startswith(" " * 6)
    }
    for name in ("render", "init", "version"):
        assert name in lines
        assert len(lines[name].split()) > 2  # has help text


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("render", ["--plan", "--out", "--images", "--bundle", "--debug"]),
        ("init", ["--out", "--mode", "--force"]),
    ],
)
def test_help_documents_every_flag(tmp_path: Path, name: str, flags: list[str]) -> None:
    proc = invoke(tmp_path, name, "--help")
    assert proc.returncode == 0
    options = proc.stdout.split("Options:", 1)[1]
    for flag in flags:
        line = next(line for line in options.splitlines() if flag in line)
        assert len(line.split(flag, 1)[1].split()) >= 2, f"{flag} has no help: {line!r}"


def test_render_mirror_example_writes_node_and_connected_files(tmp_path: Path) -> None:
    proc = invoke(tmp_path, "render", "--plan", str(ROOT / "examples/mirror.yaml"), "--out", "r")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "r"
    got = files_under(out)
    for node in ("cp-1", "worker-1"):
        for reg in ("docker.io", "ghcr.io", "quay.io"):
            assert f"nodes/{node}/etc/containerd/hosts.d/{reg}/hosts.toml" in got
        assert f"nodes/{node}/etc/netplan/90-airgap-default-route.yaml" in got
    assert "connected/images.txt" in got
    assert "connected/sync-images.yaml" in got
    hosts = tomllib.loads(
        (out / "nodes/cp-1/etc/containerd/hosts.d/ghcr.io/hosts.toml").read_text()
    )
    assert hosts["server"] == "http://10.10.10.10:5050/v2/mirror/ghcr.io"
    netplan = out / "nodes/cp-1/etc/netplan/90-airgap-default-route.yaml"
    assert stat.S_IMODE(netplan.stat().st_mode) == 0o600
    images = (out / "connected/images.txt").read_text().splitlines()
    assert "docker.io/library/busybox:1.36" in images  # images.extra
    assert "quay.io/prometheus/node-exporter:v1.8.2" in images  # images.files
    assert "ghcr.io/canonical/k8s-snap/pause:3.10" in images  # default k8s list
    assert images == sorted(images)
    # The tree names what was written and the runtime route command.
    assert "hosts.toml" in proc.stdout and "ip route replace default dev eth0" in proc.stdout


def test_render_proxy_and_sideload_examples(tmp_path: Path) -> None:
    assert (
        invoke(
            tmp_path, "render", "--plan", str(ROOT / "examples/proxy.yaml"), "--out", "p"
        ).returncode
        == 0
    )
    assert files_under(tmp_path / "p") == [
        "connected/images.txt",
        "nodes/cp-1/etc/netplan/90-airgap-default-route.yaml",
        "nodes/cp-1/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf",
        "nodes/worker-1/etc/netplan/90-airgap-default-route.yaml",
        "nodes/worker-1/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf",
    ]
    assert (
        invoke(
            tmp_path, "render", "--plan", str(ROOT / "examples/sideload.yaml"), "--out", "s"
        ).returncode
        == 0
    )
    got = files_under(tmp_path / "s")
    assert (
        "nodes/worker-2/etc/systemd/network/10-ens3.network.d/90-airgap-default-route.conf" in got
    )
    assert len(got) == 4


def test_render_uses_images_file_then_bundle_lock(tmp_path: Path) -> None:
    plan = {
        "access": ["mirror"],
        "nodes": [{"name": "n1", "address": "10.0.0.1"}],
        "mirror": {"url": "http://10.0.0.9:5050"},
        "network": {"route_persistence": "none"},
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    (tmp_path / "list.txt").write_text("registry.k8s.io/pause:3.10\r\n\r\nquay.io:8443/a/b:1\n")
    proc = invoke(tmp_path, "render", "--plan", "plan.yaml", "--out", "r", "--images", "list.txt")
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path / "r" / "nodes") == [
        "n1/etc/containerd/hosts.d/quay.io:8443/hosts.toml",
        "n1/etc/containerd/hosts.d/registry.k8s.io/hosts.toml",
    ]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    lock = {
        "version": 1,
        "platforms": ["linux/amd64"],
        "images": [{"ref": "docker.io/library/nginx:1.27", "digest": "sha256:" + "0" * 64}],
    }
    (bundle / "images.lock").write_text(json.dumps(lock))
    proc = invoke(tmp_path, "render", "--plan", "plan.yaml", "--out", "r", "--bundle", "bundle")
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path / "r" / "nodes") == [
        "n1/etc/containerd/hosts.d/docker.io/hosts.toml"
    ]
    proc = invoke(tmp_path, "render", "--plan", "plan.yaml", "--out", "r", "--bundle", "nobundle")
    assert proc.returncode == 1 and "nobundle: bundle directory not found" in proc.stderr


def test_render_replaces_a_previous_render(tmp_path: Path) -> None:
    for mode in ("mirror", "proxy"):
        assert (
            invoke(tmp_path, "init", "--mode", mode, "--out", "plan.yaml", "--force").returncode
            == 0
        )
        assert invoke(tmp_path, "render", "--plan", "plan.yaml", "--out", "r").returncode == 0
    got = files_under(tmp_path / "r")
    assert not any("hosts.toml" in p for p in got)  # mirror files are gone
    assert any("http-proxy.conf" in p for p in got)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml", "r"]


def test_render_into_an_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    assert invoke(tmp_path, "init", "--out", "plan.yaml").returncode == 0
    assert invoke(tmp_path, "render", "--plan", "plan.yaml", "--out", "r").returncode == 0
    assert files_under(tmp_path / "r")


@pytest.mark.parametrize("mode", ["mirror", "proxy", "sideload"])
def test_init_writes_a_commented_plan_that_renders(tmp_path: Path, mode: str) -> None:
    proc = invoke(tmp_path, "init", "--mode", mode)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "airgap.yaml").read_text()
    assert text.startswith("# airgap.yaml")
    assert yaml.safe_load(text)["access"] == [mode]
    assert invoke(tmp_path, "render", "--plan", "airgap.yaml", "--out", "r").returncode == 0


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "airgap.yaml").write_text("mine\n")
    proc = invoke(tmp_path, "init")
    assert proc.returncode == 1
    assert "airgap.yaml already exists; pass --force" in proc.stderr
    assert (tmp_path / "airgap.yaml").read_text() == "mine\n"
    assert invoke(tmp_path, "init", "--force", "--mode", "sideload").returncode == 0
    assert "access: [sideload]" in (tmp_path / "airgap.yaml").read_text()


def test_init_rejects_an_unknown_mode(tmp_path: Path) -> None:
    proc = invoke(tmp_path, "init", "--mode", "airdrop")
    assert proc.returncode == 1
    assert "--mode 'airdrop': choose mirror, proxy or sideload" in proc.stderr
    assert not (tmp_path / "airgap.yaml").exists()
