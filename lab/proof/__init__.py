"""The lab's proof that the three image-access modes work (`invoke lab.prove`, `nox -s e2e`).

connected: this machine as the connected side, behind the lab's proxy; evidence: the
isolation checks, the proxy's log and the negative cases; standin_proof: :func:`prove`
and the stand-in proof; realsnap_proof: the full proof with the real k8s snap; kubectl:
the cluster and the workload pods; steps: each step timed into the report.
"""

from __future__ import annotations

from lab.proof.connected import Connected, connected_side
from lab.proof.evidence import (
    MISSING_IMAGE,
    expected_digests,
    isolation_checks,
    negative_mirror_miss,
    negative_proxy_down,
    negative_unnamed_archive,
    proxy_log_evidence,
)
from lab.proof.kubectl import kubectl, parse_pod, run_workload_pod
from lab.proof.realsnap_proof import (
    IMAGE_SERVER_ENV,
    full_proof_blockers,
    real_deploy_problems,
    refuse_full_proof_here,
)
from lab.proof.standin_proof import REPORT_STEM, prove, write_report
from lab.proof.steps import MODES

__all__ = [
    "IMAGE_SERVER_ENV",
    "MISSING_IMAGE",
    "MODES",
    "REPORT_STEM",
    "Connected",
    "connected_side",
    "expected_digests",
    "full_proof_blockers",
    "isolation_checks",
    "kubectl",
    "negative_mirror_miss",
    "negative_proxy_down",
    "negative_unnamed_archive",
    "parse_pod",
    "prove",
    "proxy_log_evidence",
    "real_deploy_problems",
    "refuse_full_proof_here",
    "run_workload_pod",
    "write_report",
]
