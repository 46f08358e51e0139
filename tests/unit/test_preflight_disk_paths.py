"""Each path that receives data is measured on the filesystem it is on; the needs of the
paths on one filesystem add up. DF_SCRIPT's output below is real: captured on this
machine (Debian 12, GNU coreutils 9.1 df) with a 64 MiB tmpfs mounted at
/tmp/k8sair-varsnap for a separate small /var/snap, and /dev/shm (a tmpfs) standing in
for a separate staging filesystem:
``sh -c "$DF_SCRIPT" df /var/lib/snapd /tmp/k8sair-varsnap/k8s/common /dev/shm/k8s-airgap``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from airgap.bundle.layout import Bundle
from airgap.nodes import LocalNode, RunResult
from airgap.preflight import DF_SCRIPT, CheckStatus, check_disk, disk_needs, parse_df_paths
from airgap.preflight.host import (
    RUNTIME_PATH,
    SNAPS_PATH,
    STAGING_PATH,
    DiskNeed,
    Filesystem,
)
from tests.unit.test_preflight_checks import ADDRS, healthy, make_plan, run

CAPTURED = """path /var/lib/snapd /var/lib
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 27746800  67754464      30% /
path /tmp/k8sair-varsnap/k8s/common /tmp/k8sair-varsnap
Filesystem     1024-blocks  Used Available Capacity Mounted on
tmpfs                65536     0     65536       0% /tmp/k8sair-varsnap
path /dev/shm/k8s-airgap /dev/shm
Filesystem     1024-blocks  Used Available Capacity Mounted on
tmpfs             24683784     0  24683784       0% /dev/shm
"""
SMALL_RUNTIME = "/tmp/k8sair-varsnap/k8s/common"
MiB = 1 << 20
GiB = 1 << 30


def test_captured_output_parses_to_three_filesystems() -> None:
    assert parse_df_paths(CAPTURED) == {
        "/var/lib/snapd": Filesystem("/dev/vda", "/", 67754464 * 1024),
        SMALL_RUNTIME: Filesystem("tmpfs", "/tmp/k8sair-varsnap", 65536 * 1024),
        "/dev/shm/k8s-airgap": Filesystem("tmpfs", "/dev/shm", 24683784 * 1024),
    }


def test_a_small_separate_filesystem_fails_though_root_has_room() -> None:
    node = healthy("node-1")
    node.on("sh", "-c", DF_SCRIPT, answer=RunResult([], 0, CAPTURED, ""))
    needs = [DiskNeed("/var/lib/snapd", 600 * MiB, "snaps"),
             DiskNeed(SMALL_RUNTIME, 800 * MiB, "archives"),
             DiskNeed("/dev/shm/k8s-airgap", 300 * MiB, "bundle")]
    checks = check_disk(node, needs, headroom=0)
    assert [(c.name, c.status) for c in checks] == [
        ("disk /", CheckStatus.ok), ("disk /tmp/k8sair-varsnap", CheckStatus.fail),
        ("disk /dev/shm", CheckStatus.ok)]
    small = checks[1]
    assert small.detail == ("0.1 GiB free on /tmp/k8sair-varsnap (tmpfs), need 0.8 GiB: "
                            f"{SMALL_RUNTIME} (archives), 0.0 GiB headroom")
    assert small.fix == f"free 0.7 GiB on /tmp/k8sair-varsnap, or grow it: it holds {SMALL_RUNTIME}"
    [argv] = node.issued("sh", "-c", DF_SCRIPT)
    assert argv[4:] == [n.path for n in needs]  # one exec for every path


def test_paths_on_one_filesystem_add_up() -> None:
    one_fs = CAPTURED.replace(SMALL_RUNTIME, "/var/snap/k8s/common").replace(
        "tmpfs                65536     0     65536       0% /tmp/k8sair-varsnap",
        "/dev/vda         264212084 27746800  67754464      30% /")
    node = healthy("node-1")
    node.on("sh", "-c", DF_SCRIPT, answer=RunResult([], 0, one_fs, ""))
    needs = [DiskNeed("/var/lib/snapd", 40 * GiB, "snaps"),
             DiskNeed("/var/snap/k8s/common", 30 * GiB, "images"),
             DiskNeed("/dev/shm/k8s-airgap", GiB, "bundle")]
    root, shm = check_disk(node, needs, headroom=0)
    assert root.name == "disk /" and root.status is CheckStatus.fail  # 70 GiB > 64.6 free
    assert "need 70.0 GiB: /var/lib/snapd (snaps), /var/snap/k8s/common (images)" in root.detail
    assert shm.status is CheckStatus.ok


def test_the_real_script_finds_the_nearest_existing_ancestor(tmp_path: Path) -> None:
    deep = tmp_path / "var" / "snap" / "k8s" / "common"
    res = LocalNode("local").run(["sh", "-c", DF_SCRIPT, "df", str(deep), "/dev/shm/none"])
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("path ")]
    assert lines[0] == f"path {deep} {tmp_path}"
    assert lines[1] == "path /dev/shm/none /dev/shm"
    found = parse_df_paths(res.stdout)
    mount = subprocess.run(["df", "-Pk", "/dev/shm"], capture_output=True, text=True,
                           check=True).stdout.splitlines()[1].split()[5]
    assert found["/dev/shm/none"].mount == mount


def test_needs_from_the_bundle(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    b.snaps_dir.mkdir(parents=True)
    b.images_dir.mkdir(parents=True)
    (b.snaps_dir / "k8s.snap").write_bytes(b"x" * 3000)
    (b.snaps_dir / "k8s.assert").write_bytes(b"a" * 10)
    (b.images_dir / "images-amd64.tar").write_bytes(b"t" * 5000)
    needs = {n.path: n.bytes for n in disk_needs(tmp_path)}
    assert needs == {SNAPS_PATH: 6000, RUNTIME_PATH: 10000, STAGING_PATH: 3010}
    assert [n.path for n in disk_needs(None)] == [SNAPS_PATH, RUNTIME_PATH]


def test_preflight_reports_one_check_per_filesystem() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    split = CAPTURED.replace(SMALL_RUNTIME, RUNTIME_PATH)
    nodes["node-2"].on("sh", "-c", DF_SCRIPT, answer=RunResult([], 0, split, ""))
    checks = run(plan, nodes).node("node-2")
    small = checks.get("disk /tmp/k8sair-varsnap")
    assert small.status is CheckStatus.fail  # 64 MiB for the images' estimate + headroom
    assert RUNTIME_PATH in small.detail
    assert checks.get("disk /").status is CheckStatus.ok
