"""Day 2 in the lab, on real snapd nodes: a delta bundle carried across, a rolling
upgrade, and a node added later.

Four nodes: node-1 and node-2 control planes, node-3 a worker, node-4 a worker added
at the end. The plan is mirror mode with the mirror filled only from bundles
(``mirror --from-bundle``, under ``day2/``). In order:

1. deploy bundle A (k8s 1.36.0) on node-1..3; the site's history records it;
2. prepare B (k8s 1.36.1, whose images.txt adds an image A lacks) ``--since`` A's
   manifest (the site's copy): a delta, signed; pack it, unpack it onto A (the merge),
   verify the delta with ``--base``; a delta verified against the wrong base and an
   upgrade to a bundle that skips a minor version are refused before any change;
3. upgrade to B: the mirror filled from B and every image of B pulled by every node's
   runtime before the first refresh, then node-1, node-2, node-3 one at a time; node-3
   is stopped (made unreachable) as its turn comes: the upgrade stops, the others stay
   healthy (their runtime's unit active, their CRI answering, Ready), node-3 is started
   again and a second run continues;
4. every node runs B (``snap list``), the new image pulls through each node's CRI;
5. node-4 added: refused from bundle A (the cluster runs B), then deployed from B.

The k8s snap is the lab's stand-in (snapd cannot trust the lab's signatures, so deploy
and upgrade run with ``--dangerous`` and compare x-revisions by SHA3-384 and version).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airgap import deploy as deploy_mod
from airgap import sideload
from airgap.bundle import Bundle, load_trust, verify_bundle
from airgap.bundle.pack import pack
from airgap.bundle.signing import sign_manifest
from airgap.bundle.unpack import unpack
from airgap.bundle.verify import SignerPolicy
from airgap.deploy.site import manifest_copy, manifest_digest, read_history
from airgap.deploy.upgrade import UpgradeReport, node_health, upgrade
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.nodes import Node
from airgap.nodes import build as nodeset
from airgap.plan import Mode, Plan
from airgap.plan.images import DOCKER_HUB, parse_image_ref
from airgap.plan.lock import read_lock
from airgap.progress import Say, quiet
from lab import lifecycle, network
from lab.lxd import TRANSPORTS, LXDNode, expose_unix_socket
from lab.plandocs import offline_plan
from lab.proof.connected import connected_side
from lab.proof.evidence import expected_digests
from lab.proof.offline import make_keys
from lab.proof.snapd_evidence import k8s_versions
from lab.proof.standin_proof import _cri_ready, pull_every_image
from lab.proof.steps import Steps, fresh_lab, run_proof
from lab.report import PullRecord, environment
from lab.snapset import signed_snapd_set
from lab.standin import Authority
from lab.topology import DEFAULT_LAB_IMAGES, InstanceType, LabSpec, Runtime, Upstream

NEW_IMAGE = "ghcr.io/canonical/k8s-snap/day2-addon:1.0"  # in B's images.txt, not in A's
SETS = {"A": ("1.36.0", "101"), "B": ("1.36.1", "120"), "skip": ("1.38.0", "150")}
ROLES = ("control-plane", "control-plane", "worker", "worker")
FIRST = ("node-1", "node-2", "node-3")  # deployed at A; node-4 is added at B
UNREACHABLE = "node-3"
PREFIX = "day2"
REPORT_STEM = "day2-report"


@dataclass
class Case:
    case: str
    expected: str
    ok: bool
    detail: str


@dataclass
class Day2Report:
    lab: str
    started: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    delta: dict[str, Any] = field(default_factory=dict)
    images_ready: float | None = None  # seconds into the (second, completing) upgrade
    rollout: list[dict[str, Any]] = field(default_factory=list)  # every run's rows
    health: list[dict[str, str]] = field(default_factory=list)  # others, mid-rollout
    snap_list: dict[str, str] = field(default_factory=dict)  # k8s per node, at the end
    pulls: list[PullRecord] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    # The new image in each node's runtime (ctr, k8s.io) as the first refresh began.
    before_refresh: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.errors and bool(self.pulls) and all(p.ok for p in self.pulls)
                and bool(self.before_refresh)
                and all(v.startswith("sha256:") for v in self.before_refresh.values())
                and bool(self.cases) and all(c.ok for c in self.cases)
                and bool(self.snap_list)
                and all(v.startswith(f"{SETS['B'][0]} ") for v in self.snap_list.values()))


def prove_day2(name: str = "day2", out: Path = Path("reports"), keep: bool = False,
               progress: Say | None = None, *, root: Path | None = None,
               slot: int = 0) -> Day2Report:
    """Run the day-2 proof; the report goes to out/ and is returned (check .ok)."""
    say = progress or quiet
    fresh_lab(name, root)
    spec = LabSpec(name=name, nodes=len(ROLES), slot=network.free_slot(slot),
                   instance_type=InstanceType.auto, upstream=Upstream.simulated,
                   runtime=Runtime.snapd, images=(*DEFAULT_LAB_IMAGES, NEW_IMAGE))
    report = Day2Report(f"{name} (project {spec.project}, slot {spec.slot}, {spec.block})",
                        datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    steps = Steps(report, say)
    run_proof(spec, report, steps, root, keep,
              lambda work: _run(spec, report, steps, work, root, say),
              lambda: write_day2_report(report, out))
    return report


def _run(spec: LabSpec, report: Day2Report, steps: Steps, work: Path, root: Path | None,
         say: Say) -> None:
    with steps.step("lab up (4 snapd nodes)") as row:
        st = lifecycle.up(spec, root=root, progress=lambda m: say(f"  {m}")).state
        row["detail"] = f"{len(st.members)} instances, {st.instance_type}s"
    connected = connected_side(st, spec, work)
    k8s_images = [i for i in spec.images if parse_image_ref(i).registry != DOCKER_HUB]
    workload = work / "workload-images.txt"
    write_atomic(workload, "".join(f"{i}\n" for i in spec.images
                                   if parse_image_ref(i).registry == DOCKER_HUB))
    plan = offline_plan(spec, st, work, workload, PREFIX, roles=ROLES)
    names = [m.name for m in spec.node_members]
    lxd = {n: LXDNode(n, project=spec.project) for n in names}
    nodes = nodeset.build_nodes(plan, transports=TRANSPORTS)
    socks = {n: work / f"cri-{n}.sock" for n in names}
    for n in names:
        expose_unix_socket(spec.project, n, socks[n])

    with steps.step("stand-in snaps A, B and a minor skip, signed by a lab authority") as row:
        authority = Authority.create()
        trusted_root = authority.write_root(work / "lab-root.account-key.assert")
        info = lxd[names[0]].run(["cat", "/usr/lib/snapd/info"]).stdout
        sets = {}
        for label, (version, rev) in SETS.items():
            images = k8s_images if label != "A" else [i for i in k8s_images if i != NEW_IMAGE]
            made = signed_snapd_set(work / f"snaps-{label}", authority, snapd_info=info,
                                    k8s_version=version, k8s_revision=rev, images=images)
            sets[label] = made["k8s"][0].parent
        row["detail"] = ", ".join(f"{k}: k8s {v}" for k, (v, _) in SETS.items())
    trust = load_trust(trusted_root, True)
    keys = make_keys(work)
    signers = SignerPolicy(keys.allowed)

    def verify(b: Path) -> object:
        return verify_bundle(b, trusted_root=trusted_root, signers=signers)

    bundle_a = work / "bundle-A"
    with steps.step("prepare A (k8s 1.36.0) with its images, signed") as row:
        prep = connected.prepare(plan, bundle_a, from_dir=sets["A"], trust=trust)
        sign_manifest(bundle_a, keys.key)
        row["detail"] = f"{len(prep.lock.images)} images; manifest {manifest_digest(bundle_a)}"
    with steps.step("deploy A on node-1..3 (mirror filled from A first)") as row:
        from airgap.mirror.from_bundle import push_bundle

        push_bundle(plan, bundle_a, read_lock(Bundle(bundle_a).lock))
        dep = deploy_mod.deploy(plan, nodes, bundle_a, verify=verify, dangerous=True,
                                only=list(FIRST), record_site=True)
        row["detail"] = "; ".join(f"{n.name}: {'ok' if not n.failed else 'FAILED'}"
                                  for n in dep.nodes)
        if not dep.ok:
            raise AirgapError("deploy of A failed: " + "; ".join(
                f"{n.name} {s.step}: {s.detail}" for n in dep.nodes for s in n.steps
                if s.status.value == "failed"), resolution="Rerun with --keep.")

    merged = _carry_delta(report, steps, connected, plan, sets, trust, keys, signers,
                          bundle_a, work, verify)
    _negatives(report, steps, connected, plan, sets, trust, nodes, bundle_a, merged, work,
               verify)
    _rollout(report, steps, plan, nodes, lxd, socks, merged, verify)
    with steps.step("after the upgrade: snap list, and every image of B through the CRI"):
        report.snap_list = k8s_versions({n: nodes[n] for n in FIRST})
        lock = read_lock(Bundle(merged).lock)
        expected = expected_digests(lock, Mode.mirror, "linux/amd64")
        for n in FIRST:
            _cri_ready(socks[n])
            report.pulls += pull_every_image(Mode.mirror, n, socks[n], expected)
    _add_node(report, steps, plan, nodes, socks, bundle_a, merged, verify)
    report.history = [asdict(r) for r in read_history(plan).events]


def _carry_delta(report: Day2Report, steps: Steps, connected: Any, plan: Plan,
                 sets: Mapping[str, Path], trust: Any, keys: Any, signers: SignerPolicy,
                 bundle_a: Path, work: Path, verify: Callable[[Path], object]) -> Path:
    """B as a delta against the manifest the site's history kept, carried as parts,
    unpacked onto A; the delta verified with --base. The merged full bundle."""
    since = manifest_copy(plan, manifest_digest(bundle_a))
    if since is None:
        raise AirgapError("the site's history kept no copy of A's manifest",
                          resolution="deploy records it; see airgap.deploy.site.")
    delta = work / "delta-B"
    with steps.step("prepare B --since A's manifest (a delta), signed") as row:
        prep = connected.prepare(plan, delta, from_dir=sets["B"], trust=trust, since=since)
        sign_manifest(delta, keys.key)
        layout = Bundle(delta)
        carried = {layout.rel(f): f.stat().st_size
                   for f in [*(delta / p for p in layout.files()), layout.manifest,
                             layout.signature] if f.is_file()}
        full = sum(f.size for f in read_manifest_files(delta).values())
        report.delta = {"base": manifest_digest(bundle_a), "files": sorted(carried),
                        "bytes": sum(carried.values()), "full_bytes": full,
                        "new_image": NEW_IMAGE,
                        "prepare": prep.delta.summary() if prep.delta else "not a delta"}
        row["detail"] = (f"{len(carried)} files, {sum(carried.values())} bytes carried of a "
                         f"{full}-byte bundle")
    with steps.step("verify the delta with --base A") as row:
        ver = verify_bundle(delta, trusted_root=trust_root(work), signers=signers,
                            base=bundle_a)
        row["detail"] = f"{len(ver.rows)} rows ok"
    parts, merged = work / "media", work / "bundle-B"
    with steps.step("pack the delta; unpack it onto A (the full B)") as row:
        pack(delta, parts, 1 << 20)
        un = unpack(parts, merged, base=bundle_a)
        verify(merged)
        row["detail"] = (f"{len(un.parts)} parts; full B verified, manifest "
                         f"{manifest_digest(merged)}")
    return merged


def trust_root(work: Path) -> Path:
    return work / "lab-root.account-key.assert"


def read_manifest_files(bundle: Path) -> dict[str, Any]:
    from airgap.bundle import read_manifest

    return dict(read_manifest(bundle).files)


def _negatives(report: Day2Report, steps: Steps, connected: Any, plan: Plan,
               sets: Mapping[str, Path], trust: Any, nodes: Mapping[str, Node],
               bundle_a: Path, merged: Path, work: Path,
               verify: Callable[[Path], object]) -> None:
    with steps.step("negative: the delta verified against the wrong base") as row:
        delta = work / "delta-B"
        try:
            verify_bundle(delta, trusted_root=trust_root(work), base=merged)
            case = Case("delta on the wrong base", "refused, naming both digests", False,
                        "accepted")
        except AirgapError as exc:
            text = str(exc)
            both = manifest_digest(merged) in text and report.delta["base"] in text
            case = Case("delta on the wrong base", "refused, naming both digests", both,
                        exc.brief)
        report.cases.append(case)
        row["detail"] = case.detail
    with steps.step("negative: upgrade to a bundle that skips a minor version") as row:
        skip = work / "bundle-skip"
        connected.prepare(plan, skip, from_dir=sets["skip"], trust=trust)
        first = {n: nodes[n] for n in FIRST}
        before = k8s_versions(first)
        try:
            upgrade(plan, first, skip, verify=lambda b: verify_bundle(
                b, trusted_root=trust_root(work)), dangerous=True)
            case = Case("minor skip", "refused before any change", False, "accepted")
        except AirgapError as exc:
            same = k8s_versions(first) == before
            case = Case("minor skip", "refused before any change",
                        "skips a minor version" in exc.brief and same,
                        f"{exc.brief}; k8s still {before}")
        report.cases.append(case)
        row["detail"] = case.detail


def _rollout(report: Day2Report, steps: Steps, plan: Plan, nodes: Mapping[str, Node],
             lxd: Mapping[str, LXDNode], socks: Mapping[str, Path], merged: Path,
             verify: Callable[[Path], object]) -> None:
    first = {n: nodes[n] for n in FIRST}
    stopped: list[str] = []

    def hook(node: str, msg: str) -> None:
        if msg.startswith("refreshing") and not report.before_refresh:
            # The first refresh is about to begin: is the new image in every runtime?
            for n in FIRST:
                res = nodes[n].run(["ctr", "-n", "k8s.io", "images", "ls"], check=False)
                found = sideload.parse_ctr_images(res.stdout).get(NEW_IMAGE)
                report.before_refresh[n] = found or "absent"
        if node == UNREACHABLE and msg.startswith("refreshing") and not stopped:
            lxd[node].stop()
            stopped.append(node)

    with steps.step(f"upgrade to B; {UNREACHABLE} made unreachable at its turn") as row:
        rep = upgrade(plan, first, merged, verify=verify, dangerous=True, progress=hook,
                      record_site=True)
        report.rollout += _rows(rep, "first run")
        stopped_ok = (rep.stopped_at == UNREACHABLE and stopped == [UNREACHABLE]
                      and all(r.status == "upgraded" for r in rep.nodes
                              if r.node != UNREACHABLE))
        for n in FIRST:
            if n != UNREACHABLE:
                why = node_health(nodes[n], n)
                _cri_ready(socks[n])
                report.health.append({"node": n, "while": f"{UNREACHABLE} down",
                                      "health": why or "runtime active, CRI answering"})
        others_ok = all(h["health"].startswith("runtime active") for h in report.health)
        report.cases.append(Case(
            f"{UNREACHABLE} unreachable mid-rollout", "the upgrade stops there, the others "
            "stay healthy", stopped_ok and others_ok,
            (rep.error.brief if rep.error else "no error") + "; " + "; ".join(
                f"{h['node']}: {h['health']}" for h in report.health)))
        row["detail"] = report.cases[-1].detail
    with steps.step(f"{UNREACHABLE} started again; upgrade run again (continues)") as row:
        lxd[UNREACHABLE].start()
        rep = upgrade(plan, first, merged, verify=verify, dangerous=True, record_site=True)
        report.rollout += _rows(rep, "second run")
        report.images_ready = rep.images_ready
        status = {r.node: r.status for r in rep.nodes}
        report.cases.append(Case(
            "upgrade run again", f"{UNREACHABLE} refreshed, the others skipped",
            rep.ok and status.get(UNREACHABLE) == "upgraded"
            and all(s == "already" for n, s in status.items() if n != UNREACHABLE),
            ", ".join(f"{n}: {s}" for n, s in status.items())))
        row["detail"] = report.cases[-1].detail


def _rows(rep: UpgradeReport, run: str) -> list[dict[str, Any]]:
    return [{"run": run, "order": r.order, "node": r.node, "role": r.role,
             "from": f"{r.from_version} ({r.from_revision})",
             "to": f"{r.to_version} ({r.to_revision})" if r.to_version else "-",
             "started": None if r.started is None else round(r.started, 1),
             "images_ready": None if rep.images_ready is None else round(rep.images_ready, 1),
             "seconds": round(r.seconds, 1), "status": r.status, "detail": r.detail}
            for r in sorted(rep.nodes, key=lambda r: (r.order or 99, r.node))]


def _add_node(report: Day2Report, steps: Steps, plan: Plan, nodes: Mapping[str, Node],
              socks: Mapping[str, Path], bundle_a: Path, merged: Path,
              verify: Callable[[Path], object]) -> None:
    with steps.step("add node-4 from bundle A (the cluster runs B): refused") as row:
        try:
            deploy_mod.deploy(plan, nodes, bundle_a, verify=verify, dangerous=True,
                              only=["node-4"])
            case = Case("add a node from another bundle", "refused, naming both", False,
                        "accepted")
        except AirgapError as exc:
            case = Case("add a node from another bundle", "refused, naming both",
                        "1.36.1" in exc.brief and "would join with another version"
                        in exc.brief and k8s_versions({"node-4": nodes["node-4"]})["node-4"] ==
                        "none", exc.brief)
        report.cases.append(case)
        row["detail"] = case.detail
    with steps.step("add node-4 from B: joins the running cluster") as row:
        dep = deploy_mod.deploy(plan, nodes, merged, verify=verify, dangerous=True,
                                only=["node-4"], record_site=True)
        now = k8s_versions({"node-4": nodes["node-4"]})["node-4"]
        ready = next((s.detail for s in dep.nodes[0].steps if s.step == "ready"), "?")
        members = deploy_mod.cluster_nodes(nodes["node-1"])
        listed = deploy_mod.cluster_member(plan.node("node-4"), members)
        _cri_ready(socks["node-4"])
        report.snap_list["node-4"] = now
        report.cases.append(Case(
            "add node-4 at B", "installed at B, joined with a fresh token, Ready",
            dep.ok and now.startswith(f"{SETS['B'][0]} ") and listed is not None
            and listed.ready, f"k8s {now}; {ready}; listed: {bool(listed)}"))
        row["detail"] = report.cases[-1].detail


def write_day2_report(report: Day2Report, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = asdict(report)
    data["ok"] = report.ok
    js = write_atomic(out / f"{REPORT_STEM}.json", json.dumps(data, indent=2) + "\n")
    md = write_atomic(out / f"{REPORT_STEM}.md", environment().get_template(
        "day2-report.md.j2").render(report=report, new_image=NEW_IMAGE, sets=SETS))
    return md, js
