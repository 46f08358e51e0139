"""The full proof with the real k8s snap (`invoke lab.prove --k8s-snap`).

It refuses to start where that is impossible (no snapd to download from the Snap
Store, no VM support, no image server: :func:`full_proof_blockers`, decided from local
facts only) and never falls back to the stand-in. Where it can run, the lab's nodes
are Ubuntu VMs with no stand-in, the upstream is the real internet behind the lab's
NAT'd proxy, and `prepare` runs the real `snap download` (no --from) checked against
Canonical's root. Then, for each mode in turn (proxy, mirror, sideload), on a cluster
that did not exist before: `deploy` installs snapd, the base and k8s from the bundle,
configures the runtime for that mode alone, bootstraps node-1, joins the others and
waits for Ready; `k8s kubectl get node -o json` must list every node Ready (recorded
with its kubelet version); one workload pod per node (``kubectl run
--image-pull-policy=IfNotPresent --restart=Never``, pinned to the node) must reach
Succeeded or Running, its image pulled by kubelet through the mode, with its image ID
recorded and checked against images.lock; the images kubelet reports in each node's
status are checked too. The pods are deleted, and before the next mode the cluster is
removed (`snap remove --purge k8s` on every node, plus the runtime's image store and
the mode's files), so each mode proves itself from scratch rather than from images an
earlier mode brought. Re-deploying per mode costs a few minutes each; configuring all
three modes on one cluster would be faster but could not say which mode served a pull.
The negative cases (proxy down, mirror miss, unnamed archive) exercise containerd's
behaviour and run in the stand-in proof; the real-snap report says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from airgap import __version__, sideload, tools
from airgap import deploy as deploy_mod
from airgap.bundle import Bundle, PrepareReport, load_trust, verify_bundle
from airgap.deploy import ClusterNode, cluster_member, parse_nodes
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.fileio import write_atomic
from airgap.nodes import Node
from airgap.nodes import build as nodeset
from airgap.plan import CLASSIC_HOSTS_DIR, PROXY_DROPIN, Mode
from airgap.plan.images import DOCKER_HUB, parse_image_ref
from airgap.plan.lock import read_lock
from airgap.progress import Say
from lab import host, lifecycle
from lab.lxd import TRANSPORTS
from lab.plandocs import mode_plan
from lab.proof.connected import connected_side
from lab.proof.evidence import expected_digests, isolation_checks
from lab.proof.kubectl import cluster_records, image_id_digest, kubectl, run_workload_pod
from lab.proof.steps import MODES, Steps
from lab.report import PodRecord, PullRecord, Report
from lab.topology import LabSpec

SNAPD_SOCKET = Path("/run/snapd.socket")
IMAGE_SERVER_ENV = "K8S_AIRGAP_IMAGE_SERVER"
REAL_SNAPS = ("the real k8s snap, its base and snapd, downloaded from the Snap Store "
              "(snap download) and verified against Canonical's root")
REAL_NEGATIVES_NOTE = ("Negative cases (proxy down, mirror miss, archive without --name) are "
                       "not repeated on the real snap: they exercise containerd's behaviour "
                       "and run in the stand-in proof (invoke lab.prove without --k8s-snap).")
SNAP_REMOVE_TIMEOUT = 900.0
# Steps deploy must have run for real on a real-snap node (never skipped).
REAL_STEPS = ("transfer", "snaps", "ready")
INSPECT_NODES = ("Rerun with --keep and inspect the nodes with `invoke lab.shell NODE` "
                 "(`snap logs k8s`, `k8s status`).")


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
        if nr.dangerous:
            out.append(f"{nr.name}: installed with --dangerous: {', '.join(nr.dangerous)}")
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


def run_real(spec: LabSpec, report: Report, steps: Steps, work: Path, root: Path | None,
             say: Say, image_server: str) -> None:
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
                    "proxy)") as row:
        prep = connected.prepare(base_plan, bundle, trust=trust)
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
    with steps.step("sideload export into the bundle (regctl, through the proxy)") as row:
        archives = connected.export_archives(lock, platform, bundle)
        row["detail"] = f"{len(archives)} archives"
    with steps.step("prepare again (manifest lists the archives), verify") as row, \
            connected.active():
        connected.prepare(base_plan, bundle, trust=trust)
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
        for rows in fan_out(lambda n: isolation_checks(nodes[n], spec, "before deploy"),
                            names, limit=len(names)):
            report.isolation += rows

    for i, mode in enumerate(MODES):
        plan = plans[mode]
        report.modes.append(mode.value)
        if i:
            with steps.step(f"{mode.value}: remove the previous cluster (snap remove --purge "
                            "k8s on every node)"):
                fan_out(lambda n: remove_cluster(nodes[n]), names, limit=len(names))
        if mode is Mode.mirror:
            with steps.step("mirror: fill the lab registry (regsync through the proxy)") as row:
                mrep = connected.fill_mirror(plan, lock)
                row["detail"] = f"{len(mrep.images)} images"
        with steps.step(f"{mode.value}: deploy (snaps, runtime, bootstrap, join, Ready)") as row:
            dep = deploy_mod.deploy(plan, nodes, bundle, verify=verify_bundle)
            row["detail"] = "; ".join(
                f"{nr.name}: " + ", ".join(f"{s.step}={s.status.value}" for s in nr.steps)
                for nr in dep.nodes)
            problems = real_deploy_problems(dep)
            if problems:
                raise AirgapError(f"{mode.value}: deploy did not bring the real snap up: "
                                  + "; ".join(problems), resolution=INSPECT_NODES)
        with steps.step(f"{mode.value}: k8s kubectl get node -o json") as row:
            members = parse_nodes(kubectl(boot, "get", "node", "-o", "json").stdout)
            rows_c = cluster_records(mode, plan, members)
            report.cluster += rows_c
            row["detail"] = ", ".join(f"{c.node}={'Ready' if c.ready else 'NOT Ready'} "
                                      f"{c.version}" for c in rows_c)
            if not all(c.ready for c in rows_c):
                raise AirgapError(f"{mode.value}: not every node is Ready: {row['detail']}",
                                  resolution=INSPECT_NODES)
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
        for rows in fan_out(lambda n: isolation_checks(nodes[n], spec, "after deploy"),
                            names, limit=len(names)):
            report.isolation += rows
