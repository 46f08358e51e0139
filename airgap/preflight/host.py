"""The node itself: free disk for the bundle, snapd, the clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from airgap.bundle import Bundle
from airgap.deploy.snapstep import HOLD_RENEW_DAYS, hold_state, snap_row
from airgap.nodes import Node
from airgap.preflight.report import Check, CheckStatus, last_line

CLOCK_TOLERANCE = 120.0


HEADROOM = 2 << 30


MIN_FREE = 4 << 30


DF_SCRIPT = 'for p in /var/lib/snapd /var/lib /var /; do [ -e "$p" ] && exec df -Pk "$p"; done'


def check_disk(node: Node, required: int) -> list[Check]:
    res = node.run(["sh", "-c", DF_SCRIPT], check=False)
    lines = res.stdout.strip().splitlines()
    cols = lines[-1].split() if len(lines) >= 2 else []
    if not res.ok or len(cols) < 6 or not cols[3].isdigit():
        why = last_line(res.stderr)
        return [Check("disk", CheckStatus.fail, f"cannot read free space: {why}")]
    free = int(cols[3]) * 1024
    detail = f"{_gib(free)} free on {cols[5]}, need {_gib(required)}"
    if free < required:
        return [Check("disk", CheckStatus.fail, detail,
                      f"free {_gib(required - free)} on {cols[5]} (snaps and images live in /var)")]
    return [Check("disk", CheckStatus.ok, detail)]


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


SNAPD_SOCKET = "/run/snapd.socket"


def check_snapd(node: Node, has_snap: bool) -> list[Check]:
    if not has_snap:
        return [Check("snapd", CheckStatus.fail, "no `snap` command",
                      "install snapd from the distribution media (e.g. the snapd .deb)")]
    start = "systemctl enable --now snapd.socket snapd.service"
    # Without the daemon `snap version` waits ~25 s and prints "snapd unavailable".
    if not node.run(["test", "-S", SNAPD_SOCKET], check=False).ok:
        return [Check("snapd", CheckStatus.fail, f"snapd is not running (no {SNAPD_SOCKET})",
                      start)]
    res = node.run(["snap", "version"], check=False, timeout=60)
    versions = dict(line.split(None, 1) for line in res.stdout.splitlines() if " " in line)
    snapd = versions.get("snapd", "").strip()
    if not res.ok or not snapd or snapd == "unavailable":
        why = last_line(res.stderr) or f"snapd {snapd or 'unknown'}"
        return [Check("snapd", CheckStatus.fail, f"`snap version`: {why}", start)]
    return [Check("snapd", CheckStatus.ok, f"snapd {snapd}")]


def check_refresh_hold(node: Node, has_snap: bool) -> list[Check]:
    """Automatic refreshes held: the store is out of reach, and a refresh is a planned
    upgrade, never snapd's own. Before k8s is installed there is nothing to hold yet."""
    name = "refresh hold"
    if not has_snap:
        return [Check(name, CheckStatus.skip, "no `snap` command (see the snapd check)")]
    if snap_row(node, "k8s") is None:
        return [Check(name, CheckStatus.skip, "k8s not installed yet; deploy holds it")]
    held, how = hold_state(node, renew_within=HOLD_RENEW_DAYS)
    if held:
        return [Check(name, CheckStatus.ok, how)]
    return [Check(name, CheckStatus.fail, how,
                  "run `invoke deploy` again (it holds them), or on the node: "
                  "`snap refresh --hold=forever k8s` (snapd 2.58+), else "
                  "`snap set system refresh.hold=<RFC 3339 time>`")]


def check_clock(node: Node, clock: Callable[[], float], tolerance: float) -> list[Check]:
    before = clock()
    res = node.run(["date", "+%s"], check=False)
    after = clock()
    if not res.ok or not res.stdout.strip().isdigit():
        return [Check("clock", CheckStatus.fail, "cannot read the node's time")]
    offset = int(res.stdout.strip()) - (before + after) / 2
    ntp = node.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], check=False)
    sync = ntp.stdout.strip() if ntp.ok else ""
    detail = f"{offset:+.0f} s from this machine"
    if sync:
        detail += f", NTP synchronised: {sync}"
    if abs(offset) > tolerance:
        return [Check("clock", CheckStatus.fail, detail,
                      "set the time (timedatectl set-time, or an NTP server inside the air gap); "
                      "certificates and join tokens are time-bound")]
    if sync == "no":
        return [Check("clock", CheckStatus.warn, detail,
                      "configure an NTP server reachable inside the air gap (chrony, timesyncd)")]
    return [Check("clock", CheckStatus.ok, detail)]


def required_space(bundle: Path | None) -> int:
    """Free bytes a node needs: the bundle staged and installed (x2) plus headroom."""
    if bundle is None or not bundle.is_dir():
        return MIN_FREE
    dirs = (Bundle(bundle).snaps_dir, Bundle(bundle).images_dir)
    size = sum(p.stat().st_size for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file())
    return max(MIN_FREE, 2 * size + HEADROOM)
