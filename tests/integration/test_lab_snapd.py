"""The real snapd on a lab node, for each behaviour deploy's recording fake assumes.

One lab (one node, an LXD container from the lab image: Debian 13 with its snapd,
squashfuse and fuse3); the lab's stand-in snaps (lab/snapset.py: a base, snapd, a
classic k8s whose ``containerd`` app runs the node's containerd and whose ``k8s``
command is a stand-in CLI) are installed with --dangerous, since snapd trusts no root
but Canonical's (the last test shows `snap ack` refusing the lab authority). Each step
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

from airgap.deploy.snapstep import parse_snap_list
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
    project: str

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
    from lab.snapset import build_snapd_set
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
        info = node.run(["cat", "/usr/lib/snapd/info"]).stdout
        fake = FakeNode("node-1", containerd_active=False)
        for name, path in build_snapd_set(root / "snaps", snapd_info=info).items():
            node.put(path, f"/root/{name}.snap")
            fake.write(f"/root/{name}.snap", path.read_bytes())
        yield Pair(node, fake, spec.project)
    finally:
        lifecycle.down(spec, root=root)
        from tests.support.labhost import leftovers

        left = leftovers(spec.project)
        assert not left, f"lab.down left on the host: {left}"


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
            assert parse_snap_list(res.stdout)[name].rev == "x1", res.stdout
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
        assert parse_snap_list(res.stdout)["k8s"].rev == "x1"
        assert res.stdout.split()[-1] == "classic"


def test_the_containerd_app_is_the_unit_deploy_restarts(pair: Pair) -> None:
    unit = "snap.k8s.containerd.service"
    # Installed disabled, as the real snap's services are until bootstrap or join.
    state = pair.real.run(["systemctl", "is-active", unit], check=False).stdout.strip()
    assert state == "inactive", state
    pair.real.run(["snap", "start", "--enable", "k8s.containerd"])
    assert pair.real.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    show = pair.real.run(["systemctl", "show", "-p", "ExecStart", "-p", "MainPID", unit]).stdout
    assert "/usr/bin/snap run k8s.containerd" in show
    before = re.search(r"MainPID=(\d+)", show)
    assert before and before.group(1) != "0"
    wait_for(pair.real, ["ctr", "version"])  # the node's real containerd, in the snap's unit
    pair.real.run(["snap", "restart", "k8s.containerd"])
    after = pair.real.run(["systemctl", "show", "-p", "MainPID", unit]).stdout
    assert re.search(r"MainPID=(\d+)", after) and f"MainPID={before.group(1)}" not in after
    cli = pair.real.run(["k8s", "status"]).stdout
    assert "stand-in" in cli


def test_the_snaps_containerd_imports_side_loaded_archives_at_start(
        pair: Pair, tmp_path: Path) -> None:
    from airgap.cri import CRIClient
    from lab.lxd import expose_unix_socket
    from lab.ocibuild import Builder, write_oci_archive

    name = "docker.io/library/lab-sideload-probe:1"
    Builder(tmp_path / "layout").image("probe", {"/probe": b"1"}, image_name=name)
    archive = write_oci_archive(tmp_path / "layout", tmp_path / "probe.tar")
    pair.real.put(archive, "/var/snap/k8s/common/images/probe.tar")
    pair.real.run(["snap", "restart", "k8s.containerd"], timeout=60)

    def imported() -> bool:
        files = pair.real.run(["ls", "/var/snap/k8s/common/images"]).stdout.split()
        return files == ["probe.tar.loaded"]

    from airgap.wait import wait_until

    wait_until("probe.tar imported and renamed", imported, timeout=60)
    listed = pair.real.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"]).stdout.split()
    assert name in listed, listed
    # An LXD proxy device exposes the node's CRI socket on the host (the proof's pulls).
    sock = expose_unix_socket(pair.project, "node-1", tmp_path / "cri.sock")
    with CRIClient(sock) as cri:
        assert cri.version().runtime_name == "containerd"
        status = cri.image_status(name)
        assert status is not None and name in status.repo_tags, status


def test_the_stand_in_cli_keeps_cluster_state(pair: Pair) -> None:
    import json

    node = pair.real
    said = node.run(["k8s", "local-node-status"], check=False)
    assert said.returncode != 0 and "not part of a Kubernetes cluster" in said.stderr
    node.run(["k8s", "bootstrap", "--name", "node-1", "--address", "127.0.0.1"], timeout=120)
    again = node.run(["k8s", "bootstrap", "--name", "node-1", "--address", "127.0.0.1"],
                     check=False)
    assert again.returncode != 0 and "already part of a cluster" in again.stderr
    assert "role: control-plane" in node.run(["k8s", "local-node-status"]).stdout
    token = node.run(["k8s", "get-join-token", "node-2", "--worker"]).stdout.strip()
    assert token and "node-2" not in token  # encoded, not readable on a screen
    wrong = node.run(["k8s", "join-cluster", token, "--name", "node-9", "--address", "10.0.0.9"],
                     check=False)
    assert wrong.returncode != 0 and "already part of a cluster" in wrong.stderr
    # The k8sd app serves joins: a wrong secret is refused, the right one accepted once.
    wait_for(node, ["curl", "-sS", "--noproxy", "*", "http://127.0.0.1:6400/cgi-bin/nodes"])
    from airgap.deploy.snapstep import snap_row

    row = snap_row(node, "k8s")
    assert row is not None
    # As k8sd does: a joiner of another version is refused, whatever its token.
    other = ("http://127.0.0.1:6400/cgi-bin/join?name=node-2&address=10.0.0.2&version=9.9.9"
             "&secret=" + "0" * 32)
    assert (f"refused: node-2 runs version 9.9.9, the cluster runs {row.version}"
            in node.run(["curl", "-sS", other]).stdout)
    url = ("http://127.0.0.1:6400/cgi-bin/join?name=node-2&address=10.0.0.2"
           f"&version={row.version}&secret=")
    assert "refused: wrong join token" in node.run(["curl", "-sS", url + "0" * 32]).stdout
    import base64

    secret = base64.b64decode(token).decode().split("secret=")[1]
    assert node.run(["curl", "-sS", url + secret]).stdout.strip() == "joined worker"
    assert "refused: no join token" in node.run(["curl", "-sS", url + secret]).stdout
    doc = json.loads(node.run(["k8s", "kubectl", "get", "node", "-o", "json"]).stdout)
    listed = {i["metadata"]["name"]: i["status"]["conditions"][0]["status"]
              for i in doc["items"]}
    assert listed == {"node-1": "True", "node-2": "True"}, listed


def wait_for(node: Node, argv: list[str], timeout: float = 30) -> None:
    from airgap.wait import wait_until

    wait_until(" ".join(argv), lambda: node.run(argv, check=False).ok, timeout=timeout)


def test_installing_the_file_again_refreshes_to_x2_on_both(pair: Pair) -> None:
    real, fake = pair.both(install("k8s", "--classic"))
    assert real.ok and fake.ok, real.stderr
    real, fake = pair.both(["snap", "list", "k8s"])
    assert parse_snap_list(real.stdout)["k8s"].rev == "x2", real.stdout
    assert parse_snap_list(fake.stdout)["k8s"].rev == "x2", fake.stdout


def test_a_newer_version_installed_over_it_is_a_refresh(pair: Pair, tmp_path: Path) -> None:
    from lab.snapset import build_k8s

    newer = build_k8s(tmp_path, version="1.36.1")
    pair.real.put(newer, "/root/k8s-newer.snap")
    pair.real.run(["snap", "install", "--dangerous", "--classic", "/root/k8s-newer.snap"],
                  timeout=180)
    cols = pair.real.run(["snap", "list", "k8s"]).stdout.splitlines()[-1].split()
    assert cols[1:3] == ["1.36.1", "x3"], cols
    # deploy compares an x-revision by the installed file's SHA3-384: snapd's copy of
    # the file under /var/lib/snapd/snaps is byte-identical to the one installed.
    from airgap.deploy.snapstep import installed_sha3, snap_row
    from airgap.snaps.verify import snap_sha3_384

    row = snap_row(pair.real, "k8s")
    assert row is not None and row.local
    assert installed_sha3(pair.real, row) == snap_sha3_384(newer)[0]
    # snapd keeps the cluster's state (SNAP_COMMON) across the refresh.
    assert "role: control-plane" in pair.real.run(["k8s", "local-node-status"]).stdout


def test_refresh_hold_on_this_snapd_as_deploy_sets_it(pair: Pair) -> None:
    """deploy's hold step on the real snapd, then the same on the fake: both see it."""
    from airgap.deploy.snapstep import HOLD_RENEW_DAYS, hold_refreshes, hold_state, parse_hold

    version = pair.real.run(["snap", "version"]).stdout
    # A freshly seeded snapd holds refreshes itself, for a couple of hours (seen: 2 h
    # after start, in refresh.hold): so short a hold is not one, and deploy holds anyway.
    own = pair.real.run(["snap", "get", "system", "refresh.hold"], check=False)
    until = parse_hold(own.stdout) if own.ok else None
    print(f"snapd's own refresh.hold before deploy's: {own.stdout.strip() or own.stderr.strip()}")
    assert until is None or until.timestamp() < int(
        pair.real.run(["date", "+%s"]).stdout) + 86400
    assert hold_state(pair.real, renew_within=HOLD_RENEW_DAYS)[0] is False
    done = hold_refreshes(pair.real, "node-1")
    held, how = hold_state(pair.real, renew_within=HOLD_RENEW_DAYS)
    assert held, how
    if "2.57" in version:  # Debian 12: no per-snap hold; every snap until a time
        assert done.startswith("snap set system refresh.hold=")
        assert "hold:" in pair.real.run(["snap", "refresh", "--time"]).stdout
        forever = pair.real.run(["snap", "set", "system", "refresh.hold=forever"], check=False)
        assert forever.returncode != 0
    else:  # Debian 13 and Ubuntu: --hold=forever, shown in the Notes column
        assert done == "snap refresh --hold=forever k8s"
        row = parse_snap_list(pair.real.run(["snap", "list", "k8s"]).stdout)["k8s"]
        assert row.notes == ("classic", "held"), row
        # `snap refresh --time` shows only the system-wide hold (snapd's own, above).
    pair.fake.snaps.setdefault("k8s", "x3")
    hold_refreshes(pair.fake, "node-1")
    fake_row = parse_snap_list(pair.fake.run(["snap", "list", "k8s"]).stdout)["k8s"]
    if "2.57" not in version:
        assert fake_row.notes == row.notes


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
    assert res.returncode != 0, said  # not Canonical's root: snapd trusts no other


def test_snapd_refuses_the_lab_authoritys_snap_assertions(pair: Pair, tmp_path: Path) -> None:
    """What deploy's --dangerous answers: `snap ack` of a lab-signed .assert fails."""
    from lab.snapset import signed_snapd_set
    from lab.standin import Authority

    info = pair.real.run(["cat", "/usr/lib/snapd/info"]).stdout
    made = signed_snapd_set(tmp_path, Authority.create(), snapd_info=info)
    pair.real.put(made["k8s"][1], "/root/k8s.assert")
    res = pair.real.run(["snap", "ack", "/root/k8s.assert"], check=False)
    said = " ".join((res.stdout + res.stderr).split())
    print(f"snap ack of a lab-signed k8s.assert: exit {res.returncode}: {said}")
    assert res.returncode != 0 and "cannot" in said, said
    # deploy's ack: an error naming the file without --dangerous, "install it with
    # --dangerous" with it; the fake refuses the same way when told not to trust.
    from airgap.deploy.snapstep import ack
    from airgap.errors import AirgapError

    def run(argv: list[str]) -> tuple[bool, str]:
        r = pair.real.run(argv, check=False)
        return r.ok, r.stderr or r.stdout

    with pytest.raises(AirgapError, match=r"snapd does not trust /root/k8s.assert"):
        ack("node-1", run, "/root/k8s.assert", "k8s", dangerous=False)
    assert ack("node-1", run, "/root/k8s.assert", "k8s", dangerous=True) is False
    pair.fake.trusts_assertions = False
    pair.fake.write("/root/k8s.assert", made["k8s"][1].read_bytes())
    fake = pair.fake.run(["snap", "ack", "/root/k8s.assert"], check=False)
    assert fake.returncode != 0 and "cannot resolve prerequisite assertion" in fake.stderr
    assert "cannot resolve prerequisite assertion" in said
