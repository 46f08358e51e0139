"""The real snapd on a lab node, for each behaviour deploy's recording fake assumes.

One lab (one node, an LXD container from the lab image, which carries Debian's snapd,
squashfuse and fuse3) with the runtime stand-in removed; stand-in snaps built by the
lab (a base, snapd, a classic k8s with the ``containerd`` daemon and a ``k8s`` command)
are installed with --dangerous, since snapd trusts no root but Canonical's. Each step
runs on the real snapd and then on tests.support.fakes.FakeNode, and both must agree:
where they did not, the fake was fixed (install order, --classic, x-revisions, the
Notes column). At the end, lab.down leaves no squashfuse mount on the host.

Network safety: a snap whose base is missing makes snapd ask the store; on the lab node
that lookup goes to the lab's own DNS (dnsmasq on the air-gapped bridge), which has no
upstream, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airgap.deploy.steps import _snap_list_revision
from airgap.nodes import Node, RunResult
from tests.support.fakes import FakeNode
from tests.support.require import need, require_binary, require_root

pytestmark = [pytest.mark.integration, pytest.mark.lxd]

LAB = "snapdt"
PREFERRED_SLOT = int(os.environ.get("K8S_AIRGAP_SNAPD_LAB_SLOT", "62"))
SNAPS = ("core22", "snapd", "k8s")


@dataclass
class Pair:
    real: Node
    fake: FakeNode

    def both(self, argv: list[str]) -> tuple[RunResult, RunResult]:
        return (self.real.run(argv, check=False, timeout=180),
                self.fake.run(argv, check=False))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    require_root()
    require_binary("lxd")
    require_binary("mksquashfs")
    from lab import host, lifecycle, network, state
    from lab.lxd import LXDNode
    from lab.roles.node import NO_STAND_IN
    from lab.standin import build_snapd_set
    from lab.topology import LabSpec

    if not host.lxd_answers():
        host.setup_host()
    need(host.lxd_answers(), "LXD is not running (invoke lab.host)")
    root = tmp_path_factory.mktemp("snapd-lab")
    lifecycle.down(state.spec_from_state(LAB, root=root), root=root)
    spec = LabSpec(name=LAB, nodes=1, slot=network.free_slot(PREFERRED_SLOT))
    try:
        lifecycle.up(spec, root=root)
        node = LXDNode("node-1", project=spec.project)
        node.run(["sh", "-c", NO_STAND_IN])
        info = node.run(["cat", "/usr/lib/snapd/info"]).stdout
        fake = FakeNode("node-1", containerd_active=False)
        for name, path in build_snapd_set(root / "snaps", snapd_info=info).items():
            node.put(path, f"/root/{name}.snap")
            fake.write(f"/root/{name}.snap", path.read_bytes())
        yield Pair(node, fake)
    finally:
        lifecycle.down(spec, root=root)
        mounts = Path("/proc/self/mountinfo").read_text()
        assert "squashfuse" not in mounts and spec.project not in mounts


def install(name: str, *flags: str) -> list[str]:
    return ["snap", "install", "--dangerous", f"/root/{name}.snap", *flags]


def test_snapd_answers_on_the_node(pair: Pair) -> None:
    out = pair.real.run(["snap", "version"]).stdout
    assert re.search(r"^snapd\s+2\.\d+", out, re.M), out


def test_k8s_before_its_base_fails_on_both(pair: Pair) -> None:
    real, fake = pair.both(install("k8s", "--classic"))
    assert real.returncode != 0 and fake.returncode != 0
    assert 'Ensure prerequisites for "k8s"' in real.stderr + real.stdout
    assert "cannot install snap base" in real.stderr + real.stdout
    assert pair.real.run(["snap", "list", "k8s"], check=False).returncode != 0


def test_snapd_then_the_base_install_and_list_with_their_notes(pair: Pair) -> None:
    for name, note in (("snapd", "snapd"), ("core22", "base")):
        real, fake = pair.both(install(name))
        assert real.ok and fake.ok, real.stderr
        real, fake = pair.both(["snap", "list", name])
        for res in (real, fake):
            assert _snap_list_revision(res.stdout, name) == "x1", res.stdout
            assert res.stdout.split()[-1] == note, res.stdout


def test_a_classic_snap_needs_classic_on_both(pair: Pair) -> None:
    real, fake = pair.both(install("k8s"))
    assert real.returncode != 0 and fake.returncode != 0
    said = " ".join(real.stderr.split())
    assert "classic confinement" in said and "--classic" in said, said
    real, fake = pair.both(install("k8s", "--classic"))
    assert real.ok and fake.ok, real.stderr
    real, fake = pair.both(["snap", "list", "k8s"])
    for res in (real, fake):
        assert _snap_list_revision(res.stdout, "k8s") == "x1"
        assert res.stdout.split()[-1] == "classic"


def test_the_containerd_app_is_the_unit_deploy_restarts(pair: Pair) -> None:
    unit = "snap.k8s.containerd.service"
    assert pair.real.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    show = pair.real.run(["systemctl", "show", "-p", "ExecStart", "-p", "MainPID", unit]).stdout
    assert "/usr/bin/snap run k8s.containerd" in show
    before = re.search(r"MainPID=(\d+)", show)
    assert before and before.group(1) != "0"
    pair.real.run(["snap", "restart", "k8s.containerd"])
    after = pair.real.run(["systemctl", "show", "-p", "MainPID", unit]).stdout
    assert re.search(r"MainPID=(\d+)", after) and f"MainPID={before.group(1)}" not in after
    cli = pair.real.run(["k8s", "status"]).stdout
    assert "stand-in" in cli


def test_installing_the_file_again_refreshes_to_x2_on_both(pair: Pair) -> None:
    real, fake = pair.both(install("k8s", "--classic"))
    assert real.ok and fake.ok, real.stderr
    real, fake = pair.both(["snap", "list", "k8s"])
    assert _snap_list_revision(real.stdout, "k8s") == "x2", real.stdout
    assert _snap_list_revision(fake.stdout, "k8s") == "x2", fake.stdout


def test_refresh_hold_on_this_snapd(pair: Pair) -> None:
    version = pair.real.run(["snap", "version"]).stdout
    per_snap = pair.real.run(["snap", "refresh", "--hold", "k8s"], check=False)
    if "2.57" in version:  # Debian 12: no per-snap hold; hold all until a time
        assert per_snap.returncode != 0 and "unknown flag `hold'" in per_snap.stderr
        pair.real.run(["snap", "set", "system", "refresh.hold=2099-01-01T00:00:00Z"])
        forever = pair.real.run(["snap", "set", "system", "refresh.hold=forever"], check=False)
        assert forever.returncode != 0
        assert "hold:" in pair.real.run(["snap", "refresh", "--time"]).stdout
    else:  # Debian 13 and Ubuntu: --hold, shown in the Notes column
        assert per_snap.ok, per_snap.stderr
        assert "held" in pair.real.run(["snap", "list", "k8s"]).stdout


def test_snapd_derives_the_lab_authoritys_key_ids_as_we_do(pair: Pair) -> None:
    # snapd rebuilds every key at a fixed creation time (2016-01-01) before hashing it; a
    # lab key made at another time was refused with "public key does not match provided
    # key id". Now it is read, and refused only for what it is: not Canonical's root.
    from lab.standin import Authority

    authority = Authority.create()
    pair.real.write("/root/lab-root.assert", authority.root_assertion)
    res = pair.real.run(["snap", "ack", "/root/lab-root.assert"], check=False)
    said = " ".join((res.stdout + res.stderr).split())
    assert "does not match provided key id" not in said, said
