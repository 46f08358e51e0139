"""deploy against recording fake Nodes: exact command sequences, idempotence, resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from airgap.bundle import Manifest, SnapEntry, write_manifest
from airgap.deploy import (
    BOOTSTRAP_CONFIG,
    DELIVERED,
    JOIN_SCRIPT,
    REMOTE_BUNDLE,
    SIDELOAD_STEP,
    StepStatus,
    deploy,
)
from airgap.errors import AirgapError
from airgap.nodes import HAS_COMMAND_SCRIPT, Node, RunResult
from airgap.plan import PROXY_DROPIN, SIDELOAD_DIR, Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage, write_lock
from airgap.render.route import NETPLAN_FILE
from tests.support.fakes import FakeCluster, FakeNode
from tests.unit.test_sideload_fixtures import Img, oci_archive

ADDRS = {"node-1": "10.20.0.11", "node-2": "10.20.0.12", "node-3": "10.20.0.13"}
REVS = {"snapd": "21759", "core22": "1564", "k8s": "3195"}
DROPIN_UNIT = "snap.k8s.containerd.service"


def _assertion(name: str, rev: str) -> str:
    return (
        "type: snap-declaration\n"
        f"snap-name: {name}\nsnap-id: id{name}\n\nsig\n\n"
        "type: snap-revision\n"
        f"snap-id: id{name}\nsnap-revision: {rev}\nsnap-size: 4\n\nsig\n"
    )


def make_bundle(root: Path, *, snaps: bool = True, archives: int = 0,
                revs: dict[str, str] | None = None) -> Path:
    (root / "snaps").mkdir(parents=True)
    entries = []
    if snaps:
        for name, rev in (revs or REVS).items():
            (root / "snaps" / f"{name}.snap").write_bytes(f"snap {name}".encode())
            (root / "snaps" / f"{name}.assert").write_text(_assertion(name, rev))
            entries.append(SnapEntry(name, rev, "latest/stable", "x" * 64, f"id{name}",
                                     f"snaps/{name}.snap", f"snaps/{name}.assert", ""))
    images = [
        LockedImage(parse_image_ref("ghcr.io/canonical/k8s-snap/pause:3.10"), "sha256:" + "a" * 64),
        LockedImage(parse_image_ref("docker.io/library/nginx:1.27"), "sha256:" + "b" * 64),
    ]
    write_lock(root / "images.lock", ImageLock(["linux/amd64"], images))
    if archives:
        (root / "images").mkdir()
        for n in range(archives):
            (root / "images" / f"img{n}.tar").write_bytes(b"tar")
    write_manifest(root, Manifest({}, entries, images, ["linux/amd64"], {}))
    return root


def make_plan(access: Sequence[str], roles: Sequence[str] = ("control-plane", "worker", "worker"),
              **extra: object) -> Plan:
    nodes = [
        {"name": name, "address": ADDRS[name], "role": role, "transport": "local"}
        for name, role in zip(ADDRS, roles, strict=False)
    ]
    data: dict[str, object] = {"access": list(access), "nodes": nodes}
    if "proxy" in access:
        data["proxy"] = {"http": "http://10.20.0.2:3128", "https": "http://10.20.0.2:3128"}
    if "mirror" in access:
        data["mirror"] = {"url": "http://10.20.0.3:5000"}
    data.update(extra)
    return parse_plan(data, source="airgap.yaml")


def fakes(plan: Plan, **kw: object) -> tuple[FakeCluster, dict[str, FakeNode]]:
    """Hostnames differ from the plan's names (as on real sites): only --name joins."""
    cluster = FakeCluster()
    nodes = {
        n.name: FakeNode(n.name, cluster=cluster, address=n.address, snap_revisions=dict(REVS),
                         hostname=f"host-{n.name}", **kw)  # type: ignore[arg-type]
        for n in plan.nodes
    }
    return cluster, nodes


def run_deploy(plan: Plan, nodes: dict[str, FakeNode], bundle: Path, **kw: object):  # type: ignore[no-untyped-def]
    delivered: list[tuple[str, list[str]]] = []

    def deliver(_plan: Plan, node: Node, archives: Sequence[Path]) -> str:
        delivered.append((node.name, [a.name for a in archives]))
        return DELIVERED

    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, deliver=deliver,
                    sleep=lambda _s: None, **kw)  # type: ignore[arg-type]
    return report, delivered


def snap_path(name: str, ext: str) -> str:
    return f"{REMOTE_BUNDLE}/snaps/{name}.{ext}"


TRANSFER = [snap_path(n, e) for n in ("snapd", "core22", "k8s") for e in ("assert", "snap")] + [
    f"{REMOTE_BUNDLE}/manifest.json"
]


def prepare_sequence(runtime: list[list[str]]) -> list[list[str]]:
    """What a fresh node with snapd and no default route is sent, up to bootstrap/join."""
    snaps: list[list[str]] = []
    for name in ("snapd", "core22", "k8s"):
        snaps += [
            ["snap", "list", name],
            ["snap", "ack", snap_path(name, "assert")],
            ["snap", "install", snap_path(name, "snap")] + (["--classic"] if name == "k8s" else []),
            ["snap", "list", name],  # the revision now installed, for the report
        ]
    hold = [
        ["snap", "list", "k8s"],
        ["snap", "get", "system", "refresh.hold"],
        ["snap", "refresh", "--hold=forever", "k8s"],
    ]
    return [
        ["sh", "-c", HAS_COMMAND_SCRIPT, "sh", "snap"],
        ["sha256sum", "--", *TRANSFER],
        ["sha256sum", "--", *TRANSFER],
        *snaps,
        *hold,
        ["ip", "-4", "route", "show", "default"],
        ["ip", "route", "replace", "default", "dev", "eth0"],
        ["cat", NETPLAN_FILE],
        *runtime,
    ]


PROXY_RUNTIME = [
    ["cat", PROXY_DROPIN],
    ["systemctl", "daemon-reload"],
    ["systemctl", "try-restart", DROPIN_UNIT],
]


def test_proxy_mode_exact_sequence_per_role(tmp_path: Path) -> None:
    plan = make_plan(["proxy"])
    bundle = make_bundle(tmp_path / "bundle")
    cluster, nodes = fakes(plan)
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok, report

    get_nodes = ["k8s", "kubectl", "get", "node", "-o", "json"]
    assert nodes["node-1"].commands == [
        ["snap", "list", "k8s"],  # a cluster already? (the joiners must match its k8s)
        *prepare_sequence(PROXY_RUNTIME),
        ["k8s", "local-node-status"],
        ["cat", BOOTSTRAP_CONFIG],
        ["k8s", "bootstrap", "--name", "node-1", "--address", "10.20.0.11",
         "--file", BOOTSTRAP_CONFIG],
        ["k8s", "get-join-token", "node-2", "--worker"],
        ["k8s", "get-join-token", "node-3", "--worker"],
        get_nodes,
    ]
    for name in ("node-2", "node-3"):
        assert nodes[name].commands == [
            *prepare_sequence(PROXY_RUNTIME),
            ["k8s", "local-node-status"],
            ["sh", "-c", JOIN_SCRIPT, "k8s-join", "--name", name, "--address", ADDRS[name]],
        ]
        # The token travels on stdin, never in argv.
        assert nodes[name].inputs[-1] == f"secret-token-for-{name}".encode()
        assert not any("secret-token" in " ".join(c) for c in nodes[name].commands)
        assert PROXY_DROPIN in nodes[name].written
    dropin = nodes["node-2"].files[PROXY_DROPIN].decode()
    assert 'Environment="HTTPS_PROXY=http://10.20.0.2:3128"' in dropin
    assert "10.1.0.0/16" in dropin and "10.20.0.13" in dropin
    assert set(cluster.members) == set(ADDRS)
    for n in report.nodes:
        assert n.status_of("ready") is StepStatus.done


def test_mirror_mode_writes_hosts_files_and_restarts(tmp_path: Path) -> None:
    plan = make_plan(["mirror"])
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok
    hosts = [
        "/etc/containerd/hosts.d/docker.io/hosts.toml",
        "/etc/containerd/hosts.d/ghcr.io/hosts.toml",
    ]
    runtime = [["cat", h] for h in hosts] + [["systemctl", "try-restart", DROPIN_UNIT]]
    assert nodes["node-2"].commands[: len(prepare_sequence(runtime))] == prepare_sequence(runtime)
    assert b"http://10.20.0.3:5000" in nodes["node-2"].files[hosts[1]]
    assert not nodes["node-2"].issued("systemctl", "daemon-reload")


def test_sideload_mode_delivers_archives(tmp_path: Path) -> None:
    plan = make_plan(["sideload"])
    bundle = make_bundle(tmp_path / "bundle", archives=2)
    _, nodes = fakes(plan)
    report, delivered = run_deploy(plan, nodes, bundle)
    assert report.ok
    assert sorted(delivered) == [(n, ["img0.tar", "img1.tar"]) for n in sorted(ADDRS)]
    runtime: list[list[str]] = []  # deliver restarts containerd itself
    assert nodes["node-3"].commands[: len(prepare_sequence(runtime))] == prepare_sequence(runtime)


def test_second_control_plane_joins_without_worker_flag(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane", "control-plane", "worker"))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok
    assert nodes["node-1"].issued("k8s", "get-join-token") == [
        ["k8s", "get-join-token", "node-2"],
        ["k8s", "get-join-token", "node-3", "--worker"],
    ]


def test_rerun_after_success_installs_and_joins_nothing(tmp_path: Path) -> None:
    plan = make_plan(["proxy", "mirror"])
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    assert run_deploy(plan, nodes, bundle)[0].ok
    for n in nodes.values():
        n.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok
    for n in nodes.values():
        for forbidden in (("snap", "install"), ("snap", "ack"), ("k8s", "bootstrap"),
                          ("k8s", "get-join-token"), ("systemctl", "daemon-reload"),
                          ("systemctl", "try-restart"), ("systemctl", "restart"),
                          ("snap", "restart"), ("ip", "route", "replace")):
            assert not n.issued(*forbidden), (n.name, forbidden)
        assert not any("join-cluster" in " ".join(c) for c in n.commands)
        assert n.written == []
    for nr in report.nodes:
        assert {s.status for s in nr.steps} <= {StepStatus.done}, nr.steps


def test_failure_on_node_2_of_3_resumes_from_there(tmp_path: Path) -> None:
    plan = make_plan(["proxy"])
    bundle = make_bundle(tmp_path / "bundle")
    cluster, nodes = fakes(plan)
    nodes["node-2"].fail_on("snap", "install", f"{REMOTE_BUNDLE}/snaps/k8s.snap",
                            stderr="error: cannot install k8s: disk full")
    report, _ = run_deploy(plan, nodes, bundle)
    assert not report.ok
    n2 = report.node("node-2")
    assert n2.status_of("snaps") is StepStatus.failed
    assert "disk full" in next(s.detail for s in n2.steps if s.step == "snaps")
    assert n2.status_of("route") is StepStatus.not_run
    assert n2.status_of("join") is StepStatus.not_run
    assert report.node("node-3").status_of("join") is StepStatus.changed
    assert set(cluster.members) == {"node-1", "node-3"}
    assert nodes["node-2"].snaps == {"snapd": REVS["snapd"], "core22": REVS["core22"]}

    for n in nodes.values():
        n.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok, report
    # node-2 continues: only k8s is installed; snapd and the base are not touched again.
    assert nodes["node-2"].issued("snap", "install") == [
        ["snap", "install", f"{REMOTE_BUNDLE}/snaps/k8s.snap", "--classic"]
    ]
    assert nodes["node-2"].issued("ip", "route", "replace") == [
        ["ip", "route", "replace", "default", "dev", "eth0"]
    ]
    assert nodes["node-1"].issued("k8s", "get-join-token") == [
        ["k8s", "get-join-token", "node-2", "--worker"]
    ]
    for name in ("node-1", "node-3"):
        n = nodes[name]
        assert not n.issued("snap", "install") and not n.issued("k8s", "bootstrap")
        assert not any("join-cluster" in " ".join(c) for c in n.commands)
    assert set(cluster.members) == set(ADDRS)


def test_transfer_resends_only_what_differs_and_checks_on_arrival(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    node.files[snap_path("core22", "snap")] = b"stale"
    node.files[snap_path("snapd", "snap")] = b"snap snapd"
    assert run_deploy(plan, nodes, bundle)[0].ok
    sent = [p for p in node.written if p.startswith(REMOTE_BUNDLE)]
    assert snap_path("snapd", "snap") not in sent
    assert snap_path("core22", "snap") in sent
    assert node.files[snap_path("core22", "snap")] == b"snap core22"


def test_corruption_on_arrival_fails_before_install(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    real_write = node.write

    def corrupting(remote: str, data: bytes, mode: int = 0o644) -> None:
        real_write(remote, data[:-1] if remote.endswith("k8s.snap") else data, mode)

    node.write = corrupting  # type: ignore[method-assign]
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.node("node-1").status_of("transfer") is StepStatus.failed
    assert "k8s.snap arrived corrupted" in report.node("node-1").steps[1].detail
    assert not node.issued("snap", "install")


def test_existing_gateway_route_is_left_alone(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    nodes["node-1"].default_route = "default via 10.20.0.1 dev eth0"
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.node("node-1").status_of("route") is StepStatus.skipped
    assert not nodes["node-1"].issued("ip", "route", "replace")
    assert NETPLAN_FILE not in nodes["node-1"].files


def test_a_node_without_snapd_fails_its_first_step_and_nothing_is_sent(
        tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane", "worker"))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    nodes["node-2"].has_snapd = False
    report, _ = run_deploy(plan, nodes, bundle)
    nr = report.node("node-2")
    assert nr.status_of("inspect") is StepStatus.failed
    assert "snapd is not installed" in nr.errors[0].brief
    assert nr.status_of("transfer") is StepStatus.not_run
    assert nodes["node-2"].written == [] and not nodes["node-2"].issued("snap", "install")
    assert report.node("node-1").status_of("bootstrap") is StepStatus.changed


def test_a_bundle_without_snaps_is_an_error_on_that_node(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle", snaps=False)
    _, nodes = fakes(plan)
    report, _ = run_deploy(plan, nodes, bundle)
    assert not report.ok
    assert "the bundle has no snaps" in report.node("node-1").steps[0].detail


def test_bundle_verification_failure_touches_no_node(tmp_path: Path) -> None:
    plan = make_plan(["proxy"])
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)

    def bad(_p: Path) -> None:
        raise AirgapError("manifest.json: k8s.snap sha256 differs")

    with pytest.raises(AirgapError, match="sha256 differs"):
        deploy(plan, dict(nodes), bundle, verify=bad)
    assert all(n.commands == [] for n in nodes.values())


def test_not_ready_before_deadline_fails_with_resolution(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane", "worker"))
    bundle = make_bundle(tmp_path / "bundle")
    cluster, nodes = fakes(plan)
    cluster.ready_after_polls = 10**6
    now = [0.0]

    def clock() -> float:
        now[0] += 7.0
        return now[0]

    report, _ = run_deploy(plan, nodes, bundle, ready_timeout=60, clock=clock)
    assert not report.ok
    for nr in report.nodes:
        assert nr.status_of("ready") is StepStatus.failed
        assert "not Ready after 60 s (listed, not Ready)" in nr.steps[-1].detail


def test_newer_snapd_and_base_are_kept_but_k8s_follows_the_bundle(tmp_path: Path) -> None:
    """Installing the bundle's snapd or base over a newer one would downgrade the host."""
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    node.snaps.update({"snapd": "99999", "core22": "9999", "k8s": "1000"})
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok, report
    installed = [c[2] for c in node.issued("snap", "install")]
    assert installed == [snap_path("k8s", "snap")]
    assert node.snaps == {"snapd": "99999", "core22": "9999", "k8s": REVS["k8s"]}


def test_bootstrap_file_enables_the_features_the_no_file_path_enables(tmp_path: Path) -> None:
    """`k8s bootstrap --file` starts from an empty config: without these, no CNI, no DNS."""
    plan = make_plan(["proxy"], roles=("control-plane",),
                     k8s={"containerd_base_dir": "/opt/k8s"})
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    assert run_deploy(plan, nodes, bundle)[0].ok
    cfg = yaml.safe_load(nodes["node-1"].files[BOOTSTRAP_CONFIG])
    assert cfg == {
        "pod-cidr": "10.1.0.0/16",
        "service-cidr": "10.152.183.0/24",
        "containerd-base-dir": "/opt/k8s",
        "cluster-config": {
            "network": {"enabled": True},
            "dns": {"enabled": True},
            "gateway": {"enabled": True},
            "local-storage": {"enabled": True},
        },
    }


def test_join_without_name_is_refused_when_the_hostname_differs() -> None:
    """The fake binds a token to a node name, as k8sd does."""
    cluster = FakeCluster()
    boot = FakeNode("node-1", cluster=cluster, hostname="host-1")
    worker = FakeNode("node-2", cluster=cluster, hostname="host-2")
    boot.run(["k8s", "bootstrap", "--name", "node-1", "--address", "10.20.0.11"])
    token = boot.run(["k8s", "get-join-token", "node-2", "--worker"]).stdout.strip().encode()
    bare = worker.run(["sh", "-c", JOIN_SCRIPT, "k8s-join", "--address", "10.20.0.12"],
                      input=token, check=False)
    assert not bare.ok and "invalid token" in bare.stderr
    named = worker.run(["sh", "-c", JOIN_SCRIPT, "k8s-join", "--name", "node-2",
                        "--address", "10.20.0.12"], input=token, check=False)
    assert named.ok and cluster.members == {"node-1": "10.20.0.11", "node-2": "10.20.0.12"}


def sideload_bundle(root: Path) -> tuple[Path, dict[str, str]]:
    bundle = make_bundle(root)
    (bundle / "images").mkdir()
    imgs = {"ghcr.io/canonical/k8s-snap/pause:3.10": Img("ghcr.io/canonical/k8s-snap/pause:3.10"),
            "docker.io/library/nginx:1.27": Img("docker.io/library/nginx:1.27")}
    for n, img in enumerate(imgs.values()):
        oci_archive(bundle / "images" / f"img{n}.tar", img)
    return bundle, {name: img.digest for name, img in imgs.items()}


def test_sideload_on_the_real_snap_is_pending_until_bootstrap_then_confirmed(
        tmp_path: Path) -> None:
    """The real snap's containerd is inactive until bootstrap/join: no restart, no ctr
    failure before bootstrap; the images are confirmed once bootstrap/join started it."""
    plan = make_plan(["sideload"], roles=("control-plane", "worker"))
    bundle, digests = sideload_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan, containerd_active=False, missing_commands={"ctr"})
    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None)
    assert report.ok, [(n.name, n.steps) for n in report.nodes]
    for name, node in nodes.items():
        nr = report.node(name)
        runtime = next(s for s in nr.steps if s.step == "runtime")
        assert runtime.status is StepStatus.changed and "pending" in runtime.detail
        assert not node.issued("snap", "restart")
        assert node.issued("systemctl", "is-active", "--quiet", "snap.k8s.containerd")
        # The images are checked after bootstrap/join started containerd, with the
        # snap's ctr, and they are there with their digests.
        assert nr.status_of(SIDELOAD_STEP) is StepStatus.done
        assert [s.step for s in nr.steps][-2:] == ["ready", SIDELOAD_STEP]
        assert node.images == digests
        assert f"{SIDELOAD_DIR}/img0.tar.loaded" in node.files
        start = next(i for i, c in enumerate(node.commands)
                     if c[:2] == ["k8s", "bootstrap"] or "join-cluster" in " ".join(c))
        later = [c for c in node.commands[start:] if c[1:] == ["-n", "k8s.io", "images", "ls"]]
        assert later and later[0][0] == "/snap/k8s/current/bin/ctr"

    # A re-run finds the images in the runtime: nothing copied, nothing restarted.
    for n in nodes.values():
        n.reset_log()
    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None)
    assert report.ok
    for n in nodes.values():
        assert n.written == [] and not n.issued("snap", "restart")
        assert report.node(n.name).status_of(SIDELOAD_STEP) is None


def test_sideloaded_images_missing_after_bootstrap_fail_that_step(tmp_path: Path) -> None:
    plan = make_plan(["sideload"], roles=("control-plane",))
    bundle, _ = sideload_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan, containerd_active=False)
    # containerd started, but imported nothing (say, the archives were for another
    # platform): ctr lists no image.
    nodes["node-1"].on("ctr", "-n", "k8s.io", answer=RunResult(["ctr"], 0, "REF TYPE DIGEST\n", ""))
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0
        return now[0]

    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None,
                    clock=clock, confirm_timeout=60)
    nr = report.node("node-1")
    assert not report.ok
    assert nr.status_of("bootstrap") is StepStatus.changed
    assert nr.status_of(SIDELOAD_STEP) is StepStatus.failed
    assert "missing" in nr.steps[-1].detail
    assert "journalctl" in (nr.errors[-1].resolution or "")


def test_sideload_plan_without_archives_touches_no_node(tmp_path: Path) -> None:
    plan = make_plan(["sideload"])
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    with pytest.raises(AirgapError, match=r"no images/\*\.tar.*only access mode is sideload") \
            as err:
        run_deploy(plan, nodes, bundle)
    assert "invoke sideload --bundle" in (err.value.resolution or "")
    assert all(n.commands == [] for n in nodes.values())


def test_sideload_with_proxy_and_no_archives_says_nothing_was_side_loaded(
        tmp_path: Path) -> None:
    plan = make_plan(["proxy", "sideload"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    report, delivered = run_deploy(plan, nodes, bundle)
    assert report.ok and delivered == []
    detail = next(s.detail for s in report.node("node-1").steps if s.step == "runtime")
    assert "nothing side-loaded (the bundle has no images/*.tar; images come by proxy)" in detail


def test_proxy_dropin_written_but_not_applied_is_applied_on_rerun(tmp_path: Path) -> None:
    """A run that wrote the drop-in and stopped before daemon-reload: same content, but
    systemd has not loaded it, so the re-run reloads and restarts."""
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    node.fail_on("systemctl", "daemon-reload", stderr="Failed to reload daemon")
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.node("node-1").status_of("runtime") is StepStatus.failed
    assert PROXY_DROPIN in node.files and node.loaded_dropin is None

    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok, report
    assert node.issued("systemctl", "daemon-reload") == [["systemctl", "daemon-reload"]]
    assert node.issued("systemctl", "try-restart") == [["systemctl", "try-restart", DROPIN_UNIT]]
    assert PROXY_DROPIN not in node.written
    detail = next(s.detail for s in report.node("node-1").steps if s.step == "runtime")
    assert "not reloaded" in detail


def test_proxy_dropin_reloaded_but_environment_lacks_it_is_applied(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    assert run_deploy(plan, nodes, bundle)[0].ok
    node.loaded_dropin = b"[Service]\n"  # e.g. another drop-in overrode it; no reload due
    node.on("systemctl", "show", "-p", "NeedDaemonReload",
            answer=RunResult(["systemctl"], 0, "NeedDaemonReload=no\n", ""))
    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.ok
    detail = next(s.detail for s in report.node("node-1").steps if s.step == "runtime")
    assert "not in the unit's environment: HTTP_PROXY" in detail
    assert node.issued("systemctl", "try-restart")


def test_rerun_asks_each_node_not_the_api(tmp_path: Path) -> None:
    """Bootstrapped but API not ready (`k8s status` fails), and a joined worker whose
    kubelet has not registered (absent from `get node`): neither is bootstrapped or
    joined again."""
    plan = make_plan(["proxy"], roles=("control-plane", "worker"))
    bundle = make_bundle(tmp_path / "bundle")
    cluster, nodes = fakes(plan)
    assert run_deploy(plan, nodes, bundle)[0].ok
    nodes["node-1"].fail_on("k8s", "status", times=5, stderr="Error: API server not ready")
    del cluster.members["node-2"]  # not registered yet
    cluster.ready_after_polls = cluster.polls  # Ready again at the next poll
    for n in nodes.values():
        n.reset_log()
    report, _ = run_deploy(plan, nodes, bundle, ready_timeout=0)
    assert report.node("node-1").status_of("bootstrap") is StepStatus.done
    assert report.node("node-2").status_of("join") is StepStatus.done
    for n in nodes.values():
        assert not n.issued("k8s", "bootstrap") and not n.issued("k8s", "get-join-token")
        assert not any("join-cluster" in " ".join(c) for c in n.commands)


def test_unclear_membership_answer_fails_the_step_not_rejoins(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane", "worker"))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    nodes["node-2"].fail_on("k8s", "local-node-status", stderr="Error: k8sd is not running")
    report, _ = run_deploy(plan, nodes, bundle)
    nr = report.node("node-2")
    assert nr.status_of("join") is StepStatus.failed
    assert "cannot tell whether the node is in a cluster" in nr.errors[0].brief
    assert not any("join-cluster" in " ".join(c) for c in nodes["node-2"].commands)
    assert not nodes["node-1"].issued("k8s", "get-join-token")


def test_a_stale_snap_not_in_the_manifest_is_never_installed(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "snaps" / "core20.snap").write_bytes(b"old base")
    (bundle / "snaps" / "core20.assert").write_text(_assertion("core20", "1"))
    _, nodes = fakes(plan)
    assert run_deploy(plan, nodes, bundle)[0].ok
    node = nodes["node-1"]
    assert not any("core20" in " ".join(c) for c in node.commands)
    assert not any("core20" in p for p in node.written)
    assert set(node.snaps) == {"snapd", "core22", "k8s"}


def test_a_newer_installed_k8s_is_not_downgraded(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    bundle = make_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    node.snaps.update({"snapd": "1", "core22": "1", "k8s": "4000"})
    report, _ = run_deploy(plan, nodes, bundle)
    nr = report.node("node-1")
    assert nr.status_of("snaps") is StepStatus.failed
    assert nr.errors[0].brief == ("node-1: the node runs k8s revision 4000, newer than the "
                                  "bundle's revision 3195; refusing to downgrade")
    assert "snap remove k8s" in (nr.errors[0].resolution or "")
    assert not node.issued("snap", "install") and node.snaps["k8s"] == "4000"
    assert nr.status_of("bootstrap") is StepStatus.not_run
