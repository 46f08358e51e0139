"""Lab nodes: ready for the real k8s snap (VM nodes), else the runtime stand-in.

A real-snap node gets only what every lab instance gets (hosts, resolver, the simulated
web PKI) and a seeded snapd; deploy installs snapd, the base and k8s from the bundle.
It carries no stand-in marker or unit, so deploy's snap steps are not skipped.

The stand-in is Debian's containerd run as `snap.k8s.containerd.service` with the
snap's classic paths (FACTS): registry config in /etc/containerd/hosts.d, side-loaded
archives in /var/snap/k8s/common/images, imported (uncompressed *.tar only, into
namespace k8s.io, for the node's own platform) each time the service starts, and
renamed to *.tar.loaded. The import runs as ExecStartPost: `ctr import` needs the
daemon up, which the snap's own import has from inside containerd. The stand-in proves
image access through the CRI, not the snap, and is labelled so in every report.
"""

from __future__ import annotations

from airgap.nodes import STAND_IN_MARKER, STAND_IN_UNIT
from airgap.plan import CLASSIC_HOSTS_DIR, CONTAINERD_UNIT, SIDELOAD_DIR
from lab.lxd import LXDNode, wait_command
from lab.roles import RoleContext, configure_common
from lab.topology import STAND_IN_LABEL

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
IMPORT_SCRIPT = "/usr/local/lib/k8s-airgap/import-images"
# snapd seeds the image's snaps on first boot; `snap ack`/`snap install` wait or fail
# until that is over.
SNAPD_SEED_TIMEOUT = 600.0
# The unit's path is also the real snap's: remove it only when it is the stand-in's.
NO_STAND_IN = (f"rm -f {STAND_IN_MARKER} {IMPORT_SCRIPT}; "
               f'if grep -qs "^Description=.*runtime stand-in" {STAND_IN_UNIT}; then '
               f"rm -f {STAND_IN_UNIT}; systemctl daemon-reload; fi")

CONTAINERD_CONFIG = f"""# k8s-airgap lab: runtime stand-in for the k8s snap's containerd
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "ghcr.io/canonical/k8s-snap/pause:3.10"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{CLASSIC_HOSTS_DIR}"
"""

IMPORT = f"""#!/bin/sh
# Like the k8s snap: import uncompressed *.tar side-load archives when containerd starts.
set -u
dir={SIDELOAD_DIR}
for i in $(seq 1 100); do [ -S {CONTAINERD_SOCKET} ] && break; sleep 0.1; done
for f in "$dir"/*.tar; do
  [ -e "$f" ] || continue
  if ctr --address {CONTAINERD_SOCKET} -n k8s.io images import "$f"; then
    mv -f "$f" "$f.loaded"
  else
    echo "import failed: $f" >&2
  fi
done
exit 0
"""

UNIT = f"""[Unit]
Description=k8s-airgap lab: runtime stand-in (Debian containerd), not the k8s snap
After=network-online.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/bin/containerd --config /etc/containerd/config.toml
ExecStartPost={IMPORT_SCRIPT}
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=2
LimitNOFILE=infinity

[Install]
WantedBy=multi-user.target
"""


def configure(node: LXDNode, ctx: RoleContext, *, stand_in: bool = True) -> None:
    configure_common(node, ctx)
    if not stand_in:
        configure_real_snap(node)
        return
    # airgap.nodes.is_stand_in looks for this marker (deploy and preflight skip snap steps).
    node.write(STAND_IN_MARKER, f"{STAND_IN_LABEL}\n".encode())
    node.write("/etc/containerd/config.toml", CONTAINERD_CONFIG.encode())
    node.write(IMPORT_SCRIPT, IMPORT.encode(), 0o755)
    node.write(f"/etc/systemd/system/{CONTAINERD_UNIT}.service", UNIT.encode())
    node.run(["mkdir", "-p", CLASSIC_HOSTS_DIR, SIDELOAD_DIR])
    node.run(["systemctl", "disable", "--now", "containerd.service"], check=False)
    node.run(["systemctl", "daemon-reload"])
    node.run(["systemctl", "enable", "--now", f"{CONTAINERD_UNIT}.service"], timeout=90)
    wait_command(node, ["ctr", "--address", CONTAINERD_SOCKET, "version"],
                 f"containerd ({CONTAINERD_UNIT}) to answer on {CONTAINERD_SOCKET}", timeout=60)


def configure_real_snap(node: LXDNode) -> None:
    """No stand-in anywhere, and snapd seeded: the node is ready for deploy's snap steps."""
    node.run(["sh", "-c", NO_STAND_IN])
    node.run(["snap", "wait", "system", "seed.loaded"], timeout=SNAPD_SEED_TIMEOUT)
    node.run(["snap", "version"], timeout=60)
