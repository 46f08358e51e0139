"""The real-snap path of the proof (`--k8s-snap`), tested around what this machine lacks.

No VM, no image server, no Snap Store: the lab's lifecycle, prepare, deploy and the
nodes are replaced by fakes that record what the scenario asks for, so these tests
check the sequence (prepare without --from, deploy with the snap steps run, the
kubectl commands, the cluster removed between modes) and the report it writes. The
VM instance configuration is checked as pure data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airgap import sideload, tools
from airgap.deploy import DeployReport, NodeReport, StepStatus
from airgap.errors import AirgapError
from airgap.nodes import RunResult
from airgap.nodes import build as nodeset
from airgap.plan import Mode, Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage, write_lock
from lab import host, lifecycle, network, proof, state
from lab.instances import (
    VM_NODE_CPUS,
    VM_NODE_IMAGE,
    VM_NODE_INTERFACE,
    VM_NODE_MEMORY,
    InstanceTypes,
    choose_instance_types,
    instance_config,
    instance_source,
)
from lab.plandocs import plan_document
from lab.proof import connected, realsnap_proof
from lab.topology import K8S_SNAP_LABEL, InstanceType, LabSpec, Runtime, Upstream

SERVER = "https://images.example.invalid/releases"
COREDNS = "ghcr.io/canonical/coredns:1.11.1-ck4"
INGRESS = "ghcr.io/canonical/k8s-snap/ingress:1.0"
BUSYBOX = "docker.io/library/busybox:1.36"
INDEX = "sha256:" + "a" * 64
AMD64 = "sha256:" + "b" * 64
BUSY = "sha256:" + "c" * 64
INGRESS_D = "sha256:" + "d" * 64


def real_spec(**kw: Any) -> LabSpec:
    return LabSpec(name="real", runtime=Runtime.k8s_snap, upstream=Upstream.internet, **kw)


# --- the VM nodes -------------------------------------------------------------------


def test_vm_node_config_sizes_for_k8s_and_turns_secure_boot_off() -> None:
    spec = real_spec()
    cfg = instance_config(spec, spec.member("node-1"), InstanceType.vm)
    assert cfg["type"] == "virtual-machine"
    assert cfg["config"]["security.secureboot"] == "false"
    assert cfg["config"]["limits.cpu"] == VM_NODE_CPUS == "2"
    assert cfg["config"]["limits.memory"] == VM_NODE_MEMORY == "4GiB"
    assert "security.nesting" not in cfg["config"]  # a container-only key
    nic = cfg["devices"]["eth0"]
    assert nic["network"] == spec.airgap_bridge and nic["ipv4.address"] == "10.213.0.11"
    assert "name" not in nic  # VMs name their NICs by PCI slot
    # A container keeps its container keys and no VM keys.
    ct = instance_config(spec, spec.member("node-1"), InstanceType.container)
    assert ct["devices"]["eth0"]["name"] == "eth0"
    assert "security.secureboot" not in ct["config"] and "limits.cpu" not in ct["config"]


def test_vm_source_is_the_image_server_containers_use_the_local_image() -> None:
    spec = real_spec()
    node = spec.member("node-1")
    assert instance_source(node, InstanceType.vm, "local-alias", SERVER) == {
        "type": "image", "mode": "pull", "server": SERVER, "protocol": "simplestreams",
        "alias": VM_NODE_IMAGE}
    assert instance_source(spec.member("registry"), InstanceType.container, "local-alias",
                           SERVER) == {"type": "image", "alias": "local-alias"}
    with pytest.raises(AirgapError, match="image-server"):
        instance_source(node, InstanceType.vm, "local-alias", None)


class _Client:
    def __init__(self) -> None:
        self.host_info: dict[str, Any] = {"environment": {"driver": "lxc | qemu"}}


def test_real_snap_nodes_are_vms_other_roles_containers(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    spec = real_spec()
    monkeypatch.setattr(host, "vm_support", lambda c: (True, "qemu driver and vhost-vsock"))
    types = choose_instance_types(_Client(), spec, SERVER)
    assert types.nodes is InstanceType.vm and types.services is InstanceType.container
    assert types.of(spec.member("node-2")) is InstanceType.vm
    assert types.of(spec.member("proxy")) is InstanceType.container
    with pytest.raises(AirgapError, match="--image-server"):
        choose_instance_types(_Client(), spec, None)
    monkeypatch.setattr(host, "vm_support", lambda c: (False, "/dev/vhost-vsock is missing"))
    with pytest.raises(AirgapError, match="needs VM nodes, but /dev/vhost-vsock is missing"):
        choose_instance_types(_Client(), spec, SERVER)
    # The stand-in is unchanged: one type for every role, containers here.
    stand_in = choose_instance_types(_Client(), LabSpec(), None)
    assert isinstance(stand_in, InstanceTypes) and stand_in.nodes is stand_in.services


def test_real_snap_plan_uses_netplan_on_the_vm_nic(tmp_path: Path) -> None:
    plan = parse_plan(plan_document(real_spec(), tmp_path), source="lab", base_dir=tmp_path)
    assert plan.network.default_route_interface == VM_NODE_INTERFACE
    assert plan.network.route_persistence.value == "netplan"
    stand_in = parse_plan(plan_document(LabSpec(), tmp_path), source="lab", base_dir=tmp_path)
    assert stand_in.network.route_persistence.value == "networkd"


def test_real_snap_needs_the_real_upstream() -> None:
    with pytest.raises(AirgapError, match="--upstream internet"):
        LabSpec(runtime=Runtime.k8s_snap)
    assert real_spec().runtime_label == K8S_SNAP_LABEL and "k8s snap" in K8S_SNAP_LABEL
    assert not LabSpec().real_snap and "stand-in" in LabSpec().runtime_label


# --- the scenario with fakes ------------------------------------------------------------


def kube_nodes(names: Sequence[str], *, ready: bool = True) -> str:
    images = [
        {"names": [COREDNS, f"ghcr.io/canonical/coredns@{INDEX}"], "sizeBytes": 1},
        {"names": [BUSYBOX, f"docker.io/library/busybox@{BUSY}"], "sizeBytes": 1},
    ]
    return json.dumps({"items": [{
        "metadata": {"name": n},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "addresses": [{"type": "InternalIP", "address": f"10.213.0.{11 + i}"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.2"}, "images": images},
    } for i, n in enumerate(names)]})


def pod_json(phase: str, waiting: str = "") -> str:
    cs: dict[str, Any] = {"image": BUSYBOX, "imageID": f"docker.io/library/busybox@{BUSY}"}
    if waiting:
        cs = {"image": BUSYBOX, "imageID": "",
              "state": {"waiting": {"reason": waiting, "message": "failed to resolve"}}}
    return json.dumps({"status": {"phase": phase, "containerStatuses": [cs]}})


CTR_LS = ("REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
          f"{COREDNS} application/vnd.oci.image.manifest.v1+json {AMD64} 1 linux/amd64 -\n"
          f"{BUSYBOX} application/vnd.oci.image.manifest.v1+json {BUSY} 1 linux/amd64 -\n")


class FakeNode:
    def __init__(self, name: str, log: list[tuple[str, list[str]]], pod: str = "Succeeded",
                 waiting: str = "") -> None:
        self.name, self.log, self.pod, self.waiting = name, log, pod, waiting

    def run(self, argv: Sequence[str], *, check: bool = True, env: Any = None,
            input: bytes | None = None, timeout: float | None = None) -> RunResult:
        argv = list(argv)
        self.log.append((self.name, argv))
        out, rc = "", 0
        if argv[:5] == ["k8s", "kubectl", "get", "node", "-o"]:
            out = kube_nodes(["node-1", "node-2"])
        elif argv[:4] == ["k8s", "kubectl", "get", "pod"]:
            out = pod_json(self.pod, self.waiting)
        elif argv[:2] == ["ctr", "--version"]:
            rc = 1
        elif argv[0] == sideload.SNAP_CTR:
            out = CTR_LS
        return RunResult(argv, rc, out, "")

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        raise AssertionError("the scenario writes nothing to nodes itself")

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        raise AssertionError("the scenario copies nothing to nodes itself")

    def get(self, remote: str) -> bytes:
        raise AssertionError("unused")


def the_lock() -> ImageLock:
    return ImageLock(["linux/amd64"], [
        LockedImage(parse_image_ref(COREDNS), INDEX, "application/vnd.oci.image.index.v1+json",
                    {"linux/amd64": AMD64}),
        LockedImage(parse_image_ref(INGRESS), INGRESS_D,
                    "application/vnd.oci.image.manifest.v1+json", {"linux/amd64": INGRESS_D}),
        LockedImage(parse_image_ref(BUSYBOX), BUSY, "application/vnd.oci.image.manifest.v1+json",
                    {"linux/amd64": BUSY}, source="workload"),
    ])


def real_report(ok_steps: bool = True) -> Any:
    def make(plan: Plan, nodes: Any, bundle: Path, **kw: Any) -> DeployReport:
        reports = []
        for i, n in enumerate(nodes):
            nr = NodeReport(n, "control-plane" if i == 0 else "worker")
            nr.add("inspect", StepStatus.done, "snapd present")
            nr.add("transfer", StepStatus.done, "3 files already there")
            if ok_steps:
                nr.add("snaps", StepStatus.changed, "installed now: k8s=1234")
            else:
                nr.add("snaps", StepStatus.skipped, "the bundle has no snaps")
            nr.add("route", StepStatus.done, "present")
            nr.add("runtime", StepStatus.changed, "hosts.d: 1 file(s)")
            nr.add("bootstrap" if i == 0 else "join", StepStatus.changed, "ok")
            nr.add("ready", StepStatus.done, "Ready after 40 s")
            reports.append(nr)
        return DeployReport(reports)

    return make


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {"prepare": [], "deploy": [], "log": [], "pod": "Succeeded",
                           "waiting": ""}
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv(proof.IMAGE_SERVER_ENV, SERVER)
    monkeypatch.setattr(realsnap_proof, "full_proof_blockers", lambda: [])
    monkeypatch.setattr(host, "lxd_answers", lambda *a: True)
    monkeypatch.setattr(host, "initialise", lambda c: [])
    client = SimpleNamespace(projects=SimpleNamespace(exists=lambda p: False),
                             host_info={"environment": {"server_version": "5.0.2"}})
    monkeypatch.setattr(host, "client", lambda project=None: client)
    monkeypatch.setattr(network, "free_slot", lambda slot=0: slot)

    def up(spec: LabSpec, *, root: Any = None, image_server: str | None = None,
           progress: Any = None) -> Any:
        rec["up"] = (spec, image_server)
        plan_dir = tmp_path / "lab"
        plan_dir.mkdir(exist_ok=True)
        st = state.LabState(
            name=spec.name, slot=spec.slot, project=spec.project, bridges={}, subnets={},
            instance_type="container", instance_type_reason="nodes: VMs for the real k8s snap",
            upstream=spec.upstream.value, image_alias="x", stand_in=not spec.real_snap,
            runtime=spec.runtime_label, ca_file=str(ca), plan_file=str(plan_dir / "airgap.yaml"),
            members=[asdict(m) for m in spec.members], images=list(spec.images),
            upstream_content="none (internet mode: the real registries)",
            public_ca_file=str(ca), runtime_kind=spec.runtime.value, node_instance_type="vm")
        return SimpleNamespace(state=st)

    monkeypatch.setattr(lifecycle, "up", up)
    monkeypatch.setattr(lifecycle, "down",
                        lambda spec, root=None: lifecycle.DownResult(["project x"], 0.1))

    def prepare(plan: Plan, bundle: Path, **kw: Any) -> Any:
        rec["prepare"].append(kw)
        bundle.mkdir(parents=True, exist_ok=True)
        write_lock(bundle / "images.lock", the_lock())
        snap = SimpleNamespace(snap=SimpleNamespace(name="k8s", revision="1234"),
                               action="downloaded")
        return SimpleNamespace(snaps=[snap], lock=the_lock())

    monkeypatch.setattr(connected, "prepare_bundle", prepare)
    monkeypatch.setattr(realsnap_proof, "verify_bundle",
                        lambda b, **kw: SimpleNamespace(rows=[1, 2]))
    monkeypatch.setattr(sideload, "export_images", lambda images, out, platform: [])
    monkeypatch.setattr(connected.mirror_mod, "mirror_images",
                        lambda plan, refs, lock=None: SimpleNamespace(images=refs))
    monkeypatch.setattr(realsnap_proof, "isolation_checks", lambda node, spec, when: [])
    monkeypatch.setattr(tools, "find_tool", lambda name: Path(f"/x/{name}"))
    monkeypatch.setattr(tools, "tool_version", lambda p: "v0.11.7")

    def build_nodes(plan: Plan, only: Any = None, transports: Any = None) -> dict[str, Any]:
        return {n.name: FakeNode(n.name, rec["log"], rec["pod"], rec["waiting"])
                for n in plan.nodes}

    monkeypatch.setattr(nodeset, "build_nodes", build_nodes)
    deploy = real_report()

    def fake_deploy(plan: Plan, nodes: Any, bundle: Path, **kw: Any) -> DeployReport:
        rec["deploy"].append(([m.value for m in plan.access], sorted(nodes), kw))
        return rec.get("deploy_fn", deploy)(plan, nodes, bundle, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(realsnap_proof.deploy_mod, "deploy", fake_deploy)
    return rec


def kubectl_calls(rec: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(n, a[2:]) for n, a in rec["log"] if a[:2] == ["k8s", "kubectl"]]


def test_full_proof_sequence_and_report(fakes: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = proof.prove(name="real", nodes=2, out=out, k8s_snap=True, root=tmp_path)
    assert report.errors == [], report.errors

    spec, server = fakes["up"]
    assert spec.runtime is Runtime.k8s_snap and spec.upstream is Upstream.internet
    assert server == SERVER
    # prepare: the real `snap download` (no --from) against Canonical's root, twice.
    assert len(fakes["prepare"]) == 2
    for kw in fakes["prepare"]:
        assert kw.get("from_dir") is None and kw["trust"] is not None
    # deploy once per mode, on every node, each mode's plan alone.
    assert [d[0] for d in fakes["deploy"]] == [["proxy"], ["mirror"], ["sideload"]]
    assert all(d[1] == ["node-1", "node-2"] for d in fakes["deploy"])
    # the cluster is removed before the 2nd and 3rd mode, on every node.
    removals = [n for n, a in fakes["log"] if a[:2] == ["sh", "-c"]
                and "snap remove --purge k8s" in a[2]]
    assert sorted(removals) == ["node-1", "node-1", "node-2", "node-2"]

    calls = kubectl_calls(fakes)
    assert all(n == "node-1" for n, _ in calls), "kubectl runs on the bootstrap node"
    runs = [a for _, a in calls if a[0] == "run"]
    assert len(runs) == 6  # 3 modes x 2 nodes
    for node, args in zip(["node-1", "node-2"] * 3, runs, strict=True):
        assert args[1] == f"airgap-proof-{node}"
        assert f"--image={BUSYBOX}" in args and "--image-pull-policy=IfNotPresent" in args
        assert "--restart=Never" in args and args[-2:] == ["--", "true"]
        over = json.loads(next(a for a in args if a.startswith("--overrides="))[12:])
        assert over["spec"]["nodeName"] == node
    verbs = [a[0] for _, a in calls]
    assert verbs.count("get") >= 6 + 6  # nodes twice per mode, and each pod
    # every pod deleted after it ran (and any leftover before)
    for pod in ("airgap-proof-node-1", "airgap-proof-node-2"):
        idx = [i for i, (_, a) in enumerate(calls) if a[:3] == ["delete", "pod", pod]]
        assert len(idx) == 6
    assert calls[-1][1][:2] != ["run"]

    assert report.stand_in is False and report.runtime == K8S_SNAP_LABEL
    assert "Snap Store" in report.snaps and "k8s=1234" in report.snaps
    assert len(report.cluster) == 6 and all(c.ready for c in report.cluster)
    assert {c.version for c in report.cluster} == {"v1.32.2"}
    assert len(report.pods) == 6 and all(p.ok and p.phase == "Succeeded" for p in report.pods)
    assert all(p.image == BUSYBOX for p in report.pods)
    for mode in ("proxy", "mirror", "sideload"):
        rows = {(p.node, p.image): p for p in report.pulls if p.mode == mode}
        assert set(rows) == {(n, i) for n in ("node-1", "node-2") for i in (COREDNS, BUSYBOX)}
        assert all(p.ok for p in rows.values()), rows
        # by tag: the index digest; side-loaded: the platform manifest
        want = AMD64 if mode == "sideload" else INDEX
        assert rows["node-1", COREDNS].digest == want
        assert any(INGRESS in n and mode in n for n in report.notes)
    assert report.ok
    md = (out / "e2e-report.md").read_text()
    assert md.startswith("# k8s-airgap lab proof: PASSED")
    assert "real k8s snap" in md and "## Cluster" in md and "## Workload pod" in md
    assert "Debian's containerd" not in md
    data = json.loads((out / "e2e-report.json").read_text())
    assert data["stand_in"] is False and len(data["cluster"]) == 6 and data["ok"] is True
    assert any(s["step"] == "lab down" for s in report.steps)


def test_a_skipped_snap_step_fails_the_proof(fakes: dict[str, Any], tmp_path: Path) -> None:
    fakes["deploy_fn"] = real_report(ok_steps=False)
    report = proof.prove(name="real", out=tmp_path / "out", k8s_snap=True, root=tmp_path)
    assert not report.ok
    assert any("snaps: skipped" in e and "did not bring the real snap up" in e
               for e in report.errors), report.errors
    assert report.pods == []  # it stopped before any pod
    assert any(s["step"] == "lab down" for s in report.steps)


def test_a_pod_whose_image_cannot_be_pulled_fails_fast(fakes: dict[str, Any],
                                                       tmp_path: Path) -> None:
    fakes["pod"], fakes["waiting"] = "Pending", "ErrImagePull"
    report = proof.prove(name="real", out=tmp_path / "out", k8s_snap=True, root=tmp_path)
    assert not report.ok
    bad = [p for p in report.pods if not p.ok]
    assert bad and all("ErrImagePull" in p.detail for p in bad)
    assert all(not p.ok for p in report.pulls if p.image == BUSYBOX)


def test_pod_wait_has_a_deadline() -> None:
    log: list[tuple[str, list[str]]] = []
    node = FakeNode("node-1", log, pod="Pending")
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    pod = proof.run_workload_pod(node, Mode.proxy, "node-1", "node-1", BUSYBOX,
                                 timeout=30, poll=10, sleep=sleep, clock=lambda: now[0])
    assert not pod.ok and pod.phase == "Pending" and "phase Pending" in pod.detail
    assert now[0] == 30
    assert log[-1][1][2:5] == ["delete", "pod", "airgap-proof-node-1"]


def test_deploy_problems_name_every_skip_and_missing_step() -> None:
    nr = NodeReport("node-2", "worker")
    nr.add("transfer", StepStatus.skipped, "skipped")
    nr.add("snaps", StepStatus.skipped, "skipped")
    nr.add("join", StepStatus.skipped, "skipped")
    nr.dangerous = ["k8s"]
    problems = proof.real_deploy_problems(DeployReport([nr]))
    text = "; ".join(problems)
    assert "installed with --dangerous: k8s" in text
    for step in ("transfer", "snaps", "join"):
        assert f"node-2 {step}: skipped" in text
    assert "node-2 ready: did not run" in text


def test_k8s_snap_still_refuses_here_without_touching_anything(monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(realsnap_proof, "full_proof_blockers", lambda: [
        "there is no `snap` command (snapd)", "LXD cannot run VMs here (no vhost-vsock)",
        "K8S_AIRGAP_IMAGE_SERVER is not set"])

    def never(*a: Any, **kw: Any) -> Any:
        raise AssertionError("the lab must not be touched")

    monkeypatch.setattr(lifecycle, "up", never)
    monkeypatch.setattr(host, "lxd_answers", never)
    with pytest.raises(AirgapError) as info:
        proof.prove(k8s_snap=True)
    text = str(info.value)
    for blocker in ("`snap` command", "cannot run VMs", "K8S_AIRGAP_IMAGE_SERVER"):
        assert blocker in text
