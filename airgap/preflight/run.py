"""Run every check family on every node, in parallel; failures land in the report.

Phases: (1) ports: a short-lived listener on every node at once, then every node probes
all the others in one exec, then the listeners stop (airgap.preflight.network);
(2) every other check family on each node; (3) across nodes: one machine per plan name
(airgap.preflight.identity) and the clocks' spread. Nodes run in parallel (``parallel``)
within each phase.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle import Bundle
from airgap.errors import AirgapError
from airgap.fanout import fan_out, fan_out_by
from airgap.nodes import Node, has_command
from airgap.plan import Mode, Plan, mirror_ca_pem, workload_images
from airgap.plan import Node as PlanNode
from airgap.plan.defaults import default_images
from airgap.plan.images import ImageRef, merge_images, registries
from airgap.plan.lock import ImageLock, read_lock
from airgap.preflight.access import (
    check_mirror,
    check_mirror_images,
    check_no_proxy,
    check_proxy,
)
from airgap.preflight.host import (
    CLOCK_TOLERANCE,
    ClockReading,
    DiskNeed,
    check_clock,
    check_clock_between,
    check_disk,
    check_refresh_hold,
    check_snapd,
    disk_needs,
)
from airgap.preflight.identity import Identity, check_identity, check_one_machine_each
from airgap.preflight.network import PROBE_TIMEOUT, check_ports, check_route, listening
from airgap.preflight.registry_checks import bundle_lock
from airgap.preflight.report import Check, CheckStatus, NodeChecks, PreflightReport
from airgap.preflight.runtime import check_hosts_files
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files


@dataclass
class _Inputs:
    plan: Plan
    images: list[ImageRef]
    disk_needs: list[DiskNeed]
    clock: Callable[[], float]
    clock_tolerance: float
    ca_pem: bytes | None
    hosts_files: list[RenderedFile] = field(default_factory=list)  # what deploy writes
    clock_skew: Mapping[str, float] = field(default_factory=dict)  # simulated, by node
    port_checks: Mapping[str, list[Check]] = field(default_factory=dict)  # phase 1
    lock: ImageLock | None = None  # the bundle's: every image asked for by digest
    bundle: Path | None = None


@dataclass
class _Seen:
    """What one node answered that the cross-node checks compare."""

    identity: Identity | None = None
    clock: ClockReading | None = None


def _checks_for(node: Node, spec: PlanNode, inp: _Inputs, seen: _Seen) -> NodeChecks:
    result = NodeChecks(spec.name, spec.role.value)
    plan = inp.plan

    def identity() -> list[Check]:
        checks, seen.identity = check_identity(node, spec)
        return checks

    def clock() -> list[Check]:
        checks, seen.clock = check_clock(node, inp.clock, inp.clock_tolerance,
                                         inp.clock_skew.get(spec.name, 0.0))
        return checks

    steps: list[Callable[[], list[Check]]] = [
        lambda: check_route(node, plan, spec),
        lambda: inp.port_checks.get(spec.name, []),
        identity,
    ]
    if plan.has(Mode.proxy):
        steps += [lambda: check_proxy(node, plan, inp.images, inp.lock),
                  lambda: check_no_proxy(node, plan)]
    if plan.has(Mode.mirror):
        steps.append(lambda: check_mirror(node, plan, inp.ca_pem))
        steps.append(lambda: check_mirror_images(node, plan, inp.lock, inp.ca_pem, inp.bundle))
    steps.append(lambda: check_hosts_files(node, plan, inp.hosts_files,
                                           set(registries(inp.images))))
    steps.append(lambda: check_disk(node, inp.disk_needs))
    try:
        has_snap = has_command(node, "snap")
    except AirgapError as exc:
        result.checks.append(Check("connect", CheckStatus.fail, exc.brief, exc.resolution or ""))
        return result
    steps += [lambda: check_snapd(node, has_snap),
              lambda: check_refresh_hold(node, has_snap),
              clock]
    for step in steps:
        try:
            result.checks.extend(step())
        except AirgapError as exc:
            result.checks.append(Check("error", CheckStatus.fail, exc.brief, exc.resolution or ""))
    return result


def preflight_images(plan: Plan, bundle: Path | None) -> list[ImageRef]:
    """The images whose registries the proxy must reach: the bundle's lock, else defaults."""
    if bundle is not None and Bundle(bundle).lock.is_file():
        return read_lock(Bundle(bundle).lock).refs()
    return merge_images(default_images(plan.k8s.channel), workload_images(plan))


def preflight(
    plan: Plan,
    nodes: Mapping[str, Node],
    *,
    bundle: Path | None = None,
    images: Iterable[ImageRef] | None = None,
    clock: Callable[[], float] = time.time,
    clock_tolerance: float = CLOCK_TOLERANCE,
    clock_skew: Mapping[str, float] | None = None,
    parallel: int = 8,
    probe_timeout: float = PROBE_TIMEOUT,
) -> PreflightReport:
    """Run every check on every node in parallel; failures are in the report.

    ``clock_skew``: seconds added to the time a node reports, by node name: a skew
    simulated at the check's input (the lab's containers share the host's clock); the
    clock check's detail says so."""
    inp = _Inputs(
        plan=plan,
        images=list(images) if images is not None else preflight_images(plan, bundle),
        disk_needs=disk_needs(bundle),
        clock=clock,
        clock_tolerance=clock_tolerance,
        ca_pem=mirror_ca_pem(plan) if plan.has(Mode.mirror) else None,
        clock_skew=dict(clock_skew or {}),
        lock=bundle_lock(bundle),
        bundle=bundle,
    )
    inp.hosts_files = render_hosts_files(plan, registries(inp.images), inp.ca_pem)
    specs = [n for n in plan.nodes if n.name in nodes]
    inp.port_checks = _port_phase(plan, nodes, specs, parallel, probe_timeout)
    seen = {s.name: _Seen() for s in specs}
    results = fan_out(lambda s: _checks_for(nodes[s.name], s, inp, seen[s.name]), specs,
                      limit=parallel, name="preflight")
    _across_nodes(results, seen, clock_tolerance)
    return PreflightReport(results)


def _port_phase(plan: Plan, nodes: Mapping[str, Node], specs: Sequence[PlanNode],
                parallel: int, timeout: float) -> dict[str, list[Check]]:
    """Listeners on every node, then each node's one batched probe, then stop them."""
    if len(plan.nodes) < 2:
        return {}

    def probe(spec: PlanNode) -> list[Check]:
        try:
            return check_ports(nodes[spec.name], plan, spec, listeners, timeout=timeout)
        except AirgapError as exc:
            return [Check("ports", CheckStatus.fail, exc.brief, exc.resolution or "")]

    by_name = {s.name: s for s in specs}
    with listening(nodes, specs, parallel=parallel) as listeners:
        return fan_out_by(lambda n: probe(by_name[n]), list(by_name), limit=parallel,
                          name="probe")


def _across_nodes(results: Sequence[NodeChecks], seen: Mapping[str, _Seen],
                  tolerance: float) -> None:
    """Compare the nodes' answers: one machine per plan name, the clocks' spread."""
    one = check_one_machine_each(
        {n: s.identity for n, s in seen.items() if s.identity is not None})
    between = check_clock_between(
        {n: s.clock.offset for n, s in seen.items() if s.clock is not None}, tolerance)
    for r in results:
        r.checks += [c for c in (one.get(r.name), between.get(r.name)) if c is not None]
