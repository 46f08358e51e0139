"""The failure catalogue in the lab: each known cause of a failed air-gapped install,
induced for real, caught by the check that must catch it (with its fix named), then
undone, and the same check passing again.

A two-node lab (node-1 control plane, node-2 worker) with the lab's plan (proxy, mirror
and side-load), a signed bundle with its images and archives, the mirror filled from
it. The baseline first gets what deploy would do before install (the placeholder
default route, now and persistent), and every check must pass on it. Then, per cause:
induce it, run the check as a user types it (``invoke preflight`` / ``invoke verify``
in a subprocess: its exit code and its last error line) and read the failing check's
message and fix from the same check run through the library; undo it; run the check
again, which must pass. A cause that can only exist after install is induced after a
deploy. Clock skew cannot be made in an LXD container (it shares the host's clock), so
it is simulated at the check's input, and the row says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airgap.bundle import Bundle, load_trust, verify_bundle
from airgap.bundle.signing import sign_manifest
from airgap.bundle.verify import SignerPolicy
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.nodes import build as nodeset
from airgap.plan import load_plan
from airgap.plan.lock import read_lock
from airgap.preflight import preflight
from airgap.progress import Say, quiet
from lab import lifecycle, network
from lab.lxd import TRANSPORTS, LXDNode
from lab.proof.catalogue_causes import Cause, Lab, Outcome, causes, placeholder_route
from lab.proof.connected import connected_side
from lab.proof.offline import make_keys
from lab.proof.steps import Steps, fresh_lab, run_proof
from lab.report import environment
from lab.snapset import signed_snapd_set
from lab.standin import Authority
from lab.topology import InstanceType, LabSpec, Runtime, Upstream

REPORT_STEM = "catalogue-report"


@dataclass
class Row:
    """One cause: how it was induced, what caught it, and the same check after undoing."""

    cause: str
    induced: str
    check: str  # the command, as a user types it
    exit_code: int
    message: str
    fix: str
    restored_exit: int
    restored: str
    ok: bool
    note: str = ""


@dataclass
class CatalogueReport:
    lab: str
    started: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    baseline: str = ""
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows) and all(r.ok for r in self.rows)


def run_case(lab: Lab, c: Cause) -> Row:
    induced = c.induce(lab)
    try:
        hit = c.run(lab)()
    finally:
        c.undo(lab)
    again = ((c.rerun or c.run)(lab)() if c.check.startswith("invoke preflight")
             else Outcome(0, "", "", False))
    passes = not again.failed
    ok = hit.failed and hit.exit_code != 0 and hit.fix not in ("", "-") and passes
    restored = "passes" if passes else f"still fails: {again.message}"
    if not c.check.startswith("invoke preflight"):
        restored = "the site's own bundle verifies (baseline)"
    return Row(c.cause, induced, c.check, hit.exit_code, hit.message, hit.fix,
               again.exit_code, restored, ok, c.note)


def prove_catalogue(name: str = "catlg", out: Path = Path("reports"), keep: bool = False,
                    progress: Say | None = None, *, root: Path | None = None,
                    slot: int = 0) -> CatalogueReport:
    say = progress or quiet
    fresh_lab(name, root)
    spec = LabSpec(name=name, nodes=2, slot=network.free_slot(slot),
                   instance_type=InstanceType.auto, upstream=Upstream.simulated,
                   runtime=Runtime.snapd)
    report = CatalogueReport(f"{name} (project {spec.project}, slot {spec.slot})",
                             datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    steps = Steps(report, say)
    run_proof(spec, report, steps, root, keep,
              lambda work: _run(spec, report, steps, work, root, say),
              lambda: write_catalogue_report(report, out))
    return report


def _run(spec: LabSpec, report: CatalogueReport, steps: Steps, work: Path, root: Path | None,
         say: Say) -> None:
    with steps.step("lab up (2 snapd nodes)") as row:
        st = lifecycle.up(spec, root=root, progress=lambda m: say(f"  {m}")).state
        row["detail"] = f"{len(st.members)} instances"
    plan_file = Path(st.plan_file)
    plan = load_plan(plan_file)
    connected = connected_side(st, spec, work)
    names = [m.name for m in spec.node_members]
    lxd = {n: LXDNode(n, project=spec.project) for n in names}
    nodes = nodeset.build_nodes(plan, transports=TRANSPORTS)
    bundle = work / "bundle"
    with steps.step("the site's bundle: stand-in snaps, images, signed; mirror filled") as row:
        authority = Authority.create()
        trusted_root = authority.write_root(work / "lab-root.account-key.assert")
        info = lxd[names[0]].run(["cat", "/usr/lib/snapd/info"]).stdout
        made = signed_snapd_set(work / "snaps", authority, snapd_info=info,
                                images=[i for i in spec.images if not i.startswith("docker.io")])
        connected.prepare(plan, bundle, from_dir=made["k8s"][0].parent,
                          trust=load_trust(trusted_root, True))
        keys = make_keys(work)
        sign_manifest(bundle, keys.key)
        from airgap.mirror.from_bundle import push_bundle

        push_bundle(plan, bundle, read_lock(Bundle(bundle).lock))
        row["detail"] = f"{len(read_lock(Bundle(bundle).lock).images)} images"
    lab = Lab(spec, plan, plan_file, nodes, lxd, bundle, trusted_root,
              SignerPolicy(keys.allowed), work, keys, st.public_ca_file)
    with steps.step("baseline: placeholder routes (deploy's route step), every check passes") \
            as row:
        for n in names:
            placeholder_route(lab, n)
        base = preflight(plan, nodes, bundle=bundle)
        bad = [f"{n.name}: {c.name}: {c.detail}" for n in base.nodes for c in n.failed]
        verify_bundle(bundle, trusted_root=trusted_root, signers=lab.signers)
        report.baseline = "; ".join(bad) or "preflight passed on both nodes; verify passed"
        row["detail"] = report.baseline
        if bad:
            raise AirgapError("the catalogue's baseline does not pass: " + "; ".join(bad),
                              resolution="Rerun with --keep and look at the lab.")
    for c in causes():
        with steps.step(f"cause: {c.cause}") as row:
            result = run_case(lab, c)
            report.rows.append(result)
            row["detail"] = f"{'ok' if result.ok else 'NOT CAUGHT'}: {result.message}"


def write_catalogue_report(report: CatalogueReport, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = asdict(report)
    data["ok"] = report.ok
    js = write_atomic(out / f"{REPORT_STEM}.json", json.dumps(data, indent=2) + "\n")
    md = write_atomic(out / f"{REPORT_STEM}.md", environment().get_template(
        "catalogue-report.md.j2").render(report=report))
    return md, js


def rows_by_cause(report: CatalogueReport) -> Mapping[str, Row]:
    return {r.cause: r for r in report.rows}
