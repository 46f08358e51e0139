"""The proof's evidence: what each node shows about its isolation, what the proxy logged,
the digests the runtime must record, and one negative case per mode.

Each isolation check names the exit code and message that prove it; a missing tool, a
time-out or any other answer is "could not check", which fails the proof like a breach
does. Every address used belongs to the lab: the simulated upstream and the proxy.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from airgap import sideload, tools
from airgap.cri import CRIClient
from airgap.errors import AirgapError
from airgap.nodes import Node, RunResult
from airgap.plan import SIDELOAD_DIR, Mode, Plan
from airgap.plan.lock import ImageLock
from lab.lxd import LXDNode, wait_command
from lab.proof.connected import Connected
from lab.report import FAILED, NOT_CHECKED, PROVED, IsolationRecord, NegativeRecord
from lab.topology import PROXY_PORT, UPSTREAM_PORT, LabSpec

MISSING_IMAGE = "ghcr.io/canonical/not-in-mirror:1"
FAIL_FAST_SECONDS = 15.0
# A command wrapped in `timeout` (LXDNode.run) that did not run, or was killed: its
# failure proves nothing about the network.
NOT_RUN = {124: "timed out", 126: "not executable", 127: "not installed", 137: "killed"}
CURL_NO_CONNECTION = {7: "could not connect", 28: "timed out"}


def expected_digests(lock: ImageLock, mode: Mode, platform: str) -> dict[str, str]:
    """What the runtime records per image name.

    A pull by tag records the digest the tag points at (the index of a multi-platform
    image); a side-loaded archive is exported for one platform, so the runtime records
    that platform's manifest digest.
    """
    if mode is Mode.sideload:
        return {i.ref.name: i.expected_digest or ""
                for i in sideload.select_images(lock.refs(), platform, lock=lock)}
    return {i.ref.name: i.digest for i in lock.images}


# --- isolation -------------------------------------------------------------------------


def _evidence(node: str, check: str, r: RunResult, proved: bool, evidence: str,
              unknown: Mapping[int, str] | None = None) -> IsolationRecord:
    """Judge one check from its raw result: proved, failed, or could not check."""
    why = NOT_RUN.get(r.returncode) or (unknown or {}).get(r.returncode)
    if proved:
        outcome = PROVED
    elif why is not None:
        outcome = NOT_CHECKED
        evidence = f"{evidence} ({r.argv[0]} {why}: this proves nothing)"
    else:
        outcome = FAILED
    output = (r.stdout.strip() + "\n" + r.stderr.strip()).strip()
    return IsolationRecord(node, check, outcome == PROVED, evidence, outcome=outcome,
                           command=shlex.join(r.argv), exit_code=r.returncode,
                           output=output[-2000:])


def isolation_checks(node: Node, spec: LabSpec, when: str) -> list[IsolationRecord]:
    """Evidence that the node reaches the upstream only through the proxy.

    Every address used belongs to the lab: the simulated upstream and the proxy. Each
    check names the exit code and message that prove it; a missing tool, a time-out or
    any other answer is "could not check", which fails the proof like a breach does.
    """
    up = next((m for m in spec.members if m.role == "upstream"), None)
    target = up.services if up else spec.member("proxy").services
    assert target is not None
    prx = spec.member("proxy")
    rows = []
    # getent: 2 is "key not found"; 0 resolved it; 1 and 3 are usage/database errors.
    r = node.run(["getent", "hosts", "ghcr.io"], check=False, timeout=20)
    rows.append(_evidence(
        node.name, f"{when}: resolve ghcr.io", r, r.returncode == 2,
        f"getent hosts ghcr.io: exit {r.returncode}"
        + (f" ({r.stdout.strip()})" if r.stdout.strip() else " (no answer)"),
        unknown={1: "failed (usage or database)", 3: "failed (enumeration)"}))
    # ip route get: no route at all (exit 2, "Network is unreachable"), or an on-link
    # route with no gateway; a route "via" a gateway is a way out.
    r = node.run(["ip", "-4", "route", "get", target], check=False, timeout=20)
    text = (r.stdout.strip() or r.stderr.strip()).splitlines()[0:1]
    seen = text[0] if text else f"exit {r.returncode}"
    no_route = r.returncode == 2 and "Network is unreachable" in r.stderr
    on_link = r.ok and bool(r.stdout.strip()) and " via " not in f" {r.stdout} "
    rows.append(_evidence(
        node.name, f"{when}: route to the upstream {target}", r, no_route or on_link,
        f"ip route get {target}: {seen}"
        + (" (no gateway: on-link placeholder only, nothing answers there)" if on_link else ""),
        unknown={} if r.ok or no_route else {r.returncode: "failed otherwise"}))
    url = f"https://{target}:{UPSTREAM_PORT}/v2/"
    r = node.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", url], check=False,
                 timeout=30)
    rows.append(_evidence(
        node.name, f"{when}: HTTPS to the upstream directly", r,
        r.returncode in CURL_NO_CONNECTION,
        f"curl {url}: exit {r.returncode}: " + (r.stderr.strip().splitlines() or [""])[-1],
        unknown={2: "could not start"}))
    if up is not None:
        r = node.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                      "--proxy", f"http://{prx.airgap}:{PROXY_PORT}", "https://ghcr.io/v2/"],
                     check=False, timeout=30)
        code = r.stdout.strip()
        # The control shows the closed direct path is not a dead upstream: a miss here is
        # "could not check", never a pass.
        rows.append(_evidence(
            node.name, f"{when}: control: ghcr.io through the proxy", r,
            r.ok and code in ("200", "401"),
            f"HTTP {code or '-'} via {prx.airgap}:{PROXY_PORT} "
            "(the upstream is up; only the direct path is closed)",
            unknown={r.returncode: "did not reach the upstream"} if not r.ok else {}))
    return rows


# --- negative cases --------------------------------------------------------------------


def proxy_log_evidence(proxy_node: LXDNode, node_addresses: Mapping[str, str]
                       ) -> list[IsolationRecord]:
    """squid's access log: the proxy-mode pulls really went through the proxy.

    squid writes a CONNECT line when the tunnel closes; stopping squid (the negative
    case) has closed them all by the time this runs.
    """
    r = proxy_node.run(["cat", "/var/log/squid/access.log"], check=False)
    rows = []
    for name, addr in node_addresses.items():
        lines = [ln for ln in r.stdout.splitlines()
                 if f" {addr} " in f" {ln} " and "CONNECT" in ln]
        hosts = sorted({ln.split("CONNECT", 1)[1].split()[0] for ln in lines})
        rows.append(_evidence(
            name, "proxy mode: squid logged this node's CONNECTs",
            RunResult(r.argv, r.returncode, "\n".join(lines), r.stderr), bool(lines),
            f"{len(lines)} CONNECT line(s) from {addr} to {', '.join(hosts) or '-'}",
            unknown={} if r.ok else {r.returncode: "could not read squid's log"}))
    return rows


def negative_mirror_miss(sock: Path, missing: str) -> NegativeRecord:
    t = time.monotonic()
    try:
        with CRIClient(sock) as cri:
            cri.pull_image(missing)
    except AirgapError as exc:
        secs = time.monotonic() - t
        msg = exc.brief
        ok = missing in msg and "not found" in msg and secs < FAIL_FAST_SECONDS
        return NegativeRecord("mirror", f"the mirror lacks {missing} (fallback off)", ok,
                              msg, secs)
    return NegativeRecord("mirror", f"the mirror lacks {missing} (fallback off)", False,
                          "the pull succeeded", time.monotonic() - t)


def negative_proxy_down(proxy_node: LXDNode, sock: Path, image: str, proxy_addr: str
                        ) -> NegativeRecord:
    case = "the proxy is stopped (systemctl stop squid)"
    proxy_node.run(["systemctl", "stop", "squid.service"], timeout=60)
    t = time.monotonic()
    try:
        with CRIClient(sock) as cri:
            cri.pull_image(image, timeout=60)
    except AirgapError as exc:
        secs = time.monotonic() - t
        return NegativeRecord("proxy", case, proxy_addr in exc.brief, exc.brief, secs)
    finally:
        proxy_node.run(["systemctl", "start", "squid.service"], timeout=90)
        wait_command(proxy_node, ["curl", "-s", "-o", "/dev/null",
                                  f"http://127.0.0.1:{PROXY_PORT}/"], "squid", timeout=60)
    return NegativeRecord("proxy", case, False, "the pull succeeded", time.monotonic() - t)


def negative_unnamed_archive(plan: Plan, nodes: Mapping[str, Node], lock: ImageLock,
                             connected: Connected, work: Path) -> NegativeRecord:
    """regctl image export without --name, then deliver: refused before any copy."""
    case = "an archive exported without --name"
    platform = sideload.plan_platform(plan, None)
    img = sideload.select_images(lock.refs()[:1], platform, lock=lock)[0]
    bad = work / "unnamed" / "unnamed.tar"
    bad.parent.mkdir(parents=True, exist_ok=True)
    with connected.active():
        tools.run_tool("regctl", ["image", "export", "--platform", platform, img.source,
                                  str(bad)], timeout=300)
    t = time.monotonic()
    try:
        sideload.deliver(plan, list(nodes.values()), [bad],
                         expected=sideload.expected_from_lock(lock, platform))
    except AirgapError as exc:
        secs = time.monotonic() - t
        sent = [n for n, node in nodes.items()
                if node.run(["test", "-e", f"{SIDELOAD_DIR}/{bad.name}"], check=False).ok]
        msg = f"{exc.brief} Resolution: {exc.resolution or ''}".strip()
        note = (" [copied to " + ", ".join(sent) + "]") if sent else \
            " [nothing copied to any node]"
        return NegativeRecord("sideload", case, "--name" in msg and not sent, msg + note, secs)
    return NegativeRecord("sideload", case, False, "deliver accepted it",
                          time.monotonic() - t)
