"""Preflight: find on the nodes, before anything is installed, what breaks bootstrap.

Most air-gap failures surface only at ``k8s bootstrap`` or at the first image pull: no
default route, a proxy that refuses CONNECT, NO_PROXY without the pod CIDR, a firewall
between two nodes. Every check runs ON the node (through Node.run), because what
matters is what the node can reach, not what the workstation can.

One module per family of checks, each check with its fix: ``network`` (route, ports
through a listener on every node), ``access`` (proxy, NO_PROXY, mirror), ``host`` (disk
per filesystem, snapd, clock), ``identity`` (plan address, one machine per name);
``run`` runs them on every node, then across nodes; ``report`` is what they return;
airgap.show.preflight prints it.
"""

from airgap.preflight.access import (
    CURL_TIMEOUT,
    MIRROR_CA_TMP,
    check_mirror,
    check_no_proxy,
    check_proxy,
    dropin_no_proxy,
    no_proxy_gaps,
)
from airgap.preflight.host import (
    CLOCK_TOLERANCE,
    DF_SCRIPT,
    HEADROOM,
    MIN_FREE,
    SNAPD_SOCKET,
    check_clock,
    check_clock_between,
    check_disk,
    check_snapd,
    disk_needs,
    parse_df_paths,
    required_space,
)
from airgap.preflight.identity import (
    IDENTITY_SCRIPT,
    check_identity,
    check_one_machine_each,
    parse_ip_addr,
)
from airgap.preflight.network import (
    PORTS_ALL,
    PORTS_CONTROL_PLANE,
    PROBE_BASH,
    PROBE_PY,
    PROBE_TIMEOUT,
    REACHABLE,
    VXLAN_PORT,
    Listener,
    check_ports,
    check_route,
    listening,
    ports_for,
    probe_ports,
)
from airgap.preflight.report import Check, CheckStatus, NodeChecks, PreflightReport
from airgap.preflight.run import preflight, preflight_images

__all__ = [
    "CLOCK_TOLERANCE", "CURL_TIMEOUT", "DF_SCRIPT", "HEADROOM", "IDENTITY_SCRIPT",
    "MIN_FREE", "MIRROR_CA_TMP", "PORTS_ALL", "PORTS_CONTROL_PLANE", "PROBE_BASH",
    "PROBE_PY", "PROBE_TIMEOUT", "REACHABLE", "SNAPD_SOCKET", "VXLAN_PORT", "Check",
    "CheckStatus", "Listener", "NodeChecks", "PreflightReport", "check_clock",
    "check_clock_between", "check_disk", "check_identity", "check_mirror", "check_no_proxy",
    "check_one_machine_each", "check_ports", "check_proxy", "check_route", "check_snapd",
    "disk_needs", "dropin_no_proxy", "listening", "no_proxy_gaps", "parse_df_paths",
    "parse_ip_addr", "ports_for", "preflight", "preflight_images", "probe_ports",
    "required_space",
]
