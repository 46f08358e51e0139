"""The placeholder default route: runtime command and the file that survives a reboot."""

from __future__ import annotations

import configparser
from typing import Any

import yaml

from airgap.plan import parse_plan
from airgap.render.route import render_route


def plan_with(**network: Any) -> Any:
    return parse_plan(
        {
            "access": ["sideload"],
            "nodes": [{"name": "node-1", "address": "10.0.0.1"}],
            "network": network,
        }
    )


def test_runtime_command_is_idempotent_and_names_the_interface() -> None:
    plan = plan_with(default_route_interface="ens3")
    route = render_route(plan, plan.nodes[0])
    assert route.command == ["ip", "route", "replace", "default", "dev", "ens3"]
    assert route.check == ["ip", "-4", "route", "show", "default"]


def test_netplan_is_the_default_and_is_private() -> None:
    plan = plan_with()
    files = render_route(plan, plan.nodes[0]).files
    assert [f.path for f in files] == ["/etc/netplan/90-airgap-default-route.yaml"]
    assert files[0].mode == 0o600
    doc = yaml.safe_load(files[0].text)
    assert doc == {
        "network": {
            "version": 2,
            "ethernets": {"eth0": {"routes": [{"to": "0.0.0.0/0", "scope": "link"}]}},
        }
    }


def test_networkd_dropin_for_the_interface_network_file() -> None:
    plan = plan_with(
        route_persistence="networkd",
        networkd_file="10-netplan-eth1.network",
        default_route_interface="eth1",
    )
    route = render_route(plan, plan.nodes[0])
    assert [f.path for f in route.files] == [
        "/etc/systemd/network/10-netplan-eth1.network.d/90-airgap-default-route.conf"
    ]
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(route.files[0].text)
    assert dict(ini["Route"]) == {"Destination": "0.0.0.0/0", "Scope": "link"}
    assert route.command[-1] == "eth1"


def test_none_writes_no_file_but_keeps_the_command() -> None:
    plan = plan_with(route_persistence="none")
    route = render_route(plan, plan.nodes[0])
    assert route.files == []
    assert route.command == ["ip", "route", "replace", "default", "dev", "eth0"]
