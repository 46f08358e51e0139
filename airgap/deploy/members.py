"""Who is in the cluster: the node's own answer, and the cluster's node list."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from airgap.errors import AirgapError
from airgap.nodes import Node
from airgap.plan import Node as PlanNode


@dataclass(frozen=True)
class ClusterNode:
    name: str
    addresses: frozenset[str]
    ready: bool
    version: str = ""  # kubelet's version
    images: tuple[tuple[str, ...], ...] = ()  # status.images[].names, as kubelet reports them


def parse_nodes(text: str) -> list[ClusterNode]:
    """`kubectl get node -o json` -> names, addresses, Ready, kubelet version, images."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return []
    out = []
    for item in doc.get("items", []):
        status = item.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        addrs = frozenset(a.get("address", "") for a in status.get("addresses", []))
        out.append(ClusterNode(
            item.get("metadata", {}).get("name", ""), addrs, ready,
            status.get("nodeInfo", {}).get("kubeletVersion", ""),
            tuple(tuple(i.get("names", [])) for i in status.get("images", [])),
        ))
    return out


def cluster_member(spec: PlanNode, members: Sequence[ClusterNode]) -> ClusterNode | None:
    """The cluster's node for a plan node: by name, else by its address (hostnames may differ)."""
    for m in members:
        if m.name == spec.name:
            return m
    for m in members:
        if spec.address in m.addresses:
            return m
    return None


def cluster_nodes(node: Node) -> list[ClusterNode]:
    res = node.run(["k8s", "kubectl", "get", "node", "-o", "json"], check=False, timeout=60)
    return parse_nodes(res.stdout) if res.ok else []


NOT_A_MEMBER = re.compile(r"not (part of|a member of) (a |any |the )?(kubernetes )?cluster"
                          r"|not bootstrapped", re.I)


def in_cluster(node: Node, name: str) -> bool:
    """Ask the node itself: `k8s status` also fails on a member whose API is not ready,
    and a joined node whose kubelet has not registered is missing from `get node`.
    Only a clear "not part of a cluster" means not done; anything else is an error."""
    res = node.run(["k8s", "local-node-status"], check=False, timeout=60)
    if res.ok:
        return True
    said = f"{res.stdout}\n{res.stderr}"
    if NOT_A_MEMBER.search(said):
        return False
    last = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["no output"]
    raise AirgapError(
        f"{name}: cannot tell whether the node is in a cluster "
        f"(`k8s local-node-status` exited {res.returncode}: {last[0]})",
        resolution=f"On {name}: `snap services k8s` (k8sd must be running) and "
        "`k8s local-node-status`; then run deploy again.",
    )


def is_member(node: Node, name: str) -> bool:
    """in_cluster, with an unclear answer taken as not a member (for decisions that only
    skip work; the node's own step reports the unclear answer)."""
    try:
        return in_cluster(node, name)
    except AirgapError:
        return False
