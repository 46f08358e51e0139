"""The persistent placeholder route, read by netplan itself (netplan generate).

netplan merges our file with the node's own definition of the interface and writes the
systemd-networkd configuration it would boot with; the route must be there, the
node's own settings must survive, and it must equal our networkd drop-in's [Route].
"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from airgap.plan import parse_plan
from airgap.render.route import render_route
from tests.support.require import require_binary

pytestmark = pytest.mark.integration

NODE_NETPLAN = """\
network:
  version: 2
  ethernets:
    ens3:
      dhcp4: true
"""


def sections(text: str) -> dict[str, dict[str, str]]:
    ini = configparser.ConfigParser(strict=False)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(text)
    return {name: dict(ini[name]) for name in ini.sections()}


def test_netplan_generate_turns_our_file_into_the_networkd_route(tmp_path: Path) -> None:
    require_binary("netplan")
    plan = parse_plan(
        {
            "access": ["sideload"],
            "nodes": [{"name": "n1", "address": "10.0.0.1"}],
            "network": {"default_route_interface": "ens3", "route_persistence": "netplan"},
        }
    )
    (rendered,) = render_route(plan, plan.nodes[0]).files
    root = tmp_path / "root"
    for path, text, mode in (
        ("/etc/netplan/50-cloud-init.yaml", NODE_NETPLAN.encode(), 0o600),
        (rendered.path, rendered.content, rendered.mode),
    ):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text)
        target.chmod(mode)
    proc = subprocess.run(
        ["netplan", "generate", "--root-dir", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    generated = root / "run/systemd/network/10-netplan-ens3.network"
    got = sections(generated.read_text())
    assert got["Match"] == {"Name": "ens3"}
    assert got["Network"]["DHCP"] == "ipv4"  # the node's own settings survive the merge
    assert got["Route"] == {"Destination": "0.0.0.0/0", "Scope": "link"}
    assert "Permissions" not in proc.stderr  # our file is 0600, as netplan wants

    networkd = parse_plan(
        {
            "access": ["sideload"],
            "nodes": [{"name": "n1", "address": "10.0.0.1"}],
            "network": {
                "default_route_interface": "ens3",
                "route_persistence": "networkd",
                "networkd_file": "10-netplan-ens3.network",
            },
        }
    )
    (dropin,) = render_route(networkd, networkd.nodes[0]).files
    assert (
        dropin.path == "/etc/systemd/network/10-netplan-ens3.network.d/90-airgap-default-route.conf"
    )
    assert sections(dropin.text)["Route"] == got["Route"]
