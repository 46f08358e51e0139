"""The three image-access modes, end to end in a fresh lab, with their assertions.

`invoke lab.prove` and `nox -s e2e` both call :func:`prove`. It brings a lab up,
prepares a bundle with the product's own code, and then for each mode (proxy,
mirror, sideload), on a clean runtime, configures every node with `deploy` and
pulls every image of images.lock through the node's CRI socket, as kubelet would.
It shows that the nodes cannot reach the upstream directly, runs one negative case
per mode, writes the report (Markdown and JSON) and brings the lab down, also on
failure. The connected side (lab/proof/connected.py) is this machine behind the
lab's proxy.

The k8s snap cannot be downloaded here: the bundle holds stand-in snaps built by
lab/standin.py and signed by a lab authority, which prepare and verify check
exactly as they check Canonical's; the nodes run the lab's runtime stand-in. The
report says so. ``prove(k8s_snap=True)`` runs the full proof with the real snap
instead (lab/proof/realsnap_proof.py), and never falls back to the stand-in.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from airgap import __version__, sideload, tools
from airgap import deploy as deploy_mod
from airgap.bundle import Bundle, load_trust, verify_bundle
from airgap.cri import CRIClient
from airgap.deploy.steps import short_error
from airgap.errors import AirgapError, CommandError
from airgap.fanout import fan_out, fan_out_by
from airgap.fileio import write_atomic
from airgap.nodes import Node
from airgap.nodes import build as nodeset
from airgap.plan import CLASSIC_HOSTS_DIR, CONTAINERD_UNIT, PROXY_DROPIN, SIDELOAD_DIR, Mode, Plan
from airgap.plan.images import DOCKER_HUB, parse_image_ref
from airgap.plan.lock import read_lock
from airgap.progress import Say, quiet
from lab import host, lifecycle, network, state
from lab.lxd import TRANSPORTS, LXDNode, expose_unix_socket, wait_command, wait_until
from lab.plandocs import mode_plan, offline_plan
from lab.proof import realsnap_proof
from lab.proof.connected import connected_side
from lab.proof.evidence import (
    MISSING_IMAGE,
    expected_digests,
    isolation_checks,
    negative_mirror_miss,
    negative_proxy_down,
    negative_unnamed_archive,
    proxy_log_evidence,
)
from lab.proof.offline import NEGATIVE_PREFIX, PREFIX, Hooks, OfflineRun, prove_offline
from lab.proof.snapd_evidence import (
    REAL_PARTS,
    SNAP_SETS,
    STAND_IN_PARTS,
    deploy_cases,
    snapd_record,
)
from lab.proof.steps import MODES, Steps, lab_down_step
from lab.report import ClusterNodeRecord, PullRecord, Report, to_json, to_markdown
from lab.snapset import signed_snapd_set
from lab.standin import Authority
from lab.state import LabState
from lab.topology import (
    PROXY_PORT,
    REGISTRY_HTTPS_PORT,
    InstanceType,
    LabSpec,
    Runtime,
    Upstream,
)

log = logging.getLogger(__name__)

STAND_IN_SNAPS = ("stand-in snaps, signed by a lab authority: the real k8s snap could not "
                  "be downloaded here")
REPORT_STEM = "e2e-report"
CRI_READY_TIMEOUT = 60.0

RESET_SCRIPT = f"""set -e
unit={CONTAINERD_UNIT}.service
was=stopped
if systemctl is-active --quiet "$unit"; then was=active; systemctl stop "$unit"; fi
# Mounts a stopped containerd may leave under its root (snapshots, tmpmounts).
grep -o ' /var/lib/containerd[^ ]*' /proc/self/mountinfo | sort -r | xargs -r umount -l
rm -rf {CLASSIC_HOSTS_DIR} /var/lib/containerd
rm -f {PROXY_DROPIN} {SIDELOAD_DIR}/*.tar {SIDELOAD_DIR}/*.tar.loaded
mkdir -p {CLASSIC_HOSTS_DIR} {SIDELOAD_DIR}
systemctl daemon-reload
if [ "$was" = active ]; then systemctl start "$unit"; fi
echo "$was"
"""


def reset_runtime(node: LXDNode) -> bool:
    """A clean runtime: no registry config, no proxy, no images, no content. Started
    again if it ran (on snapd nodes it does not before the first deploy installs k8s);
    True if it runs."""
    try:
        res = node.run(["sh", "-c", RESET_SCRIPT], timeout=120)
    except CommandError as exc:
        raise AirgapError(f"{node.name}: resetting the runtime failed: {short_error(exc)}",
                          resolution="Rerun with --keep and look at the node "
                          f"(`invoke lab.shell {node.name}`).") from None
    if res.stdout.strip() != "active":
        return False
    wait_command(node, ["ctr", "version"], f"{CONTAINERD_UNIT} after the reset",
                 timeout=CRI_READY_TIMEOUT)
    return True


def _cri_ready(sock: Path) -> None:
    def answers() -> bool:
        try:
            with CRIClient(sock, timeout=5) as cri:
                cri.version()
            return True
        except AirgapError:
            return False

    wait_until(f"the CRI on {sock}", answers, timeout=CRI_READY_TIMEOUT)


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
    progress: Say | None = None,
    *,
    root: Path | None = None,
    slot: int = 0,
) -> Report:
    """Run the whole proof; the report is written to out/ and returned (check .ok)."""
    say = progress or quiet
    if k8s_snap:
        realsnap_proof.refuse_full_proof_here()  # never falls back to the stand-in
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
                   runtime=Runtime.k8s_snap if k8s_snap else Runtime.snapd)
    report = Report(lab=f"{name} (project {spec.project}, slot {spec.slot}, {spec.block})",
                    runtime="", stand_in=not k8s_snap, started=started)
    steps = Steps(report, say)
    work = Path(tempfile.mkdtemp(prefix=f"k8s-airgap-prove-{name}-"))
    try:
        if k8s_snap:
            realsnap_proof.run_real(spec, report, steps, work, root, say,
                                    os.environ[realsnap_proof.IMAGE_SERVER_ENV])
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
            lab_down_step(steps, report.errors, spec, root)
            shutil.rmtree(work, ignore_errors=True)
        report.seconds = round(time.monotonic() - t0, 1)
        write_report(report, out)
    return report


def _run(spec: LabSpec, report: Report, steps: Steps, work: Path, root: Path | None,
         say: Say) -> None:
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

    names = [m.name for m in spec.node_members]
    lxd_nodes = {n: LXDNode(n, project=spec.project) for n in names}
    with steps.step("stand-in snaps (k8s, core22, snapd) signed by a lab authority") as row:
        authority = Authority.create()
        trusted_root = authority.write_root(work / "lab-root.account-key.assert")
        info = lxd_nodes[names[0]].run(["cat", "/usr/lib/snapd/info"]).stdout
        sets = {}
        for label, (version, rev) in SNAP_SETS.items():
            made = signed_snapd_set(work / f"snaps-{label}", authority, snapd_info=info,
                                    k8s_version=version, k8s_revision=rev, images=k8s_images)
            sets[label] = made["k8s"][0].parent
        row["detail"] = ", ".join(f"{label}: k8s {v} (assertion revision {r})"
                                  for label, (v, r) in SNAP_SETS.items())
    snapdir = sets["main"]
    version, rev = SNAP_SETS["main"]
    report.snaps = (f"stand-in snaps: k8s {version} (assertion revision {rev}), core22 and "
                    "snapd, signed by a lab authority; snapd does not trust it, so deploy "
                    "installed them with --dangerous (x-revisions): the real k8s snap "
                    "could not be downloaded here")
    trust = load_trust(trusted_root, True)
    bundle = work / "bundle"
    base_plan = plans[Mode.proxy]
    with steps.step("prepare (snaps from --from, images.lock through the proxy)") as row:
        prep = connected.prepare(base_plan, bundle, from_dir=snapdir, trust=trust)
        row["detail"] = (", ".join(f"{p.snap.name}={p.snap.revision} ({p.action})"
                                   for p in prep.snaps)
                         + f"; {len(prep.lock.images)} images {prep.images_action}")
    lock = read_lock(Bundle(bundle).lock)
    report.images = [i.ref.name for i in lock.images]
    platform = sideload.plan_platform(base_plan, None)
    with steps.step("sideload export into the bundle (regctl, through the proxy)") as row:
        archives = connected.export_archives(lock, platform, bundle)
        row["detail"] = f"{len(archives)} archives, {sum(a.size for a in archives)} bytes"
    with steps.step("prepare again (manifest lists the archives), verify") as row, \
            connected.active():
        connected.prepare(base_plan, bundle, from_dir=snapdir, trust=trust)
        ver = verify_bundle(bundle, trusted_root=trusted_root)
        row["detail"] = f"verify: {len(ver.rows)} rows ok, trusted root: the lab authority"

    nodes = nodeset.build_nodes(base_plan, transports=TRANSPORTS)
    report.nodes = names
    socks = {n: work / f"cri-{n}.sock" for n in names}
    for n in names:
        expose_unix_socket(spec.project, n, socks[n])

    with steps.step("isolation, before deploy (no default route)"):
        for rows in fan_out(lambda n: isolation_checks(lxd_nodes[n], spec, "before deploy"),
                            names, limit=len(names)):
            report.isolation += rows

    def verify(b: Path) -> object:
        return verify_bundle(b, trusted_root=trusted_root)

    for mode in MODES:
        plan = plans[mode]
        report.modes.append(mode.value)
        with steps.step(f"{mode.value}: clean runtime on every node") as row:
            running = fan_out(lambda n: reset_runtime(lxd_nodes[n]), names, limit=len(names))
            for n, runs in zip(names, running, strict=True):
                if runs:
                    _cri_ready(socks[n])
            if not any(running):
                row["detail"] = "k8s not installed yet: nothing runs"
        if mode is Mode.mirror:
            with steps.step("mirror: fill the lab registry (regsync through the proxy)") as row:
                mrep = connected.fill_mirror(plan, lock)
                row["detail"] = (f"{len(mrep.images)} images, {mrep.bytes_copied} bytes copied, "
                                 f"regsync ran: {mrep.regsync_ran}")
        with steps.step(f"{mode.value}: deploy (dangerous: the lab's snaps)") as row:
            dep = deploy_mod.deploy(plan, nodes, bundle, verify=verify, dangerous=True)
            row["detail"] = "; ".join(
                f"{nr.name}: " + ", ".join(f"{s.step}={s.status.value}" for s in nr.steps)
                for nr in dep.nodes)
            if not dep.ok:
                bad = [f"{nr.name} {s.step}: {s.detail}" for nr in dep.nodes for s in nr.steps
                       if s.status.value == "failed"]
                raise AirgapError(f"{mode.value}: deploy failed: " + "; ".join(bad),
                                  resolution="Rerun with --keep and inspect the node with "
                                  "`invoke lab.shell NODE` (journalctl -u "
                                  f"{CONTAINERD_UNIT}).")
        for n in names:
            _cri_ready(socks[n])
        report.cluster += cluster_records(mode.value, nodes[names[0]])
        if not report.tools:
            report.tools = tool_versions(socks[names[0]])
            report.runtime = f"{st.runtime}; {report.tools['containerd (CRI Version)']}"
        expected = expected_digests(lock, mode, platform)
        with steps.step(f"{mode.value}: every image on every node through the CRI") as row:
            got = fan_out_by(functools.partial(_pull_node, mode, socks, expected, nodes),
                             names, limit=len(names))
            for n in names:
                report.pulls += got[n]
            pulled = [p for p in report.pulls if p.mode == mode.value]
            row["detail"] = f"{sum(p.ok for p in pulled)}/{len(pulled)} ok"
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

    last = offline_mode(spec, st, work, workload, bundle, trusted_root, report, steps, nodes,
                        functools.partial(_pull_node, Mode.mirror, socks,
                                          expected_digests(lock, Mode.mirror, platform), nodes),
                        lambda n: _reset_and_wait(lxd_nodes[n], socks[n]))
    with steps.step("isolation, after the four modes (placeholder route in place)"):
        for rows in fan_out(lambda n: isolation_checks(lxd_nodes[n], spec, "after deploy"),
                            names, limit=len(names)):
            report.isolation += rows
    deploy_cases(report, steps, connected, plans, sets, last, work, nodes, trust, verify)
    with steps.step("snapd on each node: snap version, snap list, the runtime's unit"):
        report.snapd = [snapd_record(n, nodes[n]) for n in names]
    report.real_parts, report.stand_in_parts = list(REAL_PARTS), list(STAND_IN_PARTS)


def offline_mode(spec: LabSpec, st: LabState, work: Path, workload: Path, bundle: Path,
                 trusted_root: Path, report: Report, steps: Steps, nodes: Mapping[str, Node],
                 pull: Callable[[str], list[PullRecord]], reset: Callable[[str], None],
                 ) -> tuple[Plan, Path]:
    """The fourth mode (lab/proof/offline.py); the plan and bundle it deployed last."""
    reg = spec.member("registry")
    plans = {p: offline_plan(spec, st, work, workload, p) for p in (PREFIX, NEGATIVE_PREFIX)}
    run = OfflineRun(spec, work, bundle, Path(plans[PREFIX].source),
                     Path(plans[NEGATIVE_PREFIX].source), st.ca_file,
                     f"{reg.airgap}:{REGISTRY_HTTPS_PORT}")
    prove_offline(run, report, steps, nodes, trusted_root, Hooks(reset, pull))
    return plans[PREFIX], work / "inside" / "bundle"


def _reset_and_wait(node: LXDNode, sock: Path) -> None:
    if reset_runtime(node):
        _cri_ready(sock)


def cluster_records(mode: str, node: Node) -> list[ClusterNodeRecord]:
    """The stand-in CLI's `k8s kubectl get node -o json`, as deploy's Ready wait read it."""
    return [ClusterNodeRecord(mode, c.name, c.ready, c.version,
                              "k8s stand-in CLI: kubectl get node")
            for c in deploy_mod.cluster_nodes(node)]


def tool_versions(sock: Path) -> dict[str, str]:
    with CRIClient(sock) as cri:
        v = cri.version()
    return {
        "k8s-airgap": __version__,
        "regctl": tools.tool_version(tools.find_tool("regctl")) or "?",
        "regsync": tools.tool_version(tools.find_tool("regsync")) or "?",
        "containerd (CRI Version)": f"{v.runtime_name} {v.runtime_version} "
                                    f"(CRI {v.runtime_api_version})",
        "lxd": str(host.client().host_info.get("environment", {}).get("server_version", "?")),
    }
