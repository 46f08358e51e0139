"""`invoke upgrade`: a rolling refresh of k8s from a verified bundle, offline.

Order, and why:
1. Read every node's k8s (``snap list k8s``) and refuse, before any change, a node that
   is not deployed, a downgrade, and a step of more than one minor version (k8s
   upgrades must not skip a minor; FACTS).
2. Put the new revision's images in place on every node first, for each mode of the
   plan: the mirror filled from the bundle's store (``mirror --from-bundle``) and then
   every image pulled by each node's runtime through hosts.toml; the proxy checked from
   each node for every registry; archives of the images a node lacks built from the
   store, delivered, imported and confirmed. A refresh changes the images the snap
   uses (its images.txt), and a node that cannot fetch them after the refresh is down.
3. Hold automatic refreshes on every node (snapd must not try the store meanwhile).
4. Refresh: ``snap ack`` the new assertions, install the bundle's file (a refresh:
   snapd keeps the cluster's state), control planes one at a time, then workers in
   batches; after each node, wait until it runs the new version with its runtime's
   unit active and answering and Ready in the cluster, and every other member healthy.
5. Stop at the first node that fails: the others keep serving; the report says how to
   continue (run upgrade again: finished nodes are skipped) or roll back (``snap revert
   k8s`` on that node).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle import Bundle, verify_bundle
from airgap.bundle.verify import SignerPolicy
from airgap.deploy.contents import BundleContents, BundleSnap, read_bundle, sha256_of
from airgap.deploy.context import READY_POLL, READY_TIMEOUT, Context
from airgap.deploy.members import cluster_member, cluster_nodes
from airgap.deploy.sideload import default_deliver
from airgap.deploy.site import record
from airgap.deploy.snapstep import (
    HOLD_RENEW_DAYS,
    SnapRow,
    hold_refreshes,
    hold_state,
    installed_sha3,
    k8s_decision,
    snap_row,
    version_key,
)
from airgap.deploy.steps import NodeDeploy, short_error
from airgap.errors import AirgapError
from airgap.nodes import Node
from airgap.plan import CLASSIC_HOSTS_DIR, CONTAINERD_UNIT, Mode, Plan, Role
from airgap.plan.lock import read_lock
from airgap.progress import NodeSay, node_quiet
from airgap.wait import Clock, Sleep, poll

PULL_TIMEOUT = 900.0


@dataclass
class NodeUpgrade:
    """One row of the report."""

    node: str
    role: str
    from_version: str = ""
    from_revision: str = ""
    to_version: str = ""
    to_revision: str = ""
    seconds: float = 0.0
    status: str = "not run"  # upgraded, already, failed, not run
    detail: str = ""
    order: int = 0  # the position in the rollout (1 = first refreshed)
    started: float | None = None  # seconds after the upgrade began that its refresh began


@dataclass
class UpgradeReport:
    bundle: Path
    target: str  # the bundle's k8s version
    nodes: list[NodeUpgrade]
    images: list[str] = field(default_factory=list)  # what each mode's image step did
    error: AirgapError | None = None
    stopped_at: str | None = None
    images_ready: float | None = None  # seconds after the start: every mode's images in place
    began: float = 0.0  # the clock when the upgrade began

    @property
    def ok(self) -> bool:
        return self.error is None

    def node(self, name: str) -> NodeUpgrade:
        return next(n for n in self.nodes if n.node == name)


ImagesStep = Callable[[Plan, Mapping[str, Node], Path], list[str]]


def minor(version: str) -> tuple[int, int] | None:
    """(major, minor) of a k8s snap version (v1.32.2, 1.36.1-rc.1), or None."""
    m = re.match(r"^[vV]?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_versions(rows: Mapping[str, SnapRow | None], target: str) -> None:
    """Refuse, before any change: a node without k8s, a downgrade, a minor skip."""
    absent = [n for n, r in rows.items() if r is None]
    if absent:
        raise AirgapError(
            f"{', '.join(absent)}: k8s is not installed: upgrade changes a running cluster",
            resolution="Deploy those nodes first (`invoke deploy --plan PLAN --bundle "
            "BUNDLE --node NAME`, with the bundle the cluster runs), then upgrade.")
    to = minor(target)
    if to is None:
        raise AirgapError(f"the bundle's k8s version {target!r} is not a version",
                          resolution="Prepare the bundle again from a k8s channel.")
    for name, row in rows.items():
        assert row is not None
        have = minor(row.version)
        if have is None:
            continue
        if version_key(target) < version_key(row.version):
            raise AirgapError(
                f"{name}: runs k8s {row.version}, newer than the bundle's {target}: "
                "upgrade does not downgrade",
                resolution="Use a bundle of the version the cluster runs or newer; to go "
                f"back on one node after a failed refresh, `snap revert k8s` on {name}.")
        if to[0] != have[0] or to[1] > have[1] + 1:
            raise AirgapError(
                f"{name}: runs k8s {row.version}; the bundle's {target} skips a minor "
                f"version (Kubernetes upgrades go one minor at a time)",
                resolution=f"Upgrade to {have[0]}.{have[1] + 1} first: prepare a bundle from "
                f"the {have[0]}.{have[1] + 1} track, upgrade, then this one.")


def upgrade(
    plan: Plan,
    nodes: Mapping[str, Node],
    bundle_dir: Path,
    *,
    batch: int = 1,
    verify: Callable[[Path], object] | None = None,
    trusted_root: Path | None = None,
    check_signatures: bool = True,
    signers: SignerPolicy | None = None,
    dangerous: bool = False,
    images_step: ImagesStep | None = None,
    ready_timeout: float = READY_TIMEOUT,
    poll_every: float = READY_POLL,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    progress: NodeSay = node_quiet,
    record_site: bool = False,
) -> UpgradeReport:
    """Refresh every node of the plan to the bundle's k8s, one at a time (see module)."""
    if batch < 1:
        raise AirgapError(f"--batch {batch}: a batch holds at least one worker",
                          resolution="Pass --batch 1 (the default) or more.")
    if verify is not None:
        verify(bundle_dir)
    else:
        verify_bundle(bundle_dir, trusted_root, check_signatures, signers=signers)
    bundle = read_bundle(bundle_dir)
    k8s = next((s for s in bundle.snaps if s.name == "k8s"), None)
    if k8s is None:
        raise AirgapError(f"{bundle_dir}: the bundle has no k8s snap",
                          resolution="Prepare the bundle with `invoke prepare`.")
    specs = [s for s in plan.nodes if s.name in nodes]
    rows = {s.name: _row(nodes[s.name], s.name) for s in specs}
    target = k8s.version()
    check_versions(rows, target)
    report = UpgradeReport(bundle_dir, target, [
        NodeUpgrade(s.name, s.role.value, (rows[s.name] or _NONE).version,
                    (rows[s.name] or _NONE).rev) for s in specs])
    todo = [s for s in specs if not _same(nodes[s.name], rows[s.name], k8s, s.name)]
    for row in report.nodes:
        if row.node not in {s.name for s in todo}:
            row.status, row.detail = "already", "runs the bundle's k8s"
            row.to_version, row.to_revision = row.from_version, row.from_revision
    if not todo:
        return report
    report.began = clock()
    try:
        report.images = (images_step or bring_images)(plan, nodes, bundle_dir)
        report.images_ready = clock() - report.began
        for s in specs:
            held, how = hold_state(nodes[s.name], renew_within=HOLD_RENEW_DAYS)
            if not held:
                hold_refreshes(nodes[s.name], s.name)
            progress(s.name, "refreshes held" if held else f"held: {how}")
    except AirgapError as exc:
        report.error = exc
        return report
    ctx = _context(plan, bundle, dangerous, ready_timeout, poll_every, sleep, clock, progress)
    order = ([s for s in todo if s.role is Role.control_plane]
             + [s for s in todo if s.role is not Role.control_plane])
    waves: list[list[str]] = [[s.name] for s in order if s.role is Role.control_plane]
    workers = [s.name for s in order if s.role is not Role.control_plane]
    waves += [workers[i:i + batch] for i in range(0, len(workers), batch)]
    for position, name in enumerate((n for wave in waves for n in wave), 1):
        report.node(name).order = position
    for wave in waves:
        failed = _refresh_wave(ctx, nodes, wave, report, k8s, record_site, bundle_dir)
        if failed:
            report.stopped_at = failed
            err = report.error
            left = [r.node for r in report.nodes if r.status == "not run"]
            report.error = AirgapError(
                f"{failed}: the refresh failed ({err.brief if err else '?'}); the upgrade "
                "stopped there" + (f", {', '.join(left)} not refreshed" if left else ""),
                details=err.details if err else None,
                resolution=f"Fix {failed} and run upgrade again (nodes already on {target} "
                f"are skipped), or roll {failed} back with `snap revert k8s` on it.")
            break
    return report


_NONE = SnapRow("k8s", "", "")


def _row(node: Node, name: str) -> SnapRow | None:
    try:
        return snap_row(node, "k8s")
    except AirgapError as exc:
        raise AirgapError(f"{name}: cannot read its k8s (`snap list k8s`): {exc.brief}",
                          resolution=f"Make {name} reachable, then run upgrade again; "
                          "nothing was changed.") from exc


def _same(node: Node, row: SnapRow | None, k8s: BundleSnap, name: str) -> bool:
    if row is None:
        return False
    return k8s_decision(name, row, k8s, lambda: installed_sha3(node, row),
                        k8s.version).action == "keep"


def _context(plan: Plan, bundle: BundleContents, dangerous: bool, ready_timeout: float,
             poll_every: float, sleep: Sleep, clock: Clock, progress: NodeSay) -> Context:
    return Context(plan=plan, bundle=bundle,
                   local_sums={f: sha256_of(f) for f in bundle.files_to_transfer()},
                   hosts_files=[], proxy_files=[], deliver=default_deliver,
                   ready_timeout=ready_timeout, ready_poll=poll_every, sleep=sleep,
                   clock=clock, progress=progress, dangerous=dangerous, refresh=True)


def _refresh_wave(ctx: Context, nodes: Mapping[str, Node], wave: Sequence[str],
                  report: UpgradeReport, k8s: BundleSnap, record_site: bool,
                  bundle_dir: Path) -> str | None:
    """Refresh the nodes of one wave, then wait for them and every other member; the
    name of the first node that failed, or None."""
    started = ctx.clock()
    for name in wave:
        row = report.node(name)
        spec = ctx.plan.node(name)
        run = NodeDeploy(ctx, spec, nodes[name])
        ctx.progress(name, f"refreshing k8s to {report.target}")
        row.started = ctx.clock() - report.began
        for step, fn in (("transfer", run.transfer), ("snaps", run.snaps)):
            if not run.run_step(step, fn):
                row.status, row.detail = "failed", f"{step}: {run.report.steps[-1].detail}"
                row.seconds = ctx.clock() - started
                report.error = run.report.errors[-1]
                return name
    for name in wave:
        row = report.node(name)
        try:
            now = wait_healthy(ctx, nodes, name, report.target)
        except AirgapError as exc:
            row.status, row.detail = "failed", exc.brief
            row.seconds = ctx.clock() - started
            report.error = exc
            return name
        row.status, row.to_version, row.to_revision = "upgraded", now.version, now.rev
        row.seconds = ctx.clock() - started
        row.detail = "Ready; runtime active and answering; every member healthy"
        if record_site:
            record(ctx.plan, bundle_dir, [name], version=now.version, revision=now.rev,
                   task="upgrade")
    return None


def node_health(node: Node, name: str) -> str:
    """"" when the node's runtime unit is active and its runtime answers, else why not."""
    try:
        unit = node.run(["systemctl", "is-active", f"{CONTAINERD_UNIT}.service"],
                        check=False, timeout=30)
        if unit.stdout.strip() != "active":
            return f"{CONTAINERD_UNIT} is {unit.stdout.strip() or 'not active'}"
        ctr = node.run(["ctr", "version"], check=False, timeout=30)
        if not ctr.ok:
            return "the runtime does not answer (`ctr version` failed)"
    except AirgapError as exc:
        return f"unreachable: {short_error(exc)}"
    return ""


def wait_healthy(ctx: Context, nodes: Mapping[str, Node], name: str, target: str) -> SnapRow:
    """Until ``name`` runs ``target`` with its runtime up and is Ready, and every other
    member is healthy; the node's k8s row. AirgapError naming what was last wrong."""
    plan = ctx.plan
    asker = next((nodes[s.name] for s in plan.nodes
                  if s.role is Role.control_plane and s.name in nodes and s.name != name),
                 nodes[name])
    last: list[str] = []
    now: list[SnapRow] = []

    def look() -> bool:
        last.clear()
        try:
            row = snap_row(nodes[name], "k8s")
        except AirgapError as exc:
            last.append(f"{name} unreachable: {short_error(exc)}")
            return False
        if row is None or version_key(row.version) != version_key(target):
            last.append(f"{name} runs k8s {row.version if row else 'nothing'}, not {target}")
            return False
        now[:] = [row]
        for s in plan.nodes:
            if s.name in nodes and (why := node_health(nodes[s.name], s.name)):
                last.append(f"{s.name}: {why}")
        if last:
            return False
        members = cluster_nodes(asker)
        for s in plan.nodes:
            if s.name not in nodes:
                continue
            m = cluster_member(s, members)
            if m is None or not m.ready:
                last.append(f"{s.name} is {'not Ready' if m else 'not listed'} in the cluster")
        return not last

    _, ok = poll(look, bool, timeout=ctx.ready_timeout, interval=ctx.ready_poll,
                 clock=ctx.clock, sleep=ctx.sleep,
                 between=lambda _: ctx.progress(name, "waiting: " + "; ".join(last[:2])))
    if not ok:
        raise AirgapError(
            f"{name}: not healthy {ctx.ready_timeout:.0f} s after the refresh: "
            + "; ".join(last[:3]),
            resolution=f"On {name}: `snap changes`, `snap services k8s`, `journalctl -u "
            f"{CONTAINERD_UNIT}`.")
    return now[0]


# --- the images, before any refresh --------------------------------------------------


def bring_images(plan: Plan, nodes: Mapping[str, Node], bundle_dir: Path) -> list[str]:
    """The bundle's images made available to every node, for each mode of the plan,
    and checked from the nodes. What was done, a line per mode."""
    lock = read_lock(Bundle(bundle_dir).lock)
    done: list[str] = []
    if plan.has(Mode.mirror):
        from airgap.mirror.from_bundle import push_bundle

        rep = push_bundle(plan, Path(bundle_dir), lock)
        sent = sum(i.bytes_copied for i in rep.images)
        done.append(f"mirror: {len(rep.images)} images verified in the mirror "
                    f"({sent} bytes pushed from the bundle)")
        for name, node in nodes.items():
            pulled = pull_through_runtime(node, name, [str(i.ref) for i in lock.images])
            done.append(f"{name}: {pulled} images pulled by the runtime through hosts.toml")
    if plan.has(Mode.proxy):
        from airgap.preflight.access import check_proxy
        from airgap.preflight.report import CheckStatus

        for name, node in nodes.items():
            bad = [c for c in check_proxy(node, plan, lock.refs())
                   if c.status is CheckStatus.fail]
            if bad:
                raise AirgapError(f"{name}: {bad[0].name}: {bad[0].detail}",
                                  resolution=f"{bad[0].fix}; then run upgrade again (nothing "
                                  "was refreshed).")
        done.append(f"proxy: every registry of images.lock reachable from {len(nodes)} nodes")
    if plan.has(Mode.sideload):
        done += _sideload_missing(plan, nodes, Path(bundle_dir), lock)
    return done


def pull_through_runtime(node: Node, name: str, refs: Sequence[str]) -> int:
    """Each image pulled into the runtime's k8s.io namespace with the node's hosts.toml
    (the mirror); an image already there costs one manifest request."""
    from airgap.sideload import ctr_command

    ctr = ctr_command(node)
    for ref in refs:
        res = node.run([*ctr, "-n", "k8s.io", "images", "pull", "--hosts-dir",
                        CLASSIC_HOSTS_DIR, ref], check=False, timeout=PULL_TIMEOUT)
        if not res.ok:
            last = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["?"]
            raise AirgapError(
                f"{name}: cannot pull {ref} through the mirror: {last[0]}",
                resolution="Check the mirror (`invoke mirror --from-bundle` then `invoke "
                "preflight`), then run upgrade again; nothing was refreshed.")
    return len(refs)


def _sideload_missing(plan: Plan, nodes: Mapping[str, Node], bundle_dir: Path,
                      lock: object) -> list[str]:
    import tempfile

    from airgap.plan.lock import ImageLock
    from airgap.sideload import ctr_command, parse_ctr_images, plan_platform
    from airgap.sideload.from_store import archive_from_store
    from airgap.sideload.select import select_images

    assert isinstance(lock, ImageLock)
    platform = plan_platform(plan, None)
    wanted = select_images(lock.refs(), platform, lock=lock)
    missing: dict[str, list[str]] = {}
    for name, node in nodes.items():
        res = node.run([*ctr_command(node), "-n", "k8s.io", "images", "ls"], timeout=60)
        have = parse_ctr_images(res.stdout)
        for img in wanted:
            if have.get(str(img.ref)) != img.expected_digest:
                missing.setdefault(str(img.ref), []).append(name)
    if not missing:
        return [f"sideload: every image already in the runtime of {len(nodes)} nodes"]
    images = [i for i in wanted if str(i.ref) in missing]
    lines = []
    with tempfile.TemporaryDirectory(prefix="upgrade-sideload-") as tmp:
        reports = archive_from_store(bundle_dir, lock, images, Path(tmp), platform)
        archives = [r.path for r in reports]
        for name in sorted({n for ns in missing.values() for n in ns}):
            outcome = default_deliver(plan, nodes[name], archives)
            if outcome == "pending":
                raise AirgapError(f"{name}: its runtime is not running: the archives would "
                                  "be imported only when it starts",
                                  resolution=f"On {name}: `snap start k8s`; then run upgrade "
                                  "again.")
            lines.append(f"{name}: side-loaded {len(images)} image(s) ({outcome})")
    return lines

