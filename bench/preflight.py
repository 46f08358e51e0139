"""Preflight's time on 2 and on 8 lab nodes, and the ratio.

Nodes run in parallel with one batched exec per node for the pairwise port checks
(listeners on every node at once, then one probe per node of all the others), so 8
nodes should take no more than 1.5x the time of 2. One lab of the largest size is
brought up; a smaller count runs preflight with the lab's plan cut to its first N nodes
(the same machines). Each count runs ``--repeat`` times; the minimum and the median are
printed. Prints figures; asserts nothing about speed. Needs root and a running LXD
(`invoke lab.host`).

    python -m bench.preflight [--nodes 2,8] [--slot 104] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def node_counts(text: str) -> list[int]:
    counts = sorted({int(x) for x in text.split(",") if x.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"--nodes {text!r}: a comma list of counts, e.g. 2,8")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--nodes", type=node_counts, default=[2, 8],
                    help="node counts to time, comma-separated (default 2,8)")
    ap.add_argument("--slot", type=int, default=104, help="the lab's slot (default 104)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per count (default 3)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    import yaml

    from airgap.nodes import build_nodes, close_nodes
    from airgap.plan import parse_plan
    from airgap.preflight import preflight
    from lab import host, lifecycle
    from lab.lxd import TRANSPORTS
    from lab.topology import LabSpec

    if os.geteuid() != 0 or not host.lxd_answers():
        print("bench.preflight: needs root and a running LXD (invoke lab.host); skipped")
        return
    spec = LabSpec(name="bpre", nodes=max(args.nodes), slot=args.slot)
    rows: list[tuple[int, float, float, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp:
        root = Path(tmp)
        lifecycle.down(spec, root=root)
        try:
            up = lifecycle.up(spec, root=root)
            doc = yaml.safe_load(up.plan.read_text())
            for n in args.nodes:
                part = {**doc, "nodes": doc["nodes"][:n]}
                plan = parse_plan(part, source=f"{up.plan} (first {n} nodes)",
                                  base_dir=up.plan.parent)
                nodes = build_nodes(plan, transports=TRANSPORTS)
                times: list[float] = []
                try:
                    for _ in range(args.repeat):
                        t = time.monotonic()
                        report = preflight(plan, nodes, parallel=max(8, n))
                        times.append(time.monotonic() - t)
                finally:
                    close_nodes(nodes)
                checks = sum(len(r.checks) for r in report.nodes)
                failed = sum(len(r.failed) for r in report.nodes)
                rows.append((n, min(times), statistics.median(times), checks, failed))
        finally:
            lifecycle.down(spec, root=root)

    print(f"{'nodes':>5}  {'min s':>7}  {'median s':>8}  {'checks':>6}  {'failed':>6}")
    for n, best, med, checks, failed in rows:
        print(f"{n:>5}  {best:7.2f}  {med:8.2f}  {checks:>6}  {failed:>6}")
    if len(rows) >= 2:
        (lo, lo_t, *_), (hi, hi_t, *_) = rows[0], rows[-1]
        print(f"{hi} nodes / {lo} nodes (min): {hi_t / lo_t:.2f}x (target: at most 1.5x)")
    print("nodes are LXD containers on this machine; preflight runs the lab plan's checks "
          "(mirror, proxy, side-load) with no --bundle")


if __name__ == "__main__":
    main()
