"""preflight reads every hosts.toml already on a node: the listing as the real script
prints it, the upstream procedure's broken file, files that match or differ from what
render writes, a missing CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

from airgap.plan import CLASSIC_HOSTS_DIR
from airgap.plan.images import registries
from airgap.preflight import preflight
from airgap.preflight.report import CheckStatus
from airgap.preflight.runtime import LIST_SCRIPT, hosts_checks, parse_listing
from airgap.render.hosts import render_hosts_files
from tests.unit.test_preflight_checks import ADDRS, IMAGES, NOW, healthy, make_plan

# The upstream procedure's nested-path example, as it prints it: `server` unquoted.
SEED_NESTED = """server = https://10.10.10.10:5050/v2/my/own/ghcr.io
[host."https://10.10.10.10:5050/v2/my/own/ghcr.io"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt"
override_path = true
"""
GHCR = f"{CLASSIC_HOSTS_DIR}/ghcr.io/hosts.toml"


def test_the_listing_is_read_back_from_the_real_script(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.d"
    (hosts / "ghcr.io").mkdir(parents=True)
    (hosts / "ghcr.io" / "hosts.toml").write_text(SEED_NESTED)
    (hosts / "ghcr.io" / "ca.crt").write_text("PEM\n")
    (hosts / "docker.io").mkdir()
    (hosts / "docker.io" / "hosts.toml").write_text('server = "https://registry-1.docker.io"')
    out = subprocess.run(["sh", "-c", LIST_SCRIPT, "sh", str(hosts)], capture_output=True,
                         text=True, check=True).stdout
    listing = parse_listing(out)
    assert listing == {
        f"{hosts}/docker.io/hosts.toml": 'server = "https://registry-1.docker.io"\n',
        f"{hosts}/ghcr.io/ca.crt": "",
        f"{hosts}/ghcr.io/hosts.toml": SEED_NESTED,
    }
    none = subprocess.run(["sh", "-c", LIST_SCRIPT, "sh", str(tmp_path / "absent")],
                          capture_output=True, text=True, check=True)
    assert parse_listing(none.stdout) == {}


def rendered():  # type: ignore[no-untyped-def]
    """What deploy writes for a mirror plan and these images."""
    return render_hosts_files(make_plan(["mirror"]), registries(IMAGES), None)


def test_the_upstream_procedures_file_fails_for_a_registry_the_images_use() -> None:
    files = rendered()
    checks = hosts_checks({GHCR: SEED_NESTED}, files, CLASSIC_HOSTS_DIR, {"ghcr.io"})
    [c] = checks
    assert c.status is CheckStatus.fail and c.name == "hosts.toml ghcr.io"
    assert c.detail.startswith(f"{GHCR}: not valid TOML")
    assert c.fix == "`invoke deploy` rewrites it"


def test_a_broken_file_for_a_registry_no_image_uses_is_a_warning() -> None:
    files = rendered()
    other = f"{CLASSIC_HOSTS_DIR}/quay.io/hosts.toml"
    [c] = hosts_checks({other: SEED_NESTED}, files, CLASSIC_HOSTS_DIR, {"ghcr.io"})
    assert c.status is CheckStatus.warn and "no image of the plan comes from there" in c.detail
    assert c.fix == f"fix or remove {other} (the plan does not write it)"


def test_as_rendered_is_ok_and_a_valid_other_file_is_a_warning() -> None:
    files = rendered()
    mine = next(f for f in files if f.path == GHCR)
    [ok] = hosts_checks({GHCR: mine.content.decode()}, files, CLASSIC_HOSTS_DIR, {"ghcr.io"})
    assert ok.status is CheckStatus.ok and ok.detail.endswith("as rendered")
    other = 'server = "https://ghcr.io"\n'
    [warn] = hosts_checks({GHCR: other}, files, CLASSIC_HOSTS_DIR, {"ghcr.io"})
    assert warn.status is CheckStatus.warn and "not what deploy writes" in warn.detail


def test_a_ca_that_is_not_on_the_node_is_named() -> None:
    text = ('server = "https://10.30.0.3:5443"\n[host."https://10.30.0.3:5443"]\n'
            'capabilities = ["pull", "resolve"]\nca = "ca.crt"\n')
    [c] = hosts_checks({GHCR: text}, [], CLASSIC_HOSTS_DIR, {"ghcr.io"})
    assert c.status is CheckStatus.fail
    assert f"resolves to {CLASSIC_HOSTS_DIR}/ghcr.io/ca.crt, which does not exist" in c.detail
    present = {GHCR: text, f"{CLASSIC_HOSTS_DIR}/ghcr.io/ca.crt": ""}
    assert hosts_checks(present, [], CLASSIC_HOSTS_DIR, {"ghcr.io"})[0].status is CheckStatus.ok


def test_preflight_fails_a_node_holding_the_broken_file() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-2"].files[GHCR] = SEED_NESTED.encode()
    report = preflight(plan, dict(nodes), images=IMAGES, clock=lambda: NOW)
    failed = {n.name: n.failed for n in report.nodes if n.failed}
    assert list(failed) == ["node-2"], failed
    [c] = failed["node-2"]
    assert c.name == "hosts.toml ghcr.io" and "not valid TOML" in c.detail
    # proxy mode: the plan writes no hosts.toml, so the fix is to remove this one
    assert c.fix == f"fix or remove {GHCR} (the plan does not write it)"
