"""The private registry: Debian's Distribution registry, http :5000 and https :5443.

Debian's default config turns on htpasswd auth pointing at a directory (FACTS), so the
role writes its own: one process per listener (Distribution serves one address), both
sharing one storage directory. htpasswd auth is on only when the lab was brought up
with credentials in the environment.
"""

from __future__ import annotations

import yaml

from lab.lxd import LXDNode, wait_command
from lab.roles import RoleContext, configure_common
from lab.topology import REGISTRY_HTTP_PORT, REGISTRY_HTTPS_PORT

CONF_DIR = "/etc/docker/registry"
DATA_DIR = "/var/lib/docker-registry"


def registry_config(port: int, *, tls: bool, htpasswd: bool, data_dir: str = DATA_DIR,
                    conf_dir: str = CONF_DIR) -> str:
    http: dict[str, object] = {"addr": f":{port}",
                               "headers": {"X-Content-Type-Options": ["nosniff"]}}
    if tls:
        http["tls"] = {"certificate": f"{conf_dir}/tls.crt", "key": f"{conf_dir}/tls.key"}
    cfg: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": data_dir}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": http,
    }
    if htpasswd:
        cfg["auth"] = {"htpasswd": {"realm": "k8s-airgap-lab", "path": f"{conf_dir}/htpasswd"}}
    return yaml.safe_dump(cfg, sort_keys=False)


def unit(name: str, config: str, *, privileged_port: bool = False) -> str:
    caps = "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" if privileged_port else ""
    return (
        "[Unit]\n"
        f"Description=k8s-airgap lab registry ({name})\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "User=docker-registry\n"
        f"{caps}"
        f"ExecStart=/usr/bin/docker-registry serve {config}\n"
        "Restart=on-failure\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def configure(node: LXDNode, ctx: RoleContext) -> None:
    configure_common(node, ctx)
    me = ctx.member
    ips = [a for a in (me.airgap, me.services) if a]
    cert, key = ctx.ca.issue([me.name, "localhost"], [*ips, "127.0.0.1"])
    auth = ctx.htpasswd is not None
    node.write(f"{CONF_DIR}/tls.crt", cert)
    node.write(f"{CONF_DIR}/tls.key", key, 0o600)
    if ctx.htpasswd is not None:
        node.write(f"{CONF_DIR}/htpasswd", ctx.htpasswd, 0o640)
    node.write(f"{CONF_DIR}/config.yml",
               registry_config(REGISTRY_HTTP_PORT, tls=False, htpasswd=auth).encode())
    node.write(f"{CONF_DIR}/tls.yml",
               registry_config(REGISTRY_HTTPS_PORT, tls=True, htpasswd=auth).encode())
    node.write("/etc/systemd/system/lab-registry-http.service",
               unit("http", f"{CONF_DIR}/config.yml").encode())
    node.write("/etc/systemd/system/lab-registry-https.service",
               unit("https", f"{CONF_DIR}/tls.yml").encode())
    node.run(["chown", "-R", "docker-registry:", DATA_DIR, CONF_DIR])
    node.run(["systemctl", "daemon-reload"])
    node.run(["systemctl", "enable", "--now", "lab-registry-http.service",
              "lab-registry-https.service"], timeout=60)
    wait_command(node, ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{REGISTRY_HTTP_PORT}/v2/"],
                 f"the registry on :{REGISTRY_HTTP_PORT}", timeout=30)
    wait_command(node, ["curl", "-s", "-o", "/dev/null", "-k",
                        f"https://127.0.0.1:{REGISTRY_HTTPS_PORT}/v2/"],
                 f"the registry on :{REGISTRY_HTTPS_PORT} (TLS)", timeout=30)
