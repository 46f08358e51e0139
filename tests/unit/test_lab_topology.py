"""The lab's pure parts: names, addresses, rules, rendered role files, the plan."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.errors import AirgapError
from airgap.plan import Transport, parse_plan
from airgap.plan.images import parse_image_ref
from lab import host
from lab.ca import LabCA
from lab.image import Recipe, metadata_yaml
from lab.instances import choose_instance_type, instance_config
from lab.network import bridge_config
from lab.plandocs import plan_document
from lab.roles import RoleContext, hosts_file, resolv_conf
from lab.roles.proxy import squid_conf
from lab.roles.registry import registry_config
from lab.topology import InstanceType, LabSpec, Upstream, upstream_hosts


def test_names_and_addresses_derive_from_name_and_slot() -> None:
    spec = LabSpec(name="lab", nodes=3, slot=2)
    assert spec.project == "k8s-airgap-lab"
    assert spec.bridges == ("lab-airgap", "lab-services")
    assert all(len(b) <= 15 for b in spec.bridges)
    assert str(spec.block) == "10.213.4.0/23"
    assert str(spec.airgap_subnet) == "10.213.4.0/24"
    assert str(spec.services_subnet) == "10.213.5.0/24"
    assert spec.airgap_subnet.subnet_of(spec.block)  # type: ignore[arg-type]
    assert spec.services_subnet.subnet_of(spec.block)  # type: ignore[arg-type]
    names = [m.name for m in spec.members]
    assert names == ["registry", "proxy", "bastion", "upstream", "node-1", "node-2", "node-3"]
    nodes = spec.node_members
    assert all(m.services is None and m.airgap for m in nodes)  # nodes: air-gapped only
    assert spec.member("upstream").airgap is None
    assert spec.member("registry").dual_homed and spec.member("proxy").dual_homed
    addrs = [a for m in spec.members for a in (m.airgap, m.services) if a]
    assert len(addrs) == len(set(addrs))


def test_labs_in_different_slots_do_not_overlap_and_avoid_the_netns_range() -> None:
    a, b = LabSpec(slot=0), LabSpec(slot=1)
    assert not a.block.overlaps(b.block)
    netns = ipaddress.IPv4Network("10.213.240.0/20")
    assert not LabSpec(slot=119).block.overlaps(netns)
    with pytest.raises(AirgapError):
        LabSpec(slot=120)


@pytest.mark.parametrize("name", ["", "Lab", "toolong", "1lab", "la-b"])
def test_bad_lab_names_are_refused(name: str) -> None:
    with pytest.raises(AirgapError, match="Lab name"):
        LabSpec(name=name)


def test_upstream_hosts_cover_docker_hub_aliases() -> None:
    refs = [parse_image_ref("ghcr.io/a/b:1"), parse_image_ref("busybox:1"),
            parse_image_ref("registry.k8s.io/pause:3.9")]
    assert upstream_hosts(refs) == ["docker.io", "ghcr.io", "index.docker.io",
                                    "registry-1.docker.io", "registry.k8s.io"]


def test_internet_mode_has_no_upstream_or_bastion_instance() -> None:
    spec = LabSpec(upstream=Upstream.internet)
    roles = {m.role for m in spec.members}
    assert "upstream" not in roles and "bastion" not in roles
    assert bridge_config(spec, spec.services_bridge)["ipv4.nat"] == "true"
    assert bridge_config(spec, spec.airgap_bridge)["ipv4.nat"] == "false"
    accept = [r for r in host.lab_rules(spec) if r[-1] == "ACCEPT" and r[0] == "FORWARD"]
    assert accept and all(f"{spec.member('proxy').services}/32" in r for r in accept)
    assert not any(r[0] == "FORWARD" and r[-1] == "ACCEPT" for r in host.lab_rules(LabSpec()))


def test_bridges_are_never_natted_or_routed_and_airgap_gets_no_router() -> None:
    spec = LabSpec()
    for br in spec.bridges:
        cfg = bridge_config(spec, br)
        assert cfg["ipv4.nat"] == "false" and cfg["ipv4.routing"] == "false"
        assert cfg["ipv4.firewall"] == "false" and cfg["ipv6.address"] == "none"
        assert "no-resolv" in cfg["raw.dnsmasq"]
    assert "dhcp-option=3" in bridge_config(spec, spec.airgap_bridge)["raw.dnsmasq"]
    assert "dhcp-option=3" not in bridge_config(spec, spec.services_bridge)["raw.dnsmasq"]


def test_firewall_rules_are_tagged_and_drop_cross_bridge_and_host_input() -> None:
    spec = LabSpec(name="t1")
    rules = host.lab_rules(spec)
    assert all(spec.firewall_tag in r for r in rules)
    fwd = [r for r in rules if r[0] == "FORWARD"]
    assert fwd[0][:6] == ["FORWARD", "-i", "t1-airgap", "!", "-o", "t1-airgap"]
    assert all(r[-1] == "DROP" for r in fwd)
    inp = [r for r in rules if r[0] == "INPUT"]
    assert inp[-1][-1] == "DROP" and all(r[-1] == "ACCEPT" for r in inp[:-1])
    assert {r[r.index("--dport") + 1] for r in inp if "--dport" in r} == {"67", "53"}
    assert not any("t1-services" in r for r in inp)


def test_dual_homed_containers_do_not_forward_and_nodes_get_reservations() -> None:
    spec = LabSpec()
    reg = instance_config(spec, spec.member("registry"), InstanceType.container)
    assert reg["config"]["linux.sysctl.net.ipv4.ip_forward"] == "0"
    assert reg["devices"]["eth0"]["network"] == spec.services_bridge
    assert reg["devices"]["eth1"]["network"] == spec.airgap_bridge
    node = instance_config(spec, spec.member("node-1"), InstanceType.container)
    assert node["devices"]["eth0"] == {"type": "nic", "network": spec.airgap_bridge,
                                       "name": "eth0", "ipv4.address": "10.213.0.11"}
    assert "eth1" not in node["devices"]


def _ctx(spec: LabSpec, name: str, tmp_path: Path) -> RoleContext:
    ca = LabCA.load_or_create(tmp_path, spec.name)
    public = LabCA.load_or_create(tmp_path, spec.name, stem="public-ca")
    return RoleContext(spec, spec.member(name), ca, public)


def test_only_proxy_and_bastion_resolve_the_upstream_names(tmp_path: Path) -> None:
    spec = LabSpec()
    up = spec.member("upstream").services
    for name in ("proxy", "bastion"):
        text = hosts_file(_ctx(spec, name, tmp_path))
        names = {n for ln in text.splitlines() if ln.startswith(f"{up} ")
                 for n in ln.split()[1:]}
        assert {"ghcr.io", "registry-1.docker.io", "docker.io"} <= names
    node_hosts = hosts_file(_ctx(spec, "node-1", tmp_path))
    assert "ghcr.io" not in node_hosts and "upstream" not in node_hosts
    assert f"{spec.member('registry').airgap} registry" in node_hosts
    assert f"{spec.member('proxy').airgap} proxy" in node_hosts
    assert resolv_conf(_ctx(spec, "node-1", tmp_path)).startswith(
        f"nameserver {spec.airgap_gateway}\n")


def test_squid_allows_only_upstream_registries_from_lab_subnets() -> None:
    spec = LabSpec()
    conf = squid_conf(spec)
    assert "http_access allow lab_nets upstream_registries" in conf
    assert "http_access deny all" in conf
    acl = next(ln for ln in conf.splitlines() if ln.startswith("acl upstream_registries"))
    assert set(acl.split()[3:]) == set(spec.upstream_hosts)
    assert "acl SSL_ports port 443 5000 5443" in conf
    assert f"acl lab_nets src {spec.airgap_subnet} {spec.services_subnet}" in conf


def test_registry_config_is_explicit_about_auth_and_tls() -> None:
    plain = yaml.safe_load(registry_config(5000, tls=False, htpasswd=False))
    assert plain["http"]["addr"] == ":5000" and "auth" not in plain and "tls" not in plain["http"]
    tls = yaml.safe_load(registry_config(5443, tls=True, htpasswd=True))
    assert tls["http"]["tls"]["certificate"].endswith("tls.crt")
    assert tls["auth"]["htpasswd"]["path"].endswith("/htpasswd")


def test_lab_plan_is_a_valid_plan_with_lxd_nodes(tmp_path: Path) -> None:
    spec = LabSpec(nodes=2)
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "images.txt").write_text("\n".join(spec.images) + "\n")
    plan = parse_plan(plan_document(spec, tmp_path), source="lab", base_dir=tmp_path)
    assert [n.transport for n in plan.nodes] == [Transport.lxd, Transport.lxd]
    assert plan.nodes[0].lxd.project == spec.project
    assert plan.nodes[0].role.value == "control-plane" and plan.nodes[1].role.value == "worker"
    assert plan.mirror is not None and plan.mirror.url == "https://10.213.0.2:5443"
    assert plan.proxy is not None and plan.proxy.http == "http://10.213.0.3:3128"
    http = parse_plan(plan_document(spec, tmp_path, https=False), source="lab")
    assert http.mirror is not None and http.mirror.url == "http://10.213.0.2:5000"


class _FakeClient:
    def __init__(self, driver: str) -> None:
        self.host_info: dict[str, Any] = {"environment": {"driver": driver}}


def test_auto_falls_back_to_containers_and_says_why() -> None:
    itype, why = choose_instance_type(_FakeClient("lxc"), InstanceType.auto, None)
    assert itype is InstanceType.container and "no VM driver" in why
    with pytest.raises(AirgapError, match="VMs were requested"):
        choose_instance_type(_FakeClient("lxc"), InstanceType.vm, None)


def test_recipe_hash_names_the_image_and_changes_with_packages() -> None:
    a = Recipe("bookworm", "http://deb.debian.org/debian", "amd64", ("curl", "udev"))
    b = Recipe("bookworm", "http://deb.debian.org/debian", "amd64", ("udev", "curl"))
    c = Recipe("bookworm", "http://deb.debian.org/debian", "amd64", ("curl",))
    assert a.alias == b.alias and a.alias != c.alias
    assert a.alias.startswith("k8s-airgap-base-") and len(a.alias.split("-")[-1]) == 12
    meta = yaml.safe_load(metadata_yaml(a, 1))
    assert meta["architecture"] == "x86_64"
    assert set(meta["templates"]) == {"/etc/hostname", "/etc/hosts"}


def test_ca_issues_certificates_with_the_requested_names(tmp_path: Path) -> None:
    from cryptography import x509

    ca = LabCA.load_or_create(tmp_path, "t")
    assert LabCA.load_or_create(tmp_path, "t").cert_pem == ca.cert_pem  # reused
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    cert_pem, _key = ca.issue(["ghcr.io", "registry-1.docker.io"], ["10.213.1.5"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ghcr.io", "registry-1.docker.io"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.213.1.5"]


def test_a_wait_that_times_out_names_what_it_waited_for() -> None:
    from airgap.wait import WaitTimeout
    from lab.lxd import wait_until

    def never() -> None:
        raise AirgapError("connection refused")

    with pytest.raises(WaitTimeout) as err:
        wait_until("squid on :3128 on proxy", never, timeout=0.2, interval=0.05)
    assert "squid on :3128 on proxy" in err.value.brief
    assert "connection refused" in str(err.value)
    assert wait_until("x", lambda: "ok", timeout=1) == "ok"
