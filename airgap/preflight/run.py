"""Run every check family on every node, in parallel; failures land in the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle import Bundle
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.nodes import Node, has_command
from airgap.plan import Mode, Plan, mirror_ca_pem, workload_images
from airgap.plan import Node as PlanNode
from airgap.plan.defaults import default_images
from airgap.plan.images import ImageRef, merge_images, registries
from airgap.plan.lock import read_lock
from airgap.preflight.access import check_mirror, check_no_proxy, check_proxy
from airgap.preflight.host import (
    CLOCK_TOLERANCE,
    check_clock,
    check_disk,
    check_refresh_hold,
    check_snapd,
    required_space,
)
from airgap.preflight.network import check_ports, check_route
from airgap.preflight.report import Check, CheckStatus, NodeChecks, PreflightReport
from airgap.preflight.runtime import check_hosts_files
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files


@dataclass
class _Inputs:
    plan: Plan
    images: list[ImageRef]
    required_bytes: int
    clock: Callable[[], float]
    clock_tolerance: float
    ca_pem: bytes | None
    hosts_files: list[RenderedFile] = field(default_factory=list)  # what deploy writes


def _checks_for(node: Node, spec: PlanNode, inp: _Inputs) -> NodeChecks:
    result = NodeChecks(spec.name, spec.role.value)
    plan = inp.plan
    steps: list[Callable[[], list[Check]]] = [
        lambda: check_route(node, plan, spec),
        lambda: check_ports(node, plan, spec),
    ]
    if plan.has(Mode.proxy):
        steps += [lambda: check_proxy(node, plan, inp.images), lambda: check_no_proxy(node, plan)]
    if plan.has(Mode.mirror):
        steps.append(lambda: check_mirror(node, plan, inp.ca_pem))
    steps.append(lambda: check_hosts_files(node, plan, inp.hosts_files,
                                           set(registries(inp.images))))
    steps.append(lambda: check_disk(node, inp.required_bytes))
    try:
        has_snap = has_command(node, "snap")
    except AirgapError as exc:
        result.checks.append(Check("connect", CheckStatus.fail, exc.brief, exc.resolution or ""))
        return result
    steps += [lambda: check_snapd(node, has_snap),
              lambda: check_refresh_hold(node, has_snap),
              lambda: check_clock(node, inp.clock, inp.clock_tolerance)]
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
    parallel: int = 8,
) -> PreflightReport:
    """Run every check on every node in parallel; failures are in the report."""
    inp = _Inputs(
        plan=plan,
        images=list(images) if images is not None else preflight_images(plan, bundle),
        required_bytes=required_space(bundle),
        clock=clock,
        clock_tolerance=clock_tolerance,
        ca_pem=mirror_ca_pem(plan) if plan.has(Mode.mirror) else None,
    )
    inp.hosts_files = render_hosts_files(plan, registries(inp.images), inp.ca_pem)
    specs = [n for n in plan.nodes if n.name in nodes]
    results = fan_out(lambda s: _checks_for(nodes[s.name], s, inp), specs, limit=parallel,
                      name="preflight")
    return PreflightReport(results)
