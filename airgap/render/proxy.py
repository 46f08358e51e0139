"""The proxy drop-in for the snap's containerd service.

kubelet's pulls happen inside containerd, so the proxy must be in that service's
environment (FACTS), in upper and lower case because tools differ in which they read.
NO_PROXY must keep cluster-internal traffic off the proxy: the pod and service CIDRs,
every node, the mirror and localhost, or pods and the API server break in ways that
look like network faults.
"""

from __future__ import annotations

from airgap.plan import PROXY_DROPIN, Plan
from airgap.render import RenderedFile
from airgap.render.systemd import systemd_quote, unit_file

HEADER = (
    "# Proxy for the k8s snap's containerd, written by k8s-airgap.\n"
    "# Apply: systemctl daemon-reload && systemctl restart snap.k8s.containerd\n"
)


def no_proxy_entries(plan: Plan) -> list[str]:
    """Everything that must bypass the proxy, deduplicated, in a stable order."""
    items: list[str] = [plan.network.pod_cidr, plan.network.service_cidr]
    items += [n.address for n in plan.nodes]
    if plan.mirror is not None:
        items.append(plan.mirror.hostname)
    items += ["localhost", "127.0.0.1"]
    if plan.proxy is not None:
        items += plan.proxy.no_proxy
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def proxy_environment(plan: Plan) -> list[tuple[str, str]]:
    """The variables for containerd's environment, upper case first, then lower case."""
    if plan.proxy is None:
        return []
    # Registries are https: a plan that names only proxy.http (a squid usually does
    # both) must still set HTTPS_PROXY, or containerd pulls directly and fails.
    pairs: list[tuple[str, str]] = []
    if plan.proxy.http:
        pairs.append(("HTTP_PROXY", plan.proxy.http))
    https = plan.proxy.https or plan.proxy.http
    assert https is not None
    pairs.append(("HTTPS_PROXY", https))
    pairs.append(("NO_PROXY", ",".join(no_proxy_entries(plan))))
    return pairs + [(k.lower(), v) for k, v in pairs]


def render_proxy_dropin(plan: Plan) -> RenderedFile:
    """/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf."""
    if plan.proxy is None:
        raise ValueError("the plan has no proxy: section")
    env = [("Environment", systemd_quote(f"{k}={v}")) for k, v in proxy_environment(plan)]
    return RenderedFile(PROXY_DROPIN, unit_file([("Service", env)], HEADER).encode(), 0o644)
