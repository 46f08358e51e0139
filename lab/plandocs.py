"""The plan documents the lab writes: airgap.yaml (and its http twin) for `invoke lab.up`,
and one plan per access mode for the proof. Every task accepts them: their nodes use
``transport: lxd``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from airgap.fileio import write_atomic
from airgap.plan import DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR, Mode, Plan, parse_plan
from lab.instances import VM_NODE_INTERFACE
from lab.state import LabState
from lab.topology import PROXY_PORT, REGISTRY_HTTP_PORT, REGISTRY_HTTPS_PORT, LabSpec


def plan_document(spec: LabSpec, directory: Path, *, https: bool = True) -> dict[str, Any]:
    reg, prx = spec.member("registry"), spec.member("proxy")
    nodes = spec.node_members
    no_proxy = [str(spec.airgap_subnet), reg.airgap or "", DEFAULT_POD_CIDR,
                DEFAULT_SERVICE_CIDR, "localhost", "127.0.0.1"]
    mirror: dict[str, Any] = (
        {"url": f"https://{reg.airgap}:{REGISTRY_HTTPS_PORT}", "ca_file": "ca.crt"}
        if https else {"url": f"http://{reg.airgap}:{REGISTRY_HTTP_PORT}"}
    )
    if os.environ.get("LAB_REGISTRY_USERNAME"):
        mirror.update(username_env="LAB_REGISTRY_USERNAME", password_env="LAB_REGISTRY_PASSWORD")
    return {
        "access": ["mirror", "proxy", "sideload"],
        "nodes": [
            {"name": m.name, "address": m.airgap,
             "role": "control-plane" if i == 0 else "worker",
             "transport": "lxd", "lxd": {"instance": m.name, "project": spec.project}}
            for i, m in enumerate(nodes)
        ],
        "mirror": mirror,
        "proxy": {"http": f"http://{prx.airgap}:{PROXY_PORT}",
                  "https": f"http://{prx.airgap}:{PROXY_PORT}", "no_proxy": no_proxy},
        "images": {"files": ["images.txt"]},
        "network": node_network(spec),
    }


def node_network(spec: LabSpec) -> dict[str, str]:
    if spec.real_snap:
        # Ubuntu VMs: netplan, and the first NIC is named by its PCI slot.
        return {"default_route_interface": VM_NODE_INTERFACE, "route_persistence": "netplan"}
    # The lab's containers use systemd-networkd (no netplan): the placeholder route
    # is made persistent with a drop-in for eth0's .network file.
    return {"route_persistence": "networkd", "networkd_file": "10-eth0.network"}


def write_plans(spec: LabSpec, directory: Path) -> Path:
    nodes_run = ("the real k8s snap (VMs; deploy installs it from the bundle)"
                 if spec.real_snap else f"the {spec.runtime_label}")
    header = (f"# Written by `invoke lab.up` for lab {spec.name}. Nodes are LXD instances "
              f"running {nodes_run}.\n")
    write_atomic(directory / "images.txt", "\n".join(spec.images) + "\n")
    plan = directory / "airgap.yaml"
    write_atomic(plan, header + yaml.safe_dump(plan_document(spec, directory), sort_keys=False))
    write_atomic(directory / "airgap-http.yaml",
                 header + yaml.safe_dump(plan_document(spec, directory, https=False),
                                         sort_keys=False))
    return plan


def mode_plan(spec: LabSpec, st: LabState, work: Path, mode: Mode, workload: Path) -> Plan:
    """The lab's plan with access [mode] only (the proof), written to work/ for a reader."""
    doc = plan_document(spec, Path(st.plan_file).parent)
    doc["access"] = [mode.value]
    doc["images"] = {"files": [str(workload)]}
    doc["mirror"]["ca_file"] = st.ca_file
    if mode is not Mode.mirror:
        doc.pop("mirror")
    if mode is not Mode.proxy:
        doc.pop("proxy")
    path = work / f"airgap-{mode.value}.yaml"
    write_atomic(path, f"# k8s-airgap lab proof: {mode.value} mode\n"
                 + yaml.safe_dump(doc, sort_keys=False))
    return parse_plan(doc, source=str(path), base_dir=work)


def offline_plan(spec: LabSpec, st: LabState, work: Path, workload: Path, prefix: str,
                 roles: Sequence[str] = ()) -> Plan:
    """Mirror mode with the mirror's repositories under ``prefix``/ (a path only
    `mirror --from-bundle` fills: the offline-mirror mode's, day 2's), written to work/
    for the tasks. ``roles``: each node's role in order (default: node-1 the control
    plane, the others workers)."""
    doc = plan_document(spec, Path(st.plan_file).parent)
    doc["access"] = [Mode.mirror.value]
    doc["images"] = {"files": [str(workload)]}
    doc["mirror"]["ca_file"] = st.ca_file
    doc["mirror"]["path_prefix"] = prefix
    doc.pop("proxy")
    for node, role in zip(doc["nodes"], roles, strict=False):
        node["role"] = role
    path = work / f"airgap-offline-{prefix}.yaml"
    write_atomic(path, f"# k8s-airgap lab proof: mirror filled from bundles ({prefix}/)\n"
                 + yaml.safe_dump(doc, sort_keys=False))
    return parse_plan(doc, source=str(path), base_dir=work)
