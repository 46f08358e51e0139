"""What the e2e modules that run one lab proof each share: the prerequisites (root,
the lab's tools, LXD up) and the run itself, timed, with its progress printed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.require import need, require_binary, require_root

LAB_TOOLS = ("lxd", "debootstrap", "mksquashfs", "curl", "ssh-keygen")


@dataclass
class ProofRun:
    report: Any
    out: Path


def run_lab_proof(prove: Callable[..., Any], name: str, slot: int, what: str,
                  tmp_path_factory: pytest.TempPathFactory) -> ProofRun:
    """``prove(name=, out=, root=, slot=, progress=)`` in a lab of its own; the report
    directory is K8S_AIRGAP_E2E_REPORT_DIR when set (to keep it), else a temporary one."""
    require_root()
    for tool in LAB_TOOLS:
        require_binary(tool)
    from lab import host

    if not host.lxd_answers():
        host.setup_host()
    need(host.lxd_answers(), "LXD is not running (invoke lab.host)")
    out = Path(os.environ.get("K8S_AIRGAP_E2E_REPORT_DIR") or tmp_path_factory.mktemp(name))
    t0 = time.monotonic()
    report = prove(name=name, out=out, root=tmp_path_factory.mktemp("lab"), slot=slot,
                   progress=lambda m: print(f"{time.monotonic() - t0:6.1f} s  {m}",
                                            flush=True))
    print(f"{what}: {time.monotonic() - t0:.1f} s; report in {out}")
    return ProofRun(report, out)
