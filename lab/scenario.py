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
report says so. `k8s_snap=True` asks for the full proof with the real snap and
refuses to run where that is impossible.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
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

from airgap import __version__, sideload, tools
from airgap.bundle import load_trust, prepare_bundle, verify_bundle
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
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.images import DOCKER_HUB, parse_image_ref
from airgap.lock import ImageLock, read_lock
from airgap.nodes import Node
from lab import host, lifecycle
from lab.lxd import LXDNode, expose_unix_socket, wait_command, wait_until
from lab.report import IsolationRecord, NegativeRecord, PullRecord, Report, to_json, to_markdown
from lab.topology import PROXY_PORT, UPSTREAM_PORT, InstanceType, LabSpec, Upstream

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
    if not os.environ.get("K8S_AIRGAP_IMAGE_SERVER"):
        out.append("K8S_AIRGAP_IMAGE_SERVER is not set (an LXD image server for the VM "
                   "base image)")
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


def connected_side(st: lifecycle.LabState, spec: LabSpec, work: Path) -> Connected:
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


def mode_plan(spec: LabSpec, st: lifecycle.LabState, work: Path, mode: Mode,
              workload: Path) -> Plan:
    """The lab's plan with access [mode] only, written to work/ for a reader to see."""
    doc = lifecycle.plan_document(spec, Path(st.plan_file).parent)
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


def isolation_checks(node: LXDNode, spec: LabSpec, when: str) -> list[IsolationRecord]:
    """Evidence that the node reaches the upstream only through the proxy.

    Every address used belongs to the lab: the simulated upstream and the proxy.
    """
    up = next((m for m in spec.members if m.role == "upstream"), None)
    target = up.services if up else spec.member("proxy").services
    assert target is not None
    prx = spec.member("proxy")
    rows = []
    r = node.run(["getent", "hosts", "ghcr.io"], check=False, timeout=20)
    rows.append(IsolationRecord(node.name, f"{when}: resolve ghcr.io", not r.ok,
                                f"getent hosts ghcr.io: exit {r.returncode}"
                                + (f" ({r.stdout.strip()})" if r.stdout.strip() else
                                   " (no answer)")))
    r = node.run(["ip", "-4", "route", "get", target], check=False, timeout=20)
    text = (r.stdout.strip() or r.stderr.strip()).splitlines()[0:1]
    seen = text[0] if text else f"exit {r.returncode}"
    rows.append(IsolationRecord(node.name, f"{when}: route to the upstream {target}",
                                not r.ok or " via " not in f" {seen} ",
                                f"ip route get {target}: {seen}"
                                + ("" if not r.ok else " (no gateway: on-link placeholder "
                                   "only, nothing answers there)")))
    url = f"https://{target}:{UPSTREAM_PORT}/v2/"
    r = node.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", url], check=False,
                 timeout=30)
    rows.append(IsolationRecord(node.name, f"{when}: HTTPS to the upstream directly",
                                not r.ok, f"curl {url}: exit {r.returncode}: "
                                + (r.stderr.strip().splitlines() or [""])[-1]))
    if up is not None:
        r = node.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                      "--proxy", f"http://{prx.airgap}:{PROXY_PORT}", "https://ghcr.io/v2/"],
                     check=False, timeout=30)
        code = r.stdout.strip()
        rows.append(IsolationRecord(node.name, f"{when}: control: ghcr.io through the proxy",
                                    r.ok and code in ("200", "401"),
                                    f"HTTP {code or '-'} via {prx.airgap}:{PROXY_PORT} "
                                    "(the upstream is up; only the direct path is closed)"))
    return rows


# --- negative cases --------------------------------------------------------------------


def proxy_log_evidence(proxy_node: LXDNode, node_addresses: Mapping[str, str]
                       ) -> list[IsolationRecord]:
    """squid's access log: the proxy-mode pulls really went through the proxy.

    squid writes a CONNECT line when the tunnel closes; stopping squid (the negative
    case) has closed them all by the time this runs.
    """
    log_text = proxy_node.run(["cat", "/var/log/squid/access.log"], check=False).stdout
    rows = []
    for name, addr in node_addresses.items():
        lines = [ln for ln in log_text.splitlines()
                 if f" {addr} " in f" {ln} " and "CONNECT" in ln]
        hosts = sorted({ln.split("CONNECT", 1)[1].split()[0] for ln in lines})
        rows.append(IsolationRecord(
            name, "proxy mode: squid logged this node's CONNECTs", bool(lines),
            f"{len(lines)} CONNECT line(s) from {addr} to {', '.join(hosts) or '-'}"))
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
        refuse_full_proof_here()
        raise AirgapError(  # pragma: no cover - needs snapd, the Store and VMs
            "--k8s-snap: snapd and VMs are available, but the lab cannot build real-snap "
            "nodes yet (lab.lifecycle configures every node as the runtime stand-in)",
            resolution="Follow the README's full-proof steps by hand: invoke prepare, "
            "lab.up --instance-type vm, deploy, then k8s kubectl get node.")
    if not host.lxd_answers():
        host.setup_host()
    host.initialise(host.client())
    t0 = time.monotonic()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if (lifecycle.LabState.read(lifecycle.state_dir(name, root)) is not None
            or host.client().projects.exists(LabSpec(name=name).project)):
        # Leftovers of an earlier run with this name (only then: down of a lab that was
        # never up would take the blackhole of whatever lab owns its default slot).
        lifecycle.down(lifecycle.spec_from_state(name, root), root=root)
    spec = LabSpec(name=name, nodes=nodes, slot=lifecycle.free_slot(slot),
                   instance_type=InstanceType.auto, upstream=Upstream.simulated)
    report = Report(lab=f"{name} (project {spec.project}, slot {spec.slot}, {spec.block})",
                    runtime="", stand_in=True, started=started)
    steps = _Steps(report, say)
    work = Path(tempfile.mkdtemp(prefix=f"k8s-airgap-prove-{name}-"))
    try:
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
    lock = read_lock(bundle / "images.lock")
    report.images = [i.ref.name for i in lock.images]
    platform = plan_platform(base_plan, None)
    with steps.step("sideload export into the bundle (regctl, through the proxy)") as row, \
            connected.active():
        archives = export_images(select_images(lock.refs(), platform, lock=lock),
                                 bundle / "images", platform)
        row["detail"] = f"{len(archives)} archives, {sum(a.size for a in archives)} bytes"
    with steps.step("prepare again (manifest lists the archives), verify") as row, \
            connected.active():
        prepare_bundle(base_plan, bundle, from_dir=snapdir, trust=trust)
        ver = verify_bundle(bundle, trusted_root=trusted_root)
        row["detail"] = f"verify: {len(ver.rows)} rows ok, trusted root: the lab authority"

    nodes = build_nodes(base_plan)
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
