"""The three image-access modes, end to end in a fresh lab, with their assertions.

`invoke lab.prove` and `nox -s e2e` both call :func:`prove`. It brings a lab up,
prepares a bundle with the product's own code, and then for each mode (proxy,
mirror, sideload), on a clean runtime, configures every node with `deploy` and
pulls every image of images.lock through the node's CRI socket, as kubelet would.
It shows that the nodes cannot reach the upstream directly, runs one negative case
per mode, writes the report (Markdown and JSON) and brings the lab down, also on
failure.

The connected side runs on this machine, as a connected workstation behind the
site's proxy would: regctl, regsync and the mirror's own checks get HTTPS_PROXY
(the lab's squid, which alone resolves ghcr.io and friends to the simulated
upstream), NO_PROXY (the lab registry) and SSL_CERT_FILE (the system CAs plus the
lab's CAs). While they run, this process refuses to resolve the upstream names
itself, so that nothing can reach the real registries by mistake.

The k8s snap cannot be downloaded here: the bundle holds stand-in snaps built by
lab/standin.py and signed by a lab authority, which prepare and verify check
exactly as they check Canonical's; the nodes run the lab's runtime stand-in. The
report says so.

`k8s_snap=True` is the full proof with the real snap. It refuses to start where that
is impossible (no snapd to download from the Snap Store, no VM support, no image
server: :func:`full_proof_blockers`, decided from local facts only) and never falls
back to the stand-in. Where it can run, the lab's nodes are Ubuntu VMs with no
stand-in, the upstream is the real internet behind the lab's NAT'd proxy, and
`prepare` runs the real `snap download` (no --from) checked against Canonical's root.
Then, for each mode in turn (proxy, mirror, sideload), on a cluster that did not exist
before: `deploy` installs snapd, the base and k8s from the bundle, configures the
runtime for that mode alone, bootstraps node-1, joins the others and waits for Ready;
`k8s kubectl get node -o json` must list every node Ready (recorded with its kubelet
version); one workload pod per node (``kubectl run --image-pull-policy=IfNotPresent
--restart=Never``, pinned to the node) must reach Succeeded or Running, its image
pulled by kubelet through the mode, with its image ID recorded and checked against
images.lock; the images kubelet reports in each node's status are checked too. The
pods are deleted, and before the next mode the cluster is removed (`snap remove
--purge k8s` on every node, plus the runtime's image store and the mode's files), so
each mode proves itself from scratch rather than from images an earlier mode brought.
Re-deploying per mode costs a few minutes each; configuring all three modes on one
cluster would be faster but could not say which mode served a pull. The negative cases
(proxy down, mirror miss, unnamed archive) exercise containerd's behaviour and run in
the stand-in proof; the real-snap report says so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from airgap import __version__, nodeset, sideload, tools
from airgap import deploy as deploy_mod
from airgap import mirror as mirror_mod
from airgap.bundle import Bundle, PrepareReport, load_trust, prepare_bundle, verify_bundle
from airgap.config import (
    CLASSIC_HOSTS_DIR,
    CONTAINERD_UNIT,
    PROXY_DROPIN,
    SIDELOAD_DIR,
    Mode,
    Plan,
    parse_plan,
)
from airgap.cri import CRIClient
from airgap.deploy import ClusterNode, cluster_member, parse_nodes
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.images import DOCKER_HUB, parse_image_ref
from airgap.lock import ImageLock, read_lock
from airgap.nodes import Node, RunResult
from lab import host, lifecycle, network, state
from lab.lxd import TRANSPORTS, LXDNode, expose_unix_socket, wait_command, wait_until
from lab.plandocs import plan_document
from lab.report import (
    FAILED,
    NOT_CHECKED,
    PROVED,
    ClusterNodeRecord,
    IsolationRecord,
    NegativeRecord,
    PodRecord,
    PullRecord,
    Report,
    to_json,
    to_markdown,
)
from lab.topology import PROXY_PORT, UPSTREAM_PORT, InstanceType, LabSpec, Runtime, Upstream

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
MODES = (Mode.proxy, Mode.mirror, Mode.sideload)
STAND_IN_SNAPS = ("stand-in snaps, signed by a lab authority: the real k8s snap could not "
                  "be downloaded here")
MISSING_IMAGE = "ghcr.io/canonical/not-in-mirror:1"
REPORT_STEM = "e2e-report"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CRI_READY_TIMEOUT = 60.0
FAIL_FAST_SECONDS = 15.0
SNAPD_SOCKET = Path("/run/snapd.socket")
IMAGE_SERVER_ENV = "K8S_AIRGAP_IMAGE_SERVER"
REAL_SNAPS = ("the real k8s snap, its base and snapd, downloaded from the Snap Store "
              "(snap download) and verified against Canonical's root")
REAL_NEGATIVES_NOTE = ("Negative cases (proxy down, mirror miss, archive without --name) are "
                       "not repeated on the real snap: they exercise containerd's behaviour "
                       "and run in the stand-in proof (invoke lab.prove without --k8s-snap).")
POD_PREFIX = "airgap-proof"
POD_TIMEOUT = 300.0
POD_POLL = 3.0
POD_DELETE_TIMEOUT = 120.0
SNAP_REMOVE_TIMEOUT = 900.0
KUBECTL_TIMEOUT = 60.0
# Waiting reasons that mean the image will not come: stop waiting at once.
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                 "CreateContainerError", "CreateContainerConfigError")
# Steps deploy must have run for real on a real-snap node (never skipped).
REAL_STEPS = ("transfer", "snaps", "ready")


def _quiet(_: str) -> None:
    pass


# --- the full proof (real snap) --------------------------------------------------------


def full_proof_blockers() -> list[str]:
    """Why the real k8s snap cannot be proven on this machine (empty: it can).

    Decided from local facts only: the Snap Store is never probed (network safety).
    """
    out = []
    if shutil.which("snap") is None:
        out.append("there is no `snap` command (snapd), so `snap download k8s` cannot fetch "
                   "the real snap from the Snap Store")
    elif not SNAPD_SOCKET.exists():
        out.append(f"snapd is not running ({SNAPD_SOCKET} is missing), so `snap download` "
                   "cannot reach the Snap Store")
    if not host.lxd_answers():
        out.append("LXD is not running (invoke lab.host)")
    else:
        ok, why = host.vm_support(host.client())
        if not ok:
            out.append(f"LXD cannot run VMs here ({why}); the k8s snap needs VM nodes, LXD "
                       "containers here cannot run containers")
    if not os.environ.get(IMAGE_SERVER_ENV):
        out.append(f"{IMAGE_SERVER_ENV} is not set (an LXD simplestreams image server for "
                   "the Ubuntu VM image of the nodes)")
    return out


def refuse_full_proof_here() -> None:
    blockers = full_proof_blockers()
    if blockers:
        raise AirgapError(
            "--k8s-snap: the full proof with the real k8s snap cannot run on this machine: "
            + "; ".join(blockers),
            resolution="Run it on a host with snapd and Snap Store access and an LXD that "
            "supports VMs (/dev/vhost-vsock), with K8S_AIRGAP_IMAGE_SERVER set; or run "
            "without --k8s-snap for the stand-in proof of the three image-access modes.",
        )


# --- the connected side's environment --------------------------------------------------


@dataclass(frozen=True)
class Connected:
    """How this machine acts as the connected side of the lab."""

    env: dict[str, str]
    upstream_hosts: tuple[str, ...]
    proxy: str

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Set the environment for the tools; refuse upstream names in this process."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        real = socket.getaddrinfo
        blocked = set(self.upstream_hosts)

        def guarded(hostname: Any, *args: Any, **kwargs: Any) -> Any:
            name = hostname.decode() if isinstance(hostname, bytes) else str(hostname)
            if name.rstrip(".").lower() in blocked:
                raise socket.gaierror(
                    socket.EAI_NONAME,
                    f"k8s-airgap lab: {name} must be reached through the lab proxy, "
                    "never resolved here")
            return real(hostname, *args, **kwargs)

        socket.getaddrinfo = guarded  # type: ignore[assignment]
        try:
            yield
        finally:
            socket.getaddrinfo = real
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def connected_side(st: state.LabState, spec: LabSpec, work: Path) -> Connected:
    """Behind the lab proxy, trusting the system CAs and the lab's CAs."""
    prx, reg = spec.member("proxy"), spec.member("registry")
    proxy = f"http://{prx.services}:{PROXY_PORT}"
    no_proxy = ",".join(a for a in (reg.airgap, reg.services, "localhost", "127.0.0.1") if a)
    bundle = work / "connected-ca.pem"
    parts = [SYSTEM_CA_BUNDLE.read_bytes()] if SYSTEM_CA_BUNDLE.is_file() else []
    parts += [Path(f).read_bytes() for f in (st.public_ca_file, st.ca_file) if f]
    write_atomic(bundle, b"\n".join(parts))
    home = work / "connected-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HTTPS_PROXY": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "http_proxy": proxy,
        "NO_PROXY": no_proxy, "no_proxy": no_proxy, "SSL_CERT_FILE": str(bundle),
        "REGCTL_CONFIG": str(home / "regctl.json"), "DOCKER_CONFIG": str(home / "docker"),
    }
    return Connected(env, tuple(spec.upstream_hosts), proxy)


# --- plans -----------------------------------------------------------------------------


def mode_plan(spec: LabSpec, st: state.LabState, work: Path, mode: Mode,
              workload: Path) -> Plan:
    """The lab's plan with access [mode] only, written to work/ for a reader to see."""
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


# --- nodes -----------------------------------------------------------------------------


def _parallel(fn: Callable[[str], Any], names: Sequence[str]) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(fn, names), strict=True))


RESET_SCRIPT = f"""set -e
systemctl stop {CONTAINERD_UNIT}.service
rm -rf {CLASSIC_HOSTS_DIR} /var/lib/containerd
rm -f {PROXY_DROPIN} {SIDELOAD_DIR}/*.tar {SIDELOAD_DIR}/*.tar.loaded
mkdir -p {CLASSIC_HOSTS_DIR} {SIDELOAD_DIR}
systemctl daemon-reload
systemctl start {CONTAINERD_UNIT}.service
"""


def reset_runtime(node: LXDNode) -> None:
    """A clean stand-in runtime: no registry config, no proxy, no images, no content."""
    node.run(["sh", "-c", RESET_SCRIPT], timeout=120)
    wait_command(node, ["ctr", "version"], f"{CONTAINERD_UNIT} after the reset",
                 timeout=CRI_READY_TIMEOUT)


def _cri_ready(sock: Path) -> None:
    def answers() -> bool:
        try:
            with CRIClient(sock, timeout=5) as cri:
                cri.version()
            return True
        except AirgapError:
            return False

    wait_until(f"the CRI on {sock}", answers, timeout=CRI_READY_TIMEOUT)


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


def pull_every_image(mode: Mode, node: str, sock: Path, expected: Mapping[str, str],
                     recorded: Mapping[str, str] | None = None) -> list[PullRecord]:
    """Every image through the CRI; side-loaded ones by ImageStatus (no pull: the node
    has neither a proxy nor a mirror, and kubelet's IfNotPresent asks ImageStatus).

    An imported image has no repo digest in the CRI (containerd records only the
    name); its digest is the one the runtime's image store holds (``recorded``, from
    ``ctr -n k8s.io images ls``), which is what the side-load confirmation reads too.
    """
    rows = []
    with CRIClient(sock) as cri:
        for image, want in expected.items():
            t = time.monotonic()
            try:
                if mode is not Mode.sideload:
                    cri.pull_image(image)
                status = cri.image_status(image)
            except AirgapError as exc:
                rows.append(PullRecord(mode.value, node, image, False, expected=want,
                                       seconds=time.monotonic() - t,
                                       detail=exc.brief))
                continue
            secs = time.monotonic() - t
            if status is None:
                rows.append(PullRecord(mode.value, node, image, False, expected=want,
                                       seconds=secs, detail="not in the runtime"))
                continue
            if mode is Mode.sideload:
                got = (recorded or {}).get(image, "")
                how = ("imported at start; CRI ImageStatus finds it, digest from the "
                       "runtime's image store")
            else:
                got = next((d for d in status.digests if d == want),
                           status.digests[0] if status.digests else "")
                how = "CRI PullImage + ImageStatus"
            rows.append(PullRecord(
                mode.value, node, image, got == want, digest=got, expected=want,
                seconds=secs, bytes=status.size,
                detail=how if got == want else f"digest {got} is not images.lock's {want}"))
    return rows


def _pull_node(mode: Mode, socks: Mapping[str, Path], expected: Mapping[str, str],
               nodes: Mapping[str, Node], node: str) -> list[PullRecord]:
    recorded = None
    if mode is Mode.sideload:
        res = nodes[node].run(["ctr", "-n", "k8s.io", "images", "ls"], timeout=60)
        recorded = sideload.parse_ctr_images(res.stdout)
    return pull_every_image(mode, node, socks[node], expected, recorded)


# --- isolation -------------------------------------------------------------------------


# A command wrapped in `timeout` (LXDNode.run) that did not run, or was killed: its
# failure proves nothing about the network.
NOT_RUN = {124: "timed out", 126: "not executable", 127: "not installed", 137: "killed"}
CURL_NO_CONNECTION = {7: "could not connect", 28: "timed out"}


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


# --- the scenario ----------------------------------------------------------------------


class _Steps:
    def __init__(self, report: Report, say: Progress) -> None:
        self.report, self.say = report, say

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        self.say(name)
        row: dict[str, Any] = {"step": name, "seconds": 0.0, "detail": ""}
        t = time.monotonic()
        try:
            yield row
        finally:
            row["seconds"] = round(time.monotonic() - t, 2)
            self.report.steps.append(row)


def write_report(report: Report, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = write_atomic(out / f"{REPORT_STEM}.md", to_markdown(report))
    js = write_atomic(out / f"{REPORT_STEM}.json", to_json(report))
    return md, js


def prove(
    name: str = "e2e",
    nodes: int = 2,
    out: Path = Path("reports"),
    keep: bool = False,
    k8s_snap: bool = False,
    progress: Progress | None = None,
    *,
    root: Path | None = None,
    slot: int = 0,
) -> Report:
    """Run the whole proof; the report is written to out/ and returned (check .ok)."""
    say = progress or _quiet
    if k8s_snap:
        refuse_full_proof_here()  # never falls back to the stand-in
    if not host.lxd_answers():
        host.setup_host()
    host.initialise(host.client())
    t0 = time.monotonic()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if (state.LabState.read(state.state_dir(name, root)) is not None
            or host.client().projects.exists(LabSpec(name=name).project)):
        # Leftovers of an earlier run with this name (only then: down of a lab that was
        # never up would take the blackhole of whatever lab owns its default slot).
        lifecycle.down(state.spec_from_state(name, root), root=root)
    spec = LabSpec(name=name, nodes=nodes, slot=network.free_slot(slot),
                   instance_type=InstanceType.auto,
                   upstream=Upstream.internet if k8s_snap else Upstream.simulated,
                   runtime=Runtime.k8s_snap if k8s_snap else Runtime.stand_in)
    report = Report(lab=f"{name} (project {spec.project}, slot {spec.slot}, {spec.block})",
                    runtime="", stand_in=not k8s_snap, started=started)
    steps = _Steps(report, say)
    work = Path(tempfile.mkdtemp(prefix=f"k8s-airgap-prove-{name}-"))
    try:
        if k8s_snap:
            _run_real(spec, report, steps, work, root, say, os.environ[IMAGE_SERVER_ENV])
        else:
            _run(spec, report, steps, work, root, say)
    except AirgapError as exc:
        report.errors.append(str(exc).splitlines()[0])
        log.debug("proof failed", exc_info=True)
    except Exception as exc:  # report it, then still bring the lab down
        report.errors.append(f"{type(exc).__name__}: {exc}")
        log.warning("proof failed", exc_info=True)
    finally:
        if keep:
            report.notes.append(f"Lab kept (--keep): `invoke lab.down --name {name}`; "
                                f"work files in {work}")
        else:
            with steps.step("lab down") as row:
                try:
                    res = lifecycle.down(spec, root=root)
                    row["detail"] = f"{len(res.removed)} objects removed"
                except AirgapError as exc:
                    report.errors.append(f"lab down: {exc.brief}")
            shutil.rmtree(work, ignore_errors=True)
        report.seconds = round(time.monotonic() - t0, 1)
        write_report(report, out)
    return report


def _run(spec: LabSpec, report: Report, steps: _Steps, work: Path, root: Path | None,
         say: Progress) -> None:
    from airgap.deploy import deploy
    from airgap.nodeset import build_nodes
    from airgap.sideload import export_images, plan_platform, select_images
    from lab.standin import Authority, make_snap_set

    with steps.step("lab up") as row:
        up = lifecycle.up(spec, root=root, progress=lambda m: say(f"  {m}"))
        st = up.state
        row["detail"] = (f"{len(st.members)} instances, {st.instance_type}s "
                         f"({st.instance_type_reason})")
    report.runtime = st.runtime
    report.stand_in = st.stand_in
    report.notes.append(f"Instances: {st.instance_type}s ({st.instance_type_reason})")
    report.notes.append(f"Upstream: {st.upstream_content}")
    connected = connected_side(st, spec, work)
    report.notes.append(
        f"Connected side: this machine behind the lab proxy ({connected.proxy}, NO_PROXY "
        f"{connected.env['NO_PROXY']}, SSL_CERT_FILE = system CAs + the lab's CAs); "
        "upstream names are never resolved here.")

    k8s_images = [i for i in spec.images if parse_image_ref(i).registry != DOCKER_HUB]
    workload_images = [i for i in spec.images if i not in k8s_images]
    workload = work / "workload-images.txt"
    write_atomic(workload, "\n".join(workload_images) + "\n")
    plans = {m: mode_plan(spec, st, work, m, workload) for m in MODES}

    with steps.step("stand-in snaps (k8s, core22, snapd) signed by a lab authority") as row:
        authority = Authority.create()
        trusted_root = authority.write_root(work / "lab-root.account-key.assert")
        snapdir = work / "snaps"
        made = make_snap_set(snapdir, authority, images=k8s_images)
        row["detail"] = ", ".join(sorted(made))
    report.snaps = STAND_IN_SNAPS
    trust = load_trust(trusted_root, True)
    bundle = work / "bundle"
    base_plan = plans[Mode.proxy]
    with steps.step("prepare (snaps from --from, images.lock through the proxy)") as row, \
            connected.active():
        prep = prepare_bundle(base_plan, bundle, from_dir=snapdir, trust=trust)
        row["detail"] = (", ".join(f"{p.snap.name}={p.snap.revision} ({p.action})"
                                   for p in prep.snaps)
                         + f"; {len(prep.lock.images)} images {prep.images_action}")
    lock = read_lock(Bundle(bundle).lock)
    report.images = [i.ref.name for i in lock.images]
    platform = plan_platform(base_plan, None)
    with steps.step("sideload export into the bundle (regctl, through the proxy)") as row, \
            connected.active():
        archives = export_images(select_images(lock.refs(), platform, lock=lock),
                                 Bundle(bundle).images_dir, platform)
        row["detail"] = f"{len(archives)} archives, {sum(a.size for a in archives)} bytes"
    with steps.step("prepare again (manifest lists the archives), verify") as row, \
            connected.active():
        prepare_bundle(base_plan, bundle, from_dir=snapdir, trust=trust)
        ver = verify_bundle(bundle, trusted_root=trusted_root)
        row["detail"] = f"verify: {len(ver.rows)} rows ok, trusted root: the lab authority"

    nodes = build_nodes(base_plan, transports=TRANSPORTS)
    names = list(nodes)
    report.nodes = names
    lxd_nodes = {n: LXDNode(n, project=spec.project) for n in names}
    socks = {n: work / f"cri-{n}.sock" for n in names}
    for n in names:
        expose_unix_socket(spec.project, n, socks[n])
    _cri_ready(socks[names[0]])
    with CRIClient(socks[names[0]]) as cri:
        v = cri.version()
    report.tools = {
        "k8s-airgap": __version__,
        "regctl": tools.tool_version(tools.find_tool("regctl")) or "?",
        "regsync": tools.tool_version(tools.find_tool("regsync")) or "?",
        "containerd (CRI Version)": f"{v.runtime_name} {v.runtime_version} "
                                    f"(CRI {v.runtime_api_version})",
        "lxd": str(host.client().host_info.get("environment", {}).get("server_version", "?")),
    }
    report.runtime = f"{st.runtime}; {v.runtime_name} {v.runtime_version}"

    with steps.step("isolation, before deploy (no default route)"):
        for rows in _parallel(lambda n: isolation_checks(lxd_nodes[n], spec, "before deploy"),
                              names).values():
            report.isolation += rows

    def verify(b: Path) -> object:
        return verify_bundle(b, trusted_root=trusted_root)

    for mode in MODES:
        plan = plans[mode]
        report.modes.append(mode.value)
        with steps.step(f"{mode.value}: clean runtime on every node"):
            _parallel(lambda n: reset_runtime(lxd_nodes[n]), names)
            for n in names:
                _cri_ready(socks[n])
        if mode is Mode.mirror:
            from airgap.mirror import mirror_images

            with steps.step("mirror: fill the lab registry (regsync through the proxy)") as row, \
                    connected.active():
                mrep = mirror_images(plan, lock.refs(), lock=lock)
                row["detail"] = (f"{len(mrep.images)} images, {mrep.bytes_copied} bytes copied, "
                                 f"regsync ran: {mrep.regsync_ran}")
        with steps.step(f"{mode.value}: deploy (runtime configuration)") as row:
            dep = deploy(plan, nodes, bundle, verify=verify)
            row["detail"] = "; ".join(
                f"{nr.name}: " + ", ".join(f"{s.step}={s.status.value}" for s in nr.steps
                                           if s.step in ("route", "runtime"))
                for nr in dep.nodes)
            if not dep.ok:
                bad = [f"{nr.name} {s.step}: {s.detail}" for nr in dep.nodes for s in nr.steps
                       if s.status.value == "failed"]
                raise AirgapError(f"{mode.value}: deploy failed: " + "; ".join(bad))
        for n in names:
            _cri_ready(socks[n])
        expected = expected_digests(lock, mode, platform)
        with steps.step(f"{mode.value}: every image on every node through the CRI") as row:
            got = _parallel(functools.partial(_pull_node, mode, socks, expected, nodes),
                            names)
            for n in names:
                report.pulls += got[n]
            rows = [p for p in report.pulls if p.mode == mode.value]
            row["detail"] = f"{sum(p.ok for p in rows)}/{len(rows)} ok"
        first = names[0]
        if mode is Mode.proxy:
            prx = spec.member("proxy")
            with steps.step("proxy: negative case, squid stopped"):
                proxy_node = LXDNode("proxy", project=spec.project)
                report.negatives.append(negative_proxy_down(
                    proxy_node, socks[first], report.images[0], f"{prx.airgap}:{PROXY_PORT}"))
                report.isolation += proxy_log_evidence(
                    proxy_node, {n: spec.member(n).airgap or "" for n in names})
        elif mode is Mode.mirror:
            with steps.step("mirror: negative case, an image the mirror lacks"):
                report.negatives.append(negative_mirror_miss(socks[first], MISSING_IMAGE))
        else:
            with steps.step("sideload: negative case, an archive without --name"):
                report.negatives.append(negative_unnamed_archive(plan, nodes, lock, connected,
                                                                 work))

    with steps.step("isolation, after the three modes (placeholder route in place)"):
        for rows in _parallel(lambda n: isolation_checks(lxd_nodes[n], spec, "after deploy"),
                              names).values():
            report.isolation += rows


# --- the full proof: the real k8s snap ----------------------------------------------

REMOVE_CLUSTER_SCRIPT = f"""set -e
if snap list k8s >/dev/null 2>&1; then snap remove --purge k8s; fi
rm -rf {CLASSIC_HOSTS_DIR} /var/lib/containerd /run/containerd
rm -f {PROXY_DROPIN}
systemctl daemon-reload
"""


def remove_cluster(node: Node) -> None:
    """No cluster and no images left on the node; the bundle and the snapd/base snaps stay
    (deploy keeps what is installed at the bundle's revision)."""
    node.run(["sh", "-c", REMOVE_CLUSTER_SCRIPT], timeout=SNAP_REMOVE_TIMEOUT)


def real_deploy_problems(dep: deploy_mod.DeployReport) -> list[str]:
    """Everything that says deploy did not install and run the real snap on every node."""
    bad_status = (deploy_mod.StepStatus.failed, deploy_mod.StepStatus.not_run)
    out = []
    for nr in dep.nodes:
        if nr.stand_in:
            out.append(f"{nr.name}: the runtime stand-in is present on a real-snap node")
        for s in nr.steps:
            if s.status in bad_status:
                out.append(f"{nr.name} {s.step}: {s.status.value}: {s.detail}")
            elif s.status is deploy_mod.StepStatus.skipped and (
                    s.step in REAL_STEPS or s.step in ("bootstrap", "join")):
                out.append(f"{nr.name} {s.step}: skipped: {s.detail}")
        for step in (*REAL_STEPS, "join" if nr.status_of("bootstrap") is None else "bootstrap"):
            if nr.status_of(step) is None:
                out.append(f"{nr.name} {step}: did not run")
    return out


def kubectl(node: Node, *args: str, check: bool = True, timeout: float = KUBECTL_TIMEOUT
            ) -> Any:
    return node.run(["k8s", "kubectl", *args], check=check, timeout=timeout)


def cluster_records(mode: Mode, plan: Plan, members: Sequence[ClusterNode]
                    ) -> list[ClusterNodeRecord]:
    rows = []
    for pn in plan.nodes:
        m = cluster_member(pn, members)
        if m is None:
            rows.append(ClusterNodeRecord(mode.value, pn.name, False,
                                          detail="not listed by kubectl get node"))
            continue
        rows.append(ClusterNodeRecord(mode.value, pn.name, m.ready, m.version,
                                      f"k8s node {m.name}" + ("" if m.ready else ", not Ready")))
    return rows


@dataclass(frozen=True)
class PodState:
    phase: str
    image: str
    image_id: str
    waiting: str
    message: str


def parse_pod(text: str) -> PodState:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return PodState("", "", "", "", "")
    status = doc.get("status", {})
    cs = (status.get("containerStatuses") or [{}])[0]
    waiting = (cs.get("state") or {}).get("waiting") or {}
    return PodState(status.get("phase", ""), cs.get("image", ""), cs.get("imageID", ""),
                    waiting.get("reason", ""), waiting.get("message", ""))


def image_id_digest(image_id: str) -> str:
    """kubelet's imageID: `repo@sha256:...` for a pulled image; the ID alone otherwise."""
    return image_id.rsplit("@", 1)[1] if "@" in image_id else ""


def pod_name(node: str) -> str:
    return f"{POD_PREFIX}-{node}"


def run_workload_pod(
    boot: Node, mode: Mode, node: str, kube_name: str, image: str,
    *, timeout: float = POD_TIMEOUT, poll: float = POD_POLL,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> PodRecord:
    """One pod pinned to the node; its image can only come through the mode (no route out)."""
    pod = pod_name(node)
    kubectl(boot, "delete", "pod", pod, "--ignore-not-found", "--wait=true",
            f"--timeout={POD_DELETE_TIMEOUT:.0f}s", timeout=POD_DELETE_TIMEOUT + 30)
    overrides = json.dumps({"apiVersion": "v1", "spec": {"nodeName": kube_name}})
    t = clock()
    kubectl(boot, "run", pod, f"--image={image}", "--image-pull-policy=IfNotPresent",
            "--restart=Never", f"--overrides={overrides}", "--", "true")
    state = PodState("", "", "", "", "")
    try:
        while True:
            res = kubectl(boot, "get", "pod", pod, "-o", "json", check=False)
            state = parse_pod(res.stdout) if res.ok else state
            done = state.phase in ("Succeeded", "Running", "Failed")
            if done or state.waiting in PULL_FAILURES or clock() - t >= timeout:
                break
            sleep(poll)
    finally:
        kubectl(boot, "delete", "pod", pod, "--ignore-not-found", "--wait=true",
                f"--timeout={POD_DELETE_TIMEOUT:.0f}s", check=False,
                timeout=POD_DELETE_TIMEOUT + 30)
    secs = clock() - t
    ok = state.phase in ("Succeeded", "Running")
    if ok:
        detail = "kubelet pulled (IfNotPresent) and ran it; pod deleted"
    elif state.waiting:
        detail = f"{state.waiting}: {state.message}"
    else:
        detail = (f"phase {state.phase or 'unknown'} after {secs:.0f} s"
                  + ("" if state.phase else f" (deadline {timeout:.0f} s)"))
    return PodRecord(mode.value, node, pod, image, state.phase or "-", ok, state.image_id,
                     round(secs, 2), detail)


def runtime_digests(node: Node) -> dict[str, str]:
    """name -> digest as the snap's containerd records it (imported images have no repo
    digest in the CRI, so kubelet's imageID cannot show it)."""
    ctr = sideload.ctr_command(node)
    res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
    return sideload.parse_ctr_images(res.stdout) if res.ok else {}


def workload_pull(pod: PodRecord, expected: str, recorded: Mapping[str, str] | None
                  ) -> PullRecord:
    name = parse_image_ref(pod.image).name
    got = recorded.get(name, "") if recorded is not None else image_id_digest(pod.image_id)
    ok = pod.ok and got == expected
    how = (f"workload pod {pod.pod}: {pod.phase}; " +
           ("digest from the runtime's image store (imported)" if recorded is not None
            else "digest from kubelet's imageID"))
    if not pod.ok:
        detail = pod.detail
    elif got != expected:
        detail = f"{how}; digest {got or '-'} is not images.lock's {expected}"
    else:
        detail = how
    return PullRecord(pod.mode, pod.node, name, ok, digest=got, expected=expected,
                      seconds=pod.seconds, detail=detail)


def cluster_image_pulls(mode: Mode, node: str, kube: ClusterNode, expected: Mapping[str, str],
                        skip: set[str], recorded: Mapping[str, str] | None
                        ) -> tuple[list[PullRecord], list[str]]:
    """The images.lock images kubelet reports in the node's runtime (the cluster pulled
    them to come up); those it does not report are returned as unused (their features
    are not enabled)."""
    names = {n for entry in kube.images for n in entry}
    rows: list[PullRecord] = []
    unused: list[str] = []
    for image, want in expected.items():
        if image in skip:
            continue
        if image not in names:
            unused.append(image)
            continue
        ref = parse_image_ref(image)
        if recorded is not None:
            got = recorded.get(image, "")
            how = "in the node's runtime (kubelet status.images); digest from ctr (imported)"
        else:
            prefix = f"{ref.registry}/{ref.repository}@"
            got = next((n[len(prefix):] for n in names if n.startswith(prefix) and
                        n[len(prefix):] == want),
                       next((n[len(prefix):] for n in names if n.startswith(prefix)), ""))
            how = "pulled by the cluster itself (kubelet via the CRI), in status.images"
        rows.append(PullRecord(mode.value, node, image, got == want, digest=got, expected=want,
                               detail=how if got == want else
                               f"{how}; digest {got or '-'} is not images.lock's {want}"))
    return rows, unused


def _snap_summary(prep: PrepareReport) -> str:
    return ", ".join(f"{p.snap.name}={p.snap.revision} ({p.action})" for p in prep.snaps)


def _run_real(spec: LabSpec, report: Report, steps: _Steps, work: Path, root: Path | None,
              say: Progress, image_server: str) -> None:
    with steps.step("lab up (VM nodes for the real k8s snap)") as row:
        up = lifecycle.up(spec, root=root, image_server=image_server,
                          progress=lambda m: say(f"  {m}"))
        st = up.state
        row["detail"] = (f"{len(st.members)} instances; {st.instance_type_reason}; "
                         f"image server {image_server}")
    report.runtime = st.runtime
    report.stand_in = False
    report.notes.append(f"Instances: {st.instance_type_reason}")
    report.notes.append(f"Upstream: {st.upstream_content}")
    connected = connected_side(st, spec, work)
    report.notes.append(f"Connected side: this machine behind the lab proxy ({connected.proxy})")
    report.notes.append(REAL_NEGATIVES_NOTE)

    workload_images = [i for i in spec.images if parse_image_ref(i).registry == DOCKER_HUB]
    workload = work / "workload-images.txt"
    write_atomic(workload, "\n".join(workload_images) + "\n")
    plans = {m: mode_plan(spec, st, work, m, workload) for m in MODES}
    base_plan = plans[Mode.proxy]
    bundle = work / "bundle"
    trust = load_trust(None, True)  # Canonical's root, packaged
    with steps.step("prepare (snap download from the Snap Store, images.lock through the "
                    "proxy)") as row, connected.active():
        prep = prepare_bundle(base_plan, bundle, trust=trust)
        row["detail"] = _snap_summary(prep) + f"; {len(prep.lock.images)} images"
    report.snaps = f"{REAL_SNAPS}: {_snap_summary(prep)}"
    lock = read_lock(Bundle(bundle).lock)
    report.images = [i.ref.name for i in lock.images]
    workload_locked = [i.ref.name for i in lock.images if i.source == "workload"]
    if not workload_locked:
        raise AirgapError(f"{Bundle(bundle).lock}: no workload image to run a pod with",
                          resolution="Give the lab a Docker Hub workload image (images).")
    image = workload_locked[0]
    platform = sideload.plan_platform(base_plan, None)
    with steps.step("sideload export into the bundle (regctl, through the proxy)") as row, \
            connected.active():
        archives = sideload.export_images(
            sideload.select_images(lock.refs(), platform, lock=lock), Bundle(bundle).images_dir,
            platform)
        row["detail"] = f"{len(archives)} archives"
    with steps.step("prepare again (manifest lists the archives), verify") as row, \
            connected.active():
        prepare_bundle(base_plan, bundle, trust=trust)
        ver = verify_bundle(bundle)
        row["detail"] = f"verify: {len(ver.rows)} rows ok, trusted root: Canonical's"

    nodes = nodeset.build_nodes(base_plan, transports=TRANSPORTS)
    names = list(nodes)
    report.nodes = names
    boot = nodes[base_plan.control_plane.name]
    report.tools = {
        "k8s-airgap": __version__,
        "regctl": tools.tool_version(tools.find_tool("regctl")) or "?",
        "regsync": tools.tool_version(tools.find_tool("regsync")) or "?",
        "k8s snap": next((f"revision {p.snap.revision}" for p in prep.snaps
                          if p.snap.name == "k8s"), "?"),
        "lxd": str(host.client().host_info.get("environment", {}).get("server_version", "?")),
    }
    with steps.step("isolation, before deploy (no default route)"):
        for rows in _parallel(lambda n: isolation_checks(nodes[n], spec, "before deploy"),
                              names).values():
            report.isolation += rows

    for i, mode in enumerate(MODES):
        plan = plans[mode]
        report.modes.append(mode.value)
        if i:
            with steps.step(f"{mode.value}: remove the previous cluster (snap remove --purge "
                            "k8s on every node)"):
                _parallel(lambda n: remove_cluster(nodes[n]), names)
        if mode is Mode.mirror:
            with steps.step("mirror: fill the lab registry (regsync through the proxy)") as row, \
                    connected.active():
                mrep = mirror_mod.mirror_images(plan, lock.refs(), lock=lock)
                row["detail"] = f"{len(mrep.images)} images"
        with steps.step(f"{mode.value}: deploy (snaps, runtime, bootstrap, join, Ready)") as row:
            dep = deploy_mod.deploy(plan, nodes, bundle, verify=verify_bundle)
            row["detail"] = "; ".join(
                f"{nr.name}: " + ", ".join(f"{s.step}={s.status.value}" for s in nr.steps)
                for nr in dep.nodes)
            problems = real_deploy_problems(dep)
            if problems:
                raise AirgapError(f"{mode.value}: deploy did not bring the real snap up: "
                                  + "; ".join(problems))
        with steps.step(f"{mode.value}: k8s kubectl get node -o json") as row:
            members = parse_nodes(kubectl(boot, "get", "node", "-o", "json").stdout)
            rows_c = cluster_records(mode, plan, members)
            report.cluster += rows_c
            row["detail"] = ", ".join(f"{c.node}={'Ready' if c.ready else 'NOT Ready'} "
                                      f"{c.version}" for c in rows_c)
            if not all(c.ready for c in rows_c):
                raise AirgapError(f"{mode.value}: not every node is Ready: {row['detail']}")
        expected = expected_digests(lock, mode, platform)
        with steps.step(f"{mode.value}: a workload pod per node ({image}, pulled offline)"
                        ) as row:
            for pn in plan.nodes:
                kube = cluster_member(pn, members)
                assert kube is not None  # every node is Ready, so listed
                pod = run_workload_pod(boot, mode, pn.name, kube.name, image)
                report.pods.append(pod)
                recorded = runtime_digests(nodes[pn.name]) if mode is Mode.sideload else None
                report.pulls.append(workload_pull(pod, expected[image], recorded))
            rows_p = [p for p in report.pods if p.mode == mode.value]
            row["detail"] = ", ".join(f"{p.node}: {p.phase}" for p in rows_p)
        with steps.step(f"{mode.value}: the cluster's own images in each node's runtime"
                        ) as row:
            members = parse_nodes(kubectl(boot, "get", "node", "-o", "json").stdout)
            unused: set[str] = set()
            for pn in plan.nodes:
                kube = cluster_member(pn, members)
                if kube is None:
                    continue
                recorded = runtime_digests(nodes[pn.name]) if mode is Mode.sideload else None
                got, missing = cluster_image_pulls(mode, pn.name, kube, expected, {image},
                                                   recorded)
                report.pulls += got
                unused.update(missing)
            row["detail"] = (f"{len(expected) - 1 - len(unused)} of {len(expected) - 1} "
                             "k8s images in use")
            if unused:
                report.notes.append(
                    f"{mode.value}: images.lock images no node's runtime holds (their "
                    f"features are not enabled, nothing pulled them): {', '.join(sorted(unused))}")

    with steps.step("isolation, after the three modes (placeholder route in place)"):
        for rows in _parallel(lambda n: isolation_checks(nodes[n], spec, "after deploy"),
                              names).values():
            report.isolation += rows
