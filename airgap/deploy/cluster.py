"""The cluster: bootstrap on the first control-plane node, a join token per other node,
joins (workers in parallel, control planes one at a time), then every node Ready."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from airgap.deploy.context import STATE_DIR, Context
from airgap.deploy.members import (
    ClusterNode,
    cluster_member,
    cluster_nodes,
    in_cluster,
    is_member,
)
from airgap.deploy.report import StepStatus
from airgap.deploy.steps import NodeDeploy, ensure_file, short_error
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.nodes import Node
from airgap.plan import Plan, Role
from airgap.render import RenderedFile
from airgap.wait import poll

BOOTSTRAP_CONFIG = f"{STATE_DIR}/bootstrap.yaml"
JOIN_CONFIG = f"{STATE_DIR}/join.yaml"
BOOTSTRAP_TIMEOUT = 900.0
JOIN_TIMEOUT = 900.0
TOKEN_PLACEHOLDER = "<token>"

# k8s join-cluster takes the token as an argument; reading it from stdin keeps it out
# of our argv, our logs and error messages.
JOIN_SCRIPT = 'exec k8s join-cluster "$(cat)" "$@"'


def _yaml(data: Mapping[str, object]) -> bytes:
    return yaml.safe_dump(dict(data), sort_keys=True).encode()


# `k8s bootstrap --file` starts from an empty config: only the no-file path turns these
# on, and k8sd's defaults leave network and dns off (no CNI: no node ever gets Ready).
BOOTSTRAP_FEATURES = ("network", "dns", "gateway", "local-storage")


def bootstrap_config(plan: Plan) -> RenderedFile:
    data: dict[str, object] = {
        "pod-cidr": plan.network.pod_cidr,
        "service-cidr": plan.network.service_cidr,
        "cluster-config": {f: {"enabled": True} for f in BOOTSTRAP_FEATURES},
    }
    if plan.k8s.containerd_base_dir:
        data["containerd-base-dir"] = plan.k8s.containerd_base_dir
    return RenderedFile(BOOTSTRAP_CONFIG, _yaml(data), 0o600)


def join_config(plan: Plan) -> RenderedFile | None:
    if not plan.k8s.containerd_base_dir:
        return None
    data = {"containerd-base-dir": plan.k8s.containerd_base_dir}
    return RenderedFile(JOIN_CONFIG, _yaml(data), 0o600)


def form_cluster(ctx: Context, runs: Mapping[str, NodeDeploy],
                 prepared: Mapping[str, bool], cluster: Mapping[str, Node] | None = None) -> None:
    """Bootstrap the first control plane, join the others, wait until all are Ready.

    ``cluster``: nodes of the plan that are not deployed in this run; when the bootstrap
    node is among them and already a cluster member (adding a node later), it makes the
    join tokens and nothing is bootstrapped."""
    plan, progress = ctx.plan, ctx.progress
    boot_spec = plan.control_plane
    boot_run = runs.get(boot_spec.name)
    existing = (cluster or {}).get(boot_spec.name)
    if boot_run is None and (existing is None or not is_member(existing, boot_spec.name)):
        # Joining needs the bootstrap node; deploying a subset without it cannot join.
        for run in runs.values():
            if prepared[run.spec.name]:
                run.report.add(
                    "join", StepStatus.not_run,
                    f"the bootstrap node {boot_spec.name} is not deployed"
                    + ("" if existing is None else " (it is not a cluster member)"))
        return
    first = boot_spec
    others = [r for r in runs.values() if r.spec.name != first.name]

    def skip_all(reason: str, status: StepStatus = StepStatus.skipped) -> None:
        for run in runs.values():
            if not prepared[run.spec.name]:
                continue
            step = "bootstrap" if run is boot_run else "join"
            if run.report.status_of(step) is None:
                run.report.add(step, status, reason)
            run.report.add("ready", status, reason)

    if boot_run is not None:
        boot_node = boot_run.node
        if not prepared[first.name]:
            skip_all(f"the bootstrap node {first.name} failed", StepStatus.not_run)
            return

        def do_bootstrap() -> tuple[StepStatus, str]:
            if in_cluster(boot_node, first.name):
                return StepStatus.done, "already bootstrapped"
            cfg = bootstrap_config(plan)
            ensure_file(boot_node, cfg)
            progress(first.name, "bootstrapping")
            # --name: the Kubernetes node name is the plan's, not whatever the hostname is.
            boot_node.run(
                ["k8s", "bootstrap", "--name", first.name, "--address", first.address,
                 "--file", cfg.path],
                timeout=BOOTSTRAP_TIMEOUT,
            )
            return StepStatus.changed, f"bootstrapped at {first.address}"

        if not boot_run.run_step("bootstrap", do_bootstrap):
            skip_all(f"bootstrap on {first.name} failed", StepStatus.not_run)
            return
    else:
        assert existing is not None
        boot_node = existing

    joinable: list[NodeDeploy] = []
    for run in others:
        if not prepared[run.spec.name]:
            continue
        try:
            member = in_cluster(run.node, run.spec.name)
        except AirgapError as exc:
            run.report.add("join", StepStatus.failed, short_error(exc))
            run.report.errors.append(exc)
            continue
        if member:
            run.report.add("join", StepStatus.done, "already a cluster member")
            continue
        joinable.append(run)

    # Tokens first, one at a time on the bootstrap node; then joins: workers in
    # parallel, control planes one at a time (each changes the datastore membership).
    tokens: dict[str, str] = {}
    for run in joinable:
        def make_token(run: NodeDeploy = run) -> tuple[StepStatus, str]:
            worker = run.spec.role is Role.worker
            argv = ["k8s", "get-join-token", run.spec.name] + (["--worker"] if worker else [])
            token = boot_node.run(argv, timeout=120).stdout.strip()
            if not token:
                raise AirgapError(
                    f"{first.name}: `k8s get-join-token` printed no token",
                    resolution=f"On {first.name}: `k8s status` (the cluster must be up to make "
                    "tokens) and `snap logs k8s.k8sd`; then run deploy again.",
                )
            tokens[run.spec.name] = token
            return StepStatus.changed, f"made on {first.name}"

        run.run_step("join token", make_token)

    def do_join(run: NodeDeploy) -> None:
        def step() -> tuple[StepStatus, str]:
            # --name: the token is made for the plan's name; without --name join-cluster
            # sends the hostname, and k8sd rejects a token made for another name.
            args = ["--name", run.spec.name, "--address", run.spec.address]
            jcfg = join_config(plan)
            if jcfg is not None:
                ensure_file(run.node, jcfg)
                args += ["--file", jcfg.path]
            progress(run.spec.name, "joining")
            run.node.run(
                ["sh", "-c", JOIN_SCRIPT, "k8s-join", *args],
                input=tokens[run.spec.name].encode(),
                timeout=JOIN_TIMEOUT,
            )
            worker = run.spec.role is Role.worker
            return StepStatus.changed, "joined as " + ("worker" if worker else "control plane")

        run.run_step("join", step)

    with_token = [r for r in joinable if r.spec.name in tokens]
    for run in joinable:
        if run.spec.name not in tokens:
            run.report.add("join", StepStatus.not_run, "no join token")
    for run in [r for r in with_token if r.spec.role is Role.control_plane]:
        do_join(run)
    workers = [r for r in with_token if r.spec.role is Role.worker]
    fan_out(do_join, workers, limit=ctx.parallel, name="deploy-join")

    # Ready.
    waiting = [
        r
        for r in runs.values()
        if prepared[r.spec.name]
        and r.report.status_of("join" if r is not boot_run else "bootstrap")
        in (StepStatus.done, StepStatus.changed)
    ]
    for r in runs.values():
        if prepared[r.spec.name] and r not in waiting and r.report.status_of("ready") is None:
            r.report.add("ready", StepStatus.not_run, "not a cluster member")
    _wait_ready(ctx, boot_node, waiting)



def _wait_ready(ctx: Context, boot: Node, waiting: Sequence[NodeDeploy]) -> None:
    if not waiting:
        return
    timeout, clock = ctx.ready_timeout, ctx.clock
    pending = {r.spec.name: r for r in waiting}
    started: list[float] = []

    def look() -> list[ClusterNode]:
        if not started:  # the first look, just after poll has set its deadline
            started.append(clock())
        members = cluster_nodes(boot)
        for name, run in list(pending.items()):
            m = cluster_member(run.spec, members)
            if m is not None and m.ready:
                run.report.add("ready", StepStatus.done,
                               f"Ready after {clock() - started[0]:.0f} s")
                del pending[name]
        return members

    def still_waiting(_: list[ClusterNode]) -> None:
        for name in pending:
            ctx.progress(name, "waiting for Ready")

    last, _ = poll(look, lambda _: not pending, timeout=timeout, interval=ctx.ready_poll,
                   clock=clock, sleep=ctx.sleep, between=still_waiting)
    for run in pending.values():
        m = cluster_member(run.spec, last)
        seen = "listed, not Ready" if m is not None else "not listed"
        exc = AirgapError(
            f"{run.spec.name}: not Ready after {timeout:.0f} s ({seen})",
            resolution=f"On {run.spec.name}: `k8s status` and `journalctl -u snap.k8s.*`; "
            "then run deploy again (finished steps are skipped).",
        )
        run.report.add("ready", StepStatus.failed, exc.brief)
        run.report.errors.append(exc)
