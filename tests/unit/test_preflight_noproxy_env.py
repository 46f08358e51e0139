"""preflight reads NO_PROXY as the runtime's unit really has it (`systemctl show`):
another drop-in that overrides ours, a stale one, none at all."""

from __future__ import annotations

from airgap.nodes import RunResult
from airgap.plan import CONTAINERD_UNIT, PROXY_DROPIN
from airgap.preflight.access import (
    SHOW_ARGV,
    check_effective_no_proxy,
    check_no_proxy,
    environment_no_proxy,
    parse_show,
)
from airgap.preflight.report import CheckStatus
from airgap.render.proxy import render_proxy_dropin
from tests.support.fakes import FakeNode
from tests.unit.test_preflight_checks import make_plan

UNIT = f"{CONTAINERD_UNIT}.service"
GOOD = "10.1.0.0/16,10.152.183.0/24,10.30.0.11,10.30.0.12,10.30.0.13,localhost"
OVERRIDE = "/etc/systemd/system/snap.k8s.containerd.service.d/zz-site.conf"


def show(environment: str, dropins: str, load: str = "loaded") -> str:
    """`systemctl show -p LoadState -p Environment -p DropInPaths UNIT` as systemd prints
    it: its own property order, Environment= with values quoted where they have spaces."""
    return f"Environment={environment}\nLoadState={load}\nDropInPaths={dropins}\n"


def node_showing(text: str) -> FakeNode:
    node = FakeNode("node-1")
    node.on(*SHOW_ARGV, UNIT, answer=RunResult([], 0, text, ""))
    return node


def test_the_effective_environment_is_read_as_go_reads_it() -> None:
    props = parse_show(show('HTTPS_PROXY=http://10.30.0.2:3128 "NO_PROXY=a,b" '
                            '"SOME=with space"', PROXY_DROPIN))
    assert props["LoadState"] == "loaded" and props["DropInPaths"] == PROXY_DROPIN
    assert environment_no_proxy(props["Environment"]) == "a,b"
    assert environment_no_proxy("NO_PROXY= no_proxy=c,d") == "c,d"  # empty: the other
    assert environment_no_proxy("NO_PROXY=x no_proxy=y") == "x"  # uppercase first
    assert environment_no_proxy("HTTPS_PROXY=http://p:3128") is None


def test_another_drop_in_that_overrides_ours_fails_naming_it() -> None:
    plan = make_plan()
    node = node_showing(show("HTTPS_PROXY=http://10.30.0.2:3128 NO_PROXY=localhost",
                             f"{PROXY_DROPIN} {OVERRIDE}"))
    [c] = check_effective_no_proxy(node, plan)
    assert c.status is CheckStatus.fail
    assert f"{UNIT}'s effective NO_PROXY lacks 10.1.0.0/16" in c.detail
    assert OVERRIDE in c.detail and c.fix.startswith(f"remove or fix {OVERRIDE}")


def test_a_stale_drop_in_now_fails_when_the_unit_runs_with_it() -> None:
    plan = make_plan()
    node = node_showing(show("NO_PROXY=10.1.0.0/16,localhost", PROXY_DROPIN))
    node.files[PROXY_DROPIN] = b'[Service]\nEnvironment="NO_PROXY=10.1.0.0/16,localhost"\n'
    checks = {c.name: c for c in check_no_proxy(node, plan)}
    assert checks["NO_PROXY"].status is CheckStatus.ok  # the plan's own value
    runtime = checks["NO_PROXY (runtime)"]
    assert runtime.status is CheckStatus.fail and "invoke deploy" in runtime.fix
    assert "NO_PROXY on node" not in checks  # the file's warning gives way to the real value


def test_no_no_proxy_at_all_fails_and_a_good_one_passes() -> None:
    plan = make_plan()
    [c] = check_effective_no_proxy(node_showing(show("HTTPS_PROXY=http://p:3128", "")), plan)
    assert c.status is CheckStatus.fail and "no NO_PROXY at all" in c.detail
    [ok] = check_effective_no_proxy(node_showing(show(f"NO_PROXY={GOOD}", PROXY_DROPIN)), plan)
    assert ok.status is CheckStatus.ok


def test_before_install_the_file_is_checked_instead() -> None:
    plan = make_plan()
    node = node_showing(show("", "", load="not-found"))
    assert check_effective_no_proxy(node, plan) == []
    node.files[PROXY_DROPIN] = b'[Service]\nEnvironment="NO_PROXY=localhost"\n'
    checks = {c.name: c for c in check_no_proxy(node, plan)}
    assert checks["NO_PROXY on node"].status is CheckStatus.warn
    assert render_proxy_dropin(plan).path == PROXY_DROPIN
