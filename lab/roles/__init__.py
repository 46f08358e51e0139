"""What each lab instance runs: pure renderers (files) and a configure step per role.

One base image serves every role; a role writes its configuration and enables its
services. Every instance also gets /etc/hosts entries for the role names on its own
bridge and a resolv.conf pointing at its bridge's dnsmasq, which (no-resolv) answers
only for the lab, so an unknown name such as ghcr.io fails fast on the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.ca import LabCA
from lab.lxd import LXDNode
from lab.topology import LabSpec, Member, Upstream

LAB_CA_PATH = "/usr/local/share/ca-certificates/k8s-airgap-lab-ca.crt"
PUBLIC_CA_PATH = "/usr/local/share/ca-certificates/k8s-airgap-lab-public-ca.crt"


@dataclass
class RoleContext:
    spec: LabSpec
    member: Member
    ca: LabCA
    public_ca: LabCA
    htpasswd: bytes | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)


def hosts_file(ctx: RoleContext) -> str:
    """/etc/hosts: role names as this instance reaches them (its own bridge first)."""
    spec, me = ctx.spec, ctx.member
    lines = ["127.0.0.1 localhost", f"127.0.1.1 {me.name}",
             "::1 localhost ip6-localhost ip6-loopback"]
    for other in spec.members:
        if other.role == "node" and other.name != me.name:
            addr = other.airgap if me.airgap else None
        elif me.role == "node":
            addr = other.airgap
        else:
            addr = other.services or (other.airgap if me.airgap else None)
        if addr and other.name != me.name:
            lines.append(f"{addr} {other.name}")
    upstream = next((m for m in spec.members if m.role == "upstream"), None)
    if upstream and me.role in ("proxy", "bastion") and upstream.services:
        # Only the connected side resolves the upstream names to the simulated internet.
        lines.append(f"{upstream.services} {' '.join(spec.upstream_hosts)}")
    lines += [f"{a} {n}" for n, a in ctx.extra_hosts.items()]
    return "\n".join(lines) + "\n"


def resolv_conf(ctx: RoleContext) -> str:
    gw = ctx.spec.services_gateway if ctx.member.services else ctx.spec.airgap_gateway
    return f"nameserver {gw}\noptions timeout:1 attempts:1\n"


def configure_common(node: LXDNode, ctx: RoleContext) -> None:
    node.write("/etc/hosts", hosts_file(ctx).encode())
    node.write("/etc/resolv.conf", resolv_conf(ctx).encode())
    # The simulated web PKI: every machine trusts the CA behind the "public" upstream.
    node.write(PUBLIC_CA_PATH, ctx.public_ca.cert_pem)
    node.run(["update-ca-certificates"], timeout=60)


def trust_lab_ca(node: LXDNode, ctx: RoleContext) -> None:
    node.write(LAB_CA_PATH, ctx.ca.cert_pem)
    node.run(["update-ca-certificates"], timeout=60)


def internet_mode(spec: LabSpec) -> bool:
    return spec.upstream is Upstream.internet
