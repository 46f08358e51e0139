"""The node itself: free disk on each filesystem that receives data, snapd, the clock
(against this machine, and between the nodes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle import Bundle
from airgap.deploy.context import STATE_DIR
from airgap.deploy.snapstep import HOLD_RENEW_DAYS, hold_state, snap_row
from airgap.nodes import Node
from airgap.preflight.report import Check, CheckStatus, last_line

CLOCK_TOLERANCE = 120.0


HEADROOM = 2 << 30


MIN_FREE = 4 << 30


# Each path that receives data, measured on the filesystem it is on (its nearest existing
# ancestor before install): one exec, a "path PATH MEASURED" line before each df.
DF_SCRIPT = r"""
for p in "$@"; do
  q=$p
  while [ ! -e "$q" ]; do q=$(dirname "$q"); done
  echo "path $p $q"
  df -Pk "$q"
done
"""


SNAPS_PATH = "/var/lib/snapd"
RUNTIME_PATH = "/var/snap/k8s/common"
STAGING_PATH = STATE_DIR

# Without --bundle the sizes are unknown: estimates that, with one filesystem's headroom,
# add up to MIN_FREE.
EST_SNAPS = 1 << 30
EST_RUNTIME = 1 << 30


@dataclass(frozen=True)
class DiskNeed:
    path: str
    bytes: int
    what: str


@dataclass(frozen=True)
class Filesystem:
    device: str
    mount: str
    free: int


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) if d.is_dir() else 0


def disk_needs(bundle: Path | None) -> list[DiskNeed]:
    """Bytes each path that receives data needs, from the bundle: the snaps x2 (the file
    and snapd's installed copy), the side-load archives x2 (the archive and the content
    store it is imported into; else the bundle's images, pulled into the store and
    unpacked: x2), and what deploy transfers to the node."""
    if bundle is None or not bundle.is_dir():
        return [DiskNeed(SNAPS_PATH, EST_SNAPS, "snaps (estimate: no --bundle)"),
                DiskNeed(RUNTIME_PATH, EST_RUNTIME, "images (estimate: no --bundle)")]
    layout = Bundle(bundle)
    snaps = sum(p.stat().st_size for p in layout.snap_files())
    archives = sum(p.stat().st_size for p in layout.archives())
    images = _size(layout.oci_dir)
    sent = sum(p.stat().st_size for p in layout.snaps_dir.iterdir() if p.is_file()) \
        if layout.snaps_dir.is_dir() else 0
    if layout.manifest.is_file():
        sent += layout.manifest.stat().st_size
    if archives:
        runtime = DiskNeed(RUNTIME_PATH, 2 * archives,
                           f"side-load archives {_gib(archives)} x2 (archives, content store)")
    elif images:
        runtime = DiskNeed(RUNTIME_PATH, 2 * images,
                           f"images {_gib(images)} x2 (content store, unpacked)")
    else:
        runtime = DiskNeed(RUNTIME_PATH, EST_RUNTIME, "images (estimate: none in the bundle)")
    return [DiskNeed(SNAPS_PATH, 2 * snaps, f"snaps {_gib(snaps)} x2 (file, installed copy)"),
            runtime,
            DiskNeed(STAGING_PATH, sent, f"the bundle deploy sends {_gib(sent)}")]


def parse_df_paths(text: str) -> dict[str, Filesystem]:
    """DF_SCRIPT's output: each path -> the filesystem its nearest existing ancestor is on."""
    out: dict[str, Filesystem] = {}
    path = ""
    for line in text.splitlines():
        cols = line.split()
        if line.startswith("path ") and len(cols) >= 3:
            path = cols[1]
        elif path and len(cols) >= 6 and cols[3].isdigit() and cols[0] != "Filesystem":
            out[path] = Filesystem(cols[0], " ".join(cols[5:]), int(cols[3]) * 1024)
            path = ""
    return out


def check_disk(node: Node, needs: list[DiskNeed], headroom: int = HEADROOM) -> list[Check]:
    """One check per filesystem: its free space against the sum of the needs of the paths
    on it (a small separate /var/snap fails, though / has room), plus ``headroom``."""
    res = node.run(["sh", "-c", DF_SCRIPT, "df", *(n.path for n in needs)], check=False)
    found = parse_df_paths(res.stdout)
    missing = [n.path for n in needs if n.path not in found]
    if missing:
        why = last_line(res.stderr) or "no df line"
        return [Check("disk", CheckStatus.fail,
                      f"cannot read free space for {', '.join(missing)}: {why}")]
    by_fs: dict[tuple[str, str], list[DiskNeed]] = {}
    for n in needs:
        fs = found[n.path]
        by_fs.setdefault((fs.device, fs.mount), []).append(n)
    out = []
    for (device, mount), on in by_fs.items():
        free = found[on[0].path].free
        need = sum(n.bytes for n in on) + headroom
        holds = ", ".join(f"{n.path} ({n.what})" for n in on)
        detail = (f"{_gib(free)} free on {mount} ({device}), need {_gib(need)}: {holds}, "
                  f"{_gib(headroom)} headroom")
        if free < need:
            out.append(Check(f"disk {mount}", CheckStatus.fail, detail,
                             f"free {_gib(need - free)} on {mount}, or grow it: it holds "
                             f"{', '.join(n.path for n in on)}"))
        else:
            out.append(Check(f"disk {mount}", CheckStatus.ok, detail))
    return out


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


@dataclass(frozen=True)
class ClockReading:
    offset: float  # seconds the node is ahead of this machine (negative: behind)
    ntp: str  # timedatectl's NTPSynchronized: yes, no, or "" (unknown)
    simulated: float = 0.0  # skew added at the check's input (see check_clock)


def read_clock(node: Node, clock: Callable[[], float], skew: float = 0.0
               ) -> ClockReading | None:
    """The node's time against ``clock()`` (the midpoint of the exec), plus ``skew``."""
    before = clock()
    res = node.run(["date", "+%s.%N"], check=False)
    after = clock()
    text = res.stdout.strip()
    whole, _, frac = text.partition(".")
    if not res.ok or not whole.isdigit():
        return None
    node_time = float(f"{whole}.{frac}") if frac.isdigit() else float(whole)
    ntp = node.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], check=False)
    return ClockReading(node_time + skew - (before + after) / 2,
                        ntp.stdout.strip() if ntp.ok else "", skew)


def check_clock(node: Node, clock: Callable[[], float], tolerance: float,
                skew: float = 0.0) -> tuple[list[Check], ClockReading | None]:
    """The node's clock against this machine's.

    ``skew`` is added to the time the node reports: the lab's nodes are LXD containers,
    which share the host's clock, so a skew is simulated at the check's input (the
    report says so)."""
    reading = read_clock(node, clock, skew)
    if reading is None:
        return [Check("clock", CheckStatus.fail, "cannot read the node's time")], None
    detail = f"{reading.offset:+.0f} s from this machine"
    if reading.simulated:
        detail += f" (simulated: {reading.simulated:+.0f} s added to the node's time)"
    if reading.ntp:
        detail += f", NTP synchronised: {reading.ntp}"
    if abs(reading.offset) > tolerance:
        return [Check("clock", CheckStatus.fail, detail,
                      "set the time (timedatectl set-time, or an NTP server inside the air gap); "
                      "certificates and join tokens are time-bound")], reading
    if reading.ntp == "no":
        return [Check("clock", CheckStatus.warn, detail,
                      "configure an NTP server reachable inside the air gap (chrony, timesyncd)"
                      )], reading
    return [Check("clock", CheckStatus.ok, detail)], reading


def check_clock_between(offsets: Mapping[str, float], tolerance: float) -> dict[str, Check]:
    """Across nodes: each node against the node whose clock is farthest from its own.
    Each may be within ``tolerance`` of this machine and still be twice that from another;
    the two ends of the spread fail, naming each other and the skew."""
    if len(offsets) < 2:
        return {}
    spread = max(offsets.values()) - min(offsets.values())
    out = {}
    for name, off in offsets.items():
        other = max((o for o in offsets if o != name), key=lambda o: abs(offsets[o] - off))
        skew = off - offsets[other]
        if abs(skew) > tolerance:
            side = "ahead of" if skew > 0 else "behind"
            out[name] = Check("clock between nodes", CheckStatus.fail,
                              f"{abs(skew):.0f} s {side} {other} (tolerance {tolerance:.0f} s)",
                              f"set the time on {name} and {other} from one NTP server inside "
                              "the air gap; the cluster's certificates and tokens are "
                              "time-bound")
        else:
            out[name] = Check("clock between nodes", CheckStatus.ok,
                              f"spread {spread:.0f} s across {len(offsets)} nodes "
                              f"(tolerance {tolerance:.0f} s)")
    return out


def required_space(bundle: Path | None) -> int:
    """Free bytes a node needs: the bundle staged and installed (x2) plus headroom."""
    if bundle is None or not bundle.is_dir():
        return MIN_FREE
    dirs = (Bundle(bundle).snaps_dir, Bundle(bundle).images_dir)
    size = sum(p.stat().st_size for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file())
    return max(MIN_FREE, 2 * size + HEADROOM)
