"""deploy(): verify the bundle, render what the plan's modes need, prepare every node in
parallel, form the cluster, then confirm images side-loaded before containerd ran."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from airgap.bundle import Bundle, verify_bundle
from airgap.bundle.verify import SignerPolicy
from airgap.deploy.cluster import form_cluster
from airgap.deploy.contents import BundleContents, read_bundle, sha256_of
from airgap.deploy.context import (
    CONFIRM_TIMEOUT,
    READY_POLL,
    READY_TIMEOUT,
    Context,
    Deliver,
)
from airgap.deploy.members import is_member
from airgap.deploy.report import DeployReport, StepStatus
from airgap.deploy.sideload import confirm_sideloaded, default_deliver
from airgap.deploy.site import read_history, record
from airgap.deploy.snapstep import installed_sha3, k8s_decision, snap_row
from airgap.deploy.steps import NodeDeploy
from airgap.errors import AirgapError
from airgap.fanout import fan_out_by
from airgap.nodes import Node
from airgap.plan import Mode, Plan, check_mirror_paths, mirror_ca_pem
from airgap.plan.images import registries
from airgap.progress import NodeSay
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files
from airgap.render.proxy import render_proxy_dropin
from airgap.wait import Clock, Sleep


def deploy(
    plan: Plan,
    nodes: Mapping[str, Node],
    bundle_dir: Path,
    *,
    verify: Callable[[Path], object] | None = None,
    trusted_root: Path | None = None,
    check_signatures: bool = True,
    deliver: Deliver | None = None,
    confirm_timeout: float = CONFIRM_TIMEOUT,
    ready_timeout: float = READY_TIMEOUT,
    poll: float = READY_POLL,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    parallel: int = 8,
    on_progress: NodeSay | None = None,
    dangerous: bool = False,
    signers: SignerPolicy | None = None,
    only: Sequence[str] | None = None,
    record_site: bool = False,
) -> DeployReport:
    """Deploy the plan's nodes from ``bundle_dir``. Failures are in the report, not raised.

    Only input errors (bad bundle, bundle verification, unknown node) raise AirgapError,
    before any node is touched. The bundle is verified first, with ``trusted_root`` and
    ``check_signatures`` as `invoke verify` takes them (``verify`` replaces that check).
    ``signers`` checks the bundle's SSH signature too (the task always passes it).
    ``dangerous`` installs snaps whose assertions snapd refuses with ``--dangerous``
    (the lab's stand-in snaps); each report names them.
    ``only``: deploy just these of ``nodes`` (adding a node later); the others, the
    bootstrap node among them, are asked only for the cluster's revision and a join
    token. A new node joins only a cluster that runs exactly the bundle's k8s.
    ``record_site``: record in the site's history (airgap.deploy.site) which bundle each
    node that ends Ready runs.
    """
    if verify is not None:
        verify(bundle_dir)
    else:
        verify_bundle(bundle_dir, trusted_root, check_signatures, signers=signers)
    bundle = read_bundle(bundle_dir)
    targets = set(only) if only is not None else set(nodes)
    specs = [n for n in plan.nodes if n.name in nodes and n.name in targets]
    missing = [n for n in [*nodes, *targets] if n not in {s.name for s in plan.nodes}]
    if missing:
        raise AirgapError(
            f"{plan.source}: no node named {missing[0]!r}",
            resolution="Use a node name from the plan ("
            + ", ".join(n.name for n in plan.nodes) + f"), or add that node to {plan.source}.",
        )

    hosts_files: list[RenderedFile] = []
    if plan.has(Mode.mirror):
        if not bundle.images:
            raise AirgapError(
                f"{bundle_dir}: images.lock is missing or empty; mirror mode needs the list "
                "of upstream registries to write hosts.toml for",
                resolution="Run `invoke prepare --bundle DIR` to write images.lock.",
            )
        check_mirror_paths(plan, list(bundle.images))
        hosts_files = render_hosts_files(plan, registries(bundle.images), mirror_ca_pem(plan))
    if plan.has(Mode.sideload) and not bundle.archives and len(plan.access) == 1:
        # With proxy or mirror access too, images still arrive; the runtime step says
        # that nothing was side-loaded. With sideload alone, no image would.
        raise AirgapError(
            f"{bundle_dir}: no images/*.tar; the plan's only access mode is sideload, so "
            "no image would reach the nodes",
            resolution="Export the archives into the bundle with `invoke sideload --bundle "
            f"{bundle_dir}` (they go to {Bundle(bundle_dir).images_dir}), or remove sideload "
            "from the plan's access.",
        )
    proxy_files = [render_proxy_dropin(plan)] if plan.has(Mode.proxy) else []

    ctx = Context(
        plan=plan,
        bundle=bundle,
        local_sums={f: sha256_of(f) for f in bundle.files_to_transfer()},
        hosts_files=hosts_files,
        proxy_files=proxy_files,
        deliver=deliver or default_deliver,
        confirm_timeout=confirm_timeout,
        ready_timeout=ready_timeout,
        ready_poll=poll,
        sleep=sleep,
        clock=clock,
        parallel=parallel,
        progress=on_progress or (lambda _node, _msg: None),
        dangerous=dangerous,
    )
    runs = {s.name: NodeDeploy(ctx, s, nodes[s.name]) for s in specs}
    cluster = {n: node for n, node in nodes.items() if n not in runs}
    check_cluster_revision(plan, nodes, runs, bundle)

    def prepare(name: str) -> bool:
        ctx.progress(name, "preparing")
        ok = runs[name].prepare()
        ctx.progress(name, "prepared" if ok else "failed")
        return ok

    prepared = fan_out_by(prepare, runs, limit=parallel, name="deploy")
    form_cluster(ctx, runs, prepared, cluster)
    for run in runs.values():
        if not prepared[run.spec.name]:
            step = "bootstrap" if run.spec.name == plan.control_plane.name else "join"
            run.report.add(step, StepStatus.not_run, "an earlier step on this node failed")
            run.report.add("ready", StepStatus.not_run, "an earlier step on this node failed")
    confirm_sideloaded(ctx, runs)
    report = DeployReport([r.report for r in runs.values()])
    if record_site:
        joined = plan.control_plane.name not in runs  # a running cluster, not formed here
        _record(plan, bundle_dir, runs, task="add-node" if joined else "deploy")
    return report


def check_cluster_revision(plan: Plan, nodes: Mapping[str, Node],
                           runs: Mapping[str, NodeDeploy], bundle: BundleContents) -> None:
    """A node that is not a member yet joins only a cluster that runs the bundle's k8s
    (k8sd refuses a joiner whose version differs): refused before any node is touched,
    naming both."""
    boot = plan.control_plane.name
    if boot not in nodes or not any(n != boot for n in runs):
        return
    k8s = next((s for s in bundle.snaps if s.name == "k8s"), None)
    node = nodes[boot]
    row = snap_row(node, "k8s") if k8s is not None else None
    if k8s is None or row is None or not is_member(node, boot):
        return  # no cluster yet (or the bootstrap node's own step reports why)
    try:
        same = k8s_decision(boot, row, k8s, lambda: installed_sha3(node, row),
                            k8s.version).action == "keep"
    except AirgapError:
        same = False
    if same:
        return
    new = sorted(n for n in runs if n != boot and not is_member(nodes[n], n))
    if not new:
        return  # every target is a member: their snaps step refuses the change
    have = f"k8s {row.version} (revision {row.rev})"
    want = (f"k8s (revision {k8s.revision})" if k8s.revision and k8s.revision.isdigit()
            else f"k8s {k8s.version()} (SHA3-384 {k8s.sha3_384[:12]}...)")
    hist = read_history(plan).nodes.get(boot)
    named = f"; the site's history says it runs the bundle sha256 {hist.manifest_sha256}" \
        if hist else ""
    raise AirgapError(
        f"{bundle.root}: holds {want}, but the cluster ({boot}) runs {have}{named}: "
        f"{', '.join(new)} would join with another version",
        resolution="Deploy the new node from the bundle the cluster runs, or upgrade the "
        "cluster to this bundle first (`invoke upgrade`), then add the node.",
    )



def _record(plan: Plan, bundle_dir: Path, runs: Mapping[str, NodeDeploy], task: str) -> None:
    ready = [n for n, r in runs.items() if r.report.status_of("ready") in
             (StepStatus.done, StepStatus.changed)]
    by_version: dict[tuple[str, str], list[str]] = {}
    for name in ready:
        row = snap_row(runs[name].node, "k8s")
        if row is not None:
            by_version.setdefault((row.version, row.rev), []).append(name)
    for (version, rev), names in by_version.items():
        record(plan, bundle_dir, names, version=version, revision=rev, task=task)
