"""The simulated internet: one registry answering as ghcr.io, docker.io and every other
registry host in the lab's image list, on :443 with a certificate from the lab's
"public" CA (the simulated web PKI, trusted by every lab instance).

It sits on the services bridge only; the proxy and the bastion resolve those names to
it through /etc/hosts, the nodes do not resolve them at all. Its content is fabricated
(tiny images built offline with the real names), which the lab says wherever it
reports.
"""

from __future__ import annotations

from lab.lxd import LXDNode, wait_command
from lab.roles import RoleContext, configure_common
from lab.roles.registry import CONF_DIR, DATA_DIR, registry_config, unit
from lab.topology import UPSTREAM_PORT


def configure(node: LXDNode, ctx: RoleContext) -> None:
    configure_common(node, ctx)
    me = ctx.member
    assert me.services is not None
    cert, key = ctx.public_ca.issue([*ctx.spec.upstream_hosts, me.name], [me.services])
    node.write(f"{CONF_DIR}/tls.crt", cert)
    node.write(f"{CONF_DIR}/tls.key", key, 0o600)
    node.write(f"{CONF_DIR}/upstream.yml",
               registry_config(UPSTREAM_PORT, tls=True, htpasswd=False).encode())
    node.write("/etc/systemd/system/lab-upstream.service",
               unit("simulated upstream", f"{CONF_DIR}/upstream.yml",
                    privileged_port=True).encode())
    node.run(["chown", "-R", "docker-registry:", DATA_DIR, CONF_DIR])
    node.run(["systemctl", "daemon-reload"])
    node.run(["systemctl", "enable", "--now", "lab-upstream.service"], timeout=60)
    wait_command(node, ["curl", "-s", "-o", "/dev/null", "-k", f"https://127.0.0.1:{UPSTREAM_PORT}/v2/"],
                 "the simulated upstream registry on :443", timeout=30)
