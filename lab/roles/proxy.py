"""The proxy: squid on both bridges, allowing CONNECT only to the upstream registries.

Debian's squid keeps `http_access allow localnet` commented out and lists only 443 in
SSL_ports (FACTS); the role writes a complete squid.conf instead of patching it.
"""

from __future__ import annotations

from lab.lxd import LXDNode, wait_command
from lab.roles import RoleContext, configure_common, internet_mode, trust_lab_ca
from lab.topology import PROXY_PORT, REGISTRY_HTTP_PORT, REGISTRY_HTTPS_PORT, LabSpec

# Registries that serve tokens or blobs from other hosts; only needed against the real
# internet (the simulated upstream serves everything itself).
BLOB_HOSTS = {
    "docker.io": ("auth.docker.io", "production.cloudflare.docker.com"),
    "ghcr.io": ("pkg-containers.githubusercontent.com",),
}


def allowed_hosts(spec: LabSpec) -> list[str]:
    hosts = list(spec.upstream_hosts)
    if internet_mode(spec):
        for registry, extra in BLOB_HOSTS.items():
            if registry in hosts:
                hosts += extra
    return sorted(set(hosts))


def squid_conf(spec: LabSpec) -> str:
    ports = f"443 {REGISTRY_HTTP_PORT} {REGISTRY_HTTPS_PORT}"
    return "\n".join([
        "# k8s-airgap lab proxy: the upstream registries only",
        f"http_port {PROXY_PORT}",
        f"acl lab_nets src {spec.airgap_subnet} {spec.services_subnet}",
        f"acl SSL_ports port {ports}",
        f"acl Safe_ports port 80 {ports}",
        "acl CONNECT method CONNECT",
        f"acl upstream_registries dstdomain {' '.join(allowed_hosts(spec))}",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
        "http_access allow lab_nets upstream_registries",
        "http_access deny all",
        "cache deny all",
        "hosts_file /etc/hosts",
        "access_log daemon:/var/log/squid/access.log squid",
        "coredump_dir /var/spool/squid",
        "shutdown_lifetime 1 seconds",
        "",
    ])


def configure(node: LXDNode, ctx: RoleContext) -> None:
    configure_common(node, ctx)
    trust_lab_ca(node, ctx)
    node.write("/etc/squid/squid.conf", squid_conf(ctx.spec).encode())
    node.run(["squid", "-k", "parse", "-f", "/etc/squid/squid.conf"], timeout=30)
    node.run(["systemctl", "enable", "--now", "squid.service"], timeout=90)
    wait_command(node, ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{PROXY_PORT}/"],
                 f"squid on :{PROXY_PORT}", timeout=60)
