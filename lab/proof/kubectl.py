"""kubectl on the bootstrap node (`k8s kubectl`) for the real-snap proof: the cluster's
nodes, and one workload pod per node whose image kubelet pulls through the mode."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airgap.deploy import ClusterNode, cluster_member
from airgap.nodes import Node, RunResult
from airgap.plan import Mode, Plan
from airgap.wait import poll as poll_until
from lab.report import ClusterNodeRecord, PodRecord

POD_PREFIX = "airgap-proof"
POD_TIMEOUT = 300.0
POD_POLL = 3.0
POD_DELETE_TIMEOUT = 120.0
KUBECTL_TIMEOUT = 60.0
# Waiting reasons that mean the image will not come: stop waiting at once.
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                 "CreateContainerError", "CreateContainerConfigError")


def kubectl(node: Node, *args: str, check: bool = True, timeout: float = KUBECTL_TIMEOUT
            ) -> RunResult:
    return node.run(["k8s", "kubectl", *args], check=check, timeout=timeout)


def cluster_records(mode: Mode, plan: Plan, members: Sequence[ClusterNode]
                    ) -> list[ClusterNodeRecord]:
    rows = []
    for pn in plan.nodes:
        m = cluster_member(pn, members)
        if m is None:
            rows.append(ClusterNodeRecord(mode.value, pn.name, False,
                                          detail="not listed by kubectl get node"))
            continue
        rows.append(ClusterNodeRecord(mode.value, pn.name, m.ready, m.version,
                                      f"k8s node {m.name}" + ("" if m.ready else ", not Ready")))
    return rows


@dataclass(frozen=True)
class PodState:
    phase: str
    image: str
    image_id: str
    waiting: str
    message: str


NO_POD = PodState("", "", "", "", "")


def parse_pod(text: str) -> PodState:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return NO_POD
    status = doc.get("status", {})
    cs = (status.get("containerStatuses") or [{}])[0]
    waiting = (cs.get("state") or {}).get("waiting") or {}
    return PodState(status.get("phase", ""), cs.get("image", ""), cs.get("imageID", ""),
                    waiting.get("reason", ""), waiting.get("message", ""))


def image_id_digest(image_id: str) -> str:
    """kubelet's imageID: `repo@sha256:...` for a pulled image; the ID alone otherwise."""
    return image_id.rsplit("@", 1)[1] if "@" in image_id else ""


def pod_name(node: str) -> str:
    return f"{POD_PREFIX}-{node}"


def run_workload_pod(
    boot: Node, mode: Mode, node: str, kube_name: str, image: str,
    *, timeout: float = POD_TIMEOUT, poll: float = POD_POLL,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> PodRecord:
    """One pod pinned to the node; its image can only come through the mode (no route out)."""
    pod = pod_name(node)
    kubectl(boot, "delete", "pod", pod, "--ignore-not-found", "--wait=true",
            f"--timeout={POD_DELETE_TIMEOUT:.0f}s", timeout=POD_DELETE_TIMEOUT + 30)
    overrides = json.dumps({"apiVersion": "v1", "spec": {"nodeName": kube_name}})
    t = clock()
    kubectl(boot, "run", pod, f"--image={image}", "--image-pull-policy=IfNotPresent",
            "--restart=Never", f"--overrides={overrides}", "--", "true")
    last = [NO_POD]

    def observe() -> PodState:
        res = kubectl(boot, "get", "pod", pod, "-o", "json", check=False)
        last[0] = parse_pod(res.stdout) if res.ok else last[0]
        return last[0]

    def settled(s: PodState) -> bool:
        return s.phase in ("Succeeded", "Running", "Failed") or s.waiting in PULL_FAILURES

    try:
        # The deadline counts from the `kubectl run`, not from the first look.
        poll_until(observe, settled, timeout=t + timeout - clock(), interval=poll,
                   clock=clock, sleep=sleep)
    finally:
        kubectl(boot, "delete", "pod", pod, "--ignore-not-found", "--wait=true",
                f"--timeout={POD_DELETE_TIMEOUT:.0f}s", check=False,
                timeout=POD_DELETE_TIMEOUT + 30)
    state = last[0]
    secs = clock() - t
    ok = state.phase in ("Succeeded", "Running")
    if ok:
        detail = "kubelet pulled (IfNotPresent) and ran it; pod deleted"
    elif state.waiting:
        detail = f"{state.waiting}: {state.message}"
    else:
        detail = (f"phase {state.phase or 'unknown'} after {secs:.0f} s"
                  + ("" if state.phase else f" (deadline {timeout:.0f} s)"))
    return PodRecord(mode.value, node, pod, image, state.phase or "-", ok, state.image_id,
                     round(secs, 2), detail)
