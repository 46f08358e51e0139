"""The proxy drop-in, read by systemd's own unit-file parser (systemd-analyze verify).

No systemd as PID 1 is needed: `systemd-analyze verify` loads the unit and its drop-ins
from SYSTEMD_UNIT_PATH and reports every line it cannot parse or whose specifiers it
cannot resolve. (Pulling through squid with this drop-in's environment is proven in
test_proxy_dropin.py.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from airgap.plan import PROXY_DROPIN, parse_plan
from airgap.render.proxy import render_proxy_dropin
from tests.support.require import require_binary

pytestmark = pytest.mark.integration


def verify(unit_dir: Path) -> str:
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_dir}:")
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / "snap.k8s.containerd.service")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return proc.stdout + proc.stderr


def install_unit(tmp_path: Path, dropin: str) -> Path:
    unit_dir = tmp_path / "units"
    dropin_dir = unit_dir / "snap.k8s.containerd.service.d"
    dropin_dir.mkdir(parents=True)
    (unit_dir / "snap.k8s.containerd.service").write_text("[Service]\nExecStart=/bin/true\n")
    (dropin_dir / Path(PROXY_DROPIN).name).write_text(dropin)
    return unit_dir


def test_systemd_parses_our_dropin_without_complaint(tmp_path: Path) -> None:
    require_binary("systemd-analyze")
    plan = parse_plan(
        {
            "access": ["proxy", "mirror"],
            "nodes": [{"name": "n1", "address": "10.0.0.1"}, {"name": "n2", "address": "fd00::2"}],
            "mirror": {"url": "https://mirror.internal:5443"},
            # A zone index holds '%', a unit-file specifier: it must be escaped as '%%'.
            "proxy": {
                "http": "http://squid.internal:3128",
                "https": "http://squid.internal:3128",
                "no_proxy": ["fe80::1%eth0", ".corp.example"],
            },
        }
    )
    unit_dir = install_unit(tmp_path, render_proxy_dropin(plan).text)
    out = verify(unit_dir)
    assert "http-proxy.conf" not in out, out


def test_systemd_reports_an_unescaped_specifier(tmp_path: Path) -> None:
    """The check above can fail: a raw '%' in Environment= is rejected by systemd."""
    require_binary("systemd-analyze")
    unit_dir = install_unit(tmp_path, '[Service]\nEnvironment="NO_PROXY=fe80::1%eth0"\n')
    assert "http-proxy.conf" in verify(unit_dir)
