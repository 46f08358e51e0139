"""Preflight's report as one table per node: check, result, detail, fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from airgap.bundle.verify import SignerPolicy
from airgap.cli import UserExit
from airgap.preflight.report import CheckStatus, PreflightReport
from airgap.show import node_table, styled

_STYLE = {
    CheckStatus.ok: "green",
    CheckStatus.warn: "yellow",
    CheckStatus.fail: "bold red",
    CheckStatus.skip: "dim",
}


def report_tables(report: PreflightReport) -> list[Table]:
    """One rich Table per node: check, result, detail, fix."""
    return [
        node_table(f"{n.name} ({n.role})", ("check", "result", "detail", "fix"),
                   [(c.name, styled(c.status, _STYLE), c.detail, c.fix) for c in n.checks])
        for n in report.nodes
    ]


def run_preflight_task(err: Console, plan: Path, bundle: Path | None, only: Sequence[str],
                       signers: SignerPolicy, transports: Any) -> None:
    """`invoke preflight`'s body: the bundle's signature first, then every node."""
    from airgap.nodes import build_nodes, close_nodes
    from airgap.plan import load_plan
    from airgap.preflight import preflight
    from airgap.show.gap import signature_gate

    p = load_plan(plan)
    if bundle:
        signature_gate(err, bundle, signers)
    nodes = build_nodes(p, list(only) or None, transports=transports)
    try:
        with err.status(f"preflight on {len(nodes)} node(s)"):
            report = preflight(p, nodes, bundle=bundle)
    finally:
        close_nodes(nodes)
    out = Console()
    for table in report_tables(report):
        out.print(table)
    failed = [n.name for n in report.nodes if n.failed]
    if failed:
        raise UserExit(f"Error: preflight failed on {', '.join(failed)} (see the fix column)")
    out.print(f"Preflight passed on {len(report.nodes)} node(s).")
