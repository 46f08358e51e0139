"""The host side of the lab: LXD itself, blackhole routes, and the lab's firewall rules.

Why these exist (FACTS, "The lab on these machines"):
- PID 1 is not systemd here, so LXD is started by hand and initialised with a preseed
  (``lxd init --auto`` fails on these machines and creates no pool).
- Before a lab's bridges exist, its address block is blackholed in the root namespace,
  so a packet to a lab address with no bridge behind it goes nowhere, never out.
- br_netfilter sends bridged frames through iptables; LXD's own firewall then blocks
  traffic even on one bridge. The lab turns LXD's firewall off and installs its own
  rules in the mangle table (before filter): no forwarding between different bridges,
  no input from the air-gapped bridge to the host except DHCP, DNS and replies. Each
  rule carries a comment naming the lab, which is how down finds and removes them.
- LXD leaves rules behind when a network is deleted ("generated for LXD network X");
  down removes those for the lab's own bridges.

Run ``python -m lab.host`` (or ``invoke lab.host``) to start and initialise LXD.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from airgap import binaries, process
from airgap.errors import AirgapError
from lab.topology import FIREWALL_TAG, LabSpec, Upstream

log = logging.getLogger(__name__)

LXD_DIR = Path(os.environ.get("LXD_DIR", "/var/lib/lxd"))
LXD_SOCKET = LXD_DIR / "unix.socket"
LXD_LOG = Path(os.environ.get("K8S_AIRGAP_LXD_LOG", "/var/log/k8s-airgap-lxd.log"))
LXD_START_TIMEOUT = 60
STORAGE_POOL = "default"
BLACKHOLE_METRIC = 4000
LXD_RULE_COMMENT = "generated for LXD network"


def lxd_missing_error(why: str) -> AirgapError:
    return AirgapError(
        f"LXD is not available: {why}",
        resolution=(
            "Install LXD (Debian: apt-get install lxd lxd-client) and start it with "
            "`invoke lab.host` (runs `lxd --group lxd` in the background, waits for it "
            "and creates a storage pool). Where systemd runs: systemctl start lxd."
        ),
    )


def lxd_answers(sock: Path = LXD_SOCKET) -> bool:
    """True when something accepts connections on LXD's unix socket."""
    if not sock.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_lxd(timeout: float = LXD_START_TIMEOUT) -> bool:
    """Start the LXD daemon if it is not answering; True if this call started it."""
    if lxd_answers():
        return False
    lxd = shutil.which("lxd")
    if lxd is None:
        raise lxd_missing_error("the lxd binary is not installed")
    if os.geteuid() != 0:
        raise lxd_missing_error("it is not running, and starting it needs root")
    LXD_LOG.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting %s --group lxd (log %s)", lxd, LXD_LOG)
    # A daemon, so not process.run (which waits for exit): detached into its own
    # session, so it outlives this process and a Ctrl-C here.
    with open(LXD_LOG, "ab") as out:
        subprocess.Popen(
            [lxd, "--group", "lxd", "--logfile", str(LXD_LOG)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    process.run(
        ["lxd", "waitready", f"--timeout={int(timeout)}"], timeout=timeout + 10,
        resolution=f"LXD did not become ready in {timeout} s; read {LXD_LOG}.",
    )
    return True


def client(project: str | None = None) -> Any:
    """A pylxd client on the local socket, or a clear error when LXD is not there."""
    import pylxd
    from pylxd.exceptions import ClientConnectionFailed

    if not lxd_answers():
        raise lxd_missing_error(f"nothing answers on {LXD_SOCKET}")
    try:
        return pylxd.Client(endpoint=str(LXD_SOCKET), project=project)
    except ClientConnectionFailed as exc:
        raise lxd_missing_error(str(exc)) from None


def initialise(c: Any) -> list[str]:
    """The preseed the lab needs: a dir pool and a root disk in the default profile."""
    done: list[str] = []
    if not c.storage_pools.exists(STORAGE_POOL):
        c.storage_pools.create({"name": STORAGE_POOL, "driver": "dir", "config": {}})
        done.append(f"created storage pool {STORAGE_POOL} (dir)")
    profile = c.profiles.get("default")
    if "root" not in profile.devices:
        devices = dict(profile.devices)
        devices["root"] = {"type": "disk", "path": "/", "pool": STORAGE_POOL}
        profile.devices = devices
        profile.save()
        done.append("added a root disk to the default profile")
    return done


def check_binaries() -> None:
    """Every program the lab runs on this host, or LXD runs for it (dnsmasq for the
    bridges), is installed: one error naming each missing one and its Debian package."""
    binaries.check(["lab"])


# LXD's "server settings for a production setup" (the LXD snap raises these itself;
# Debian's package does not): every unprivileged container shares the host's per-user
# limits, and with the kernel's defaults (keyrings: 200) a dozen systemd containers fail
# to boot (seen: "systemd is degraded: dev-mqueue.mount, run-lock.mount failed" with 12).
HOST_LIMITS = {
    "fs/inotify/max_user_instances": 1024,
    "fs/inotify/max_user_watches": 1048576,
    "kernel/keys/maxkeys": 2000,
    "kernel/keys/maxbytes": 2000000,
}


def raise_limits(proc: Path = Path("/proc/sys")) -> list[str]:
    """Raise the host limits above to at least their values (never lower one)."""
    done = []
    for key, want in HOST_LIMITS.items():
        path = proc / key
        try:
            have = int(path.read_text().split()[0])
            if have < want:
                path.write_text(f"{want}\n")
                done.append(f"{key.replace('/', '.')} {have} -> {want}")
        except (OSError, ValueError, IndexError) as exc:
            log.warning("cannot raise %s: %s", key, exc)
    return done


def setup_host() -> list[str]:
    """Start LXD if needed and make sure it is initialised; returns what was done."""
    check_binaries()
    done = raise_limits()
    if start_lxd():
        done.append(f"started LXD (log {LXD_LOG})")
    done += initialise(client())
    return done


def vm_support(c: Any) -> tuple[bool, str]:
    """Whether the server can run VMs, and why not (instance types and /dev/vhost-vsock)."""
    env = c.host_info.get("environment", {})
    drivers = str(env.get("driver", ""))
    if "qemu" not in drivers.split(" | ") and "qemu" not in drivers:
        return False, f"the LXD server has no VM driver (drivers: {drivers or 'none'})"
    if not Path("/dev/vhost-vsock").exists():
        return False, "/dev/vhost-vsock is missing (the LXD VM agent needs vhost_vsock)"
    return True, "qemu driver and vhost-vsock present"


# Routes -----------------------------------------------------------------


def _ip(args: list[str], check: bool = True) -> str:
    return process.run(["ip", *args], check=check).stdout


def blackhole_present(spec: LabSpec) -> bool:
    out = _ip(["-4", "route", "show", "type", "blackhole", str(spec.block)])
    return bool(out.strip())


def add_blackhole(spec: LabSpec) -> bool:
    """Blackhole the lab's /23 (idempotent); the bridges' /24 routes win while they exist."""
    if blackhole_present(spec):
        return False
    _ip(["-4", "route", "add", "blackhole", str(spec.block), "metric", str(BLACKHOLE_METRIC)])
    return True


def remove_blackhole(spec: LabSpec) -> bool:
    removed = False
    while blackhole_present(spec):
        _ip(["-4", "route", "del", "blackhole", str(spec.block)])
        removed = True
    return removed


# Firewall ---------------------------------------------------------------


def lab_rules(spec: LabSpec) -> list[list[str]]:
    """The lab's mangle rules as iptables arguments (without -t/-A), in order."""
    tag = ["-m", "comment", "--comment", spec.firewall_tag]
    ag, sv = spec.airgap_bridge, spec.services_bridge
    rules: list[list[str]] = []
    if spec.upstream is Upstream.internet:
        # Internet mode: the proxy alone may leave through the host's NAT (not verified
        # on these machines: the network-safety rule forbids sending to the internet).
        proxy = spec.member("proxy").services
        rules.append(["FORWARD", "-i", sv, "-s", f"{proxy}/32", "!", "-o", ag,
                      *tag, "-j", "ACCEPT"])
        rules.append(["FORWARD", "-o", sv, "-d", f"{proxy}/32", "!", "-i", ag,
                      "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                      *tag, "-j", "ACCEPT"])
    for br in (ag, sv):
        rules.append(["FORWARD", "-i", br, "!", "-o", br, *tag, "-j", "DROP"])
        rules.append(["FORWARD", "-o", br, "!", "-i", br, *tag, "-j", "DROP"])
    rules += [
        ["INPUT", "-i", ag, "-p", "udp", "--dport", "67", *tag, "-j", "ACCEPT"],
        ["INPUT", "-i", ag, "-p", "udp", "--dport", "53", *tag, "-j", "ACCEPT"],
        ["INPUT", "-i", ag, "-p", "tcp", "--dport", "53", *tag, "-j", "ACCEPT"],
        ["INPUT", "-i", ag, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
         *tag, "-j", "ACCEPT"],
        ["INPUT", "-i", ag, *tag, "-j", "DROP"],
    ]
    return rules


def _iptables(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return process.run(["iptables", "-w", "10", *args], check=check,
                       resolution="apt-get install iptables; the lab needs root.")


def add_rules(spec: LabSpec) -> int:
    """Append the lab's mangle rules that are not there yet; returns how many were added."""
    added = 0
    for rule in lab_rules(spec):
        if _iptables(["-t", "mangle", "-C", *rule], check=False).returncode == 0:
            continue
        _iptables(["-t", "mangle", "-A", *rule])
        added += 1
    return added


_TABLES = ("filter", "nat", "mangle", "raw")


def _rules_matching(table: str, pred: Any) -> list[list[str]]:
    out = process.run(["iptables-save", "-t", table], check=False).stdout
    found = []
    for line in out.splitlines():
        if line.startswith("-A ") and pred(line):
            found.append(shlex.split(line)[1:])
    return found


def remove_rules(spec: LabSpec) -> int:
    """Delete the lab's own rules and the rules LXD left for the lab's bridges."""
    mine = re.compile(rf'--comment "?{re.escape(spec.firewall_tag)}"?(\s|$)')
    lxd = [f"{LXD_RULE_COMMENT} {b}" for b in spec.bridges]

    def ours(line: str) -> bool:
        return bool(mine.search(line)) or any(
            f'"{c}"' in line or line.rstrip().endswith(c) for c in lxd
        )

    removed = 0
    for table in _TABLES:
        for rule in _rules_matching(table, ours):
            if _iptables(["-t", table, "-D", *rule], check=False).returncode == 0:
                removed += 1
    removed += _remove_lxd_nft(spec)
    if removed:
        _drop_empty_mangle()
    return removed


def _drop_empty_mangle() -> None:
    """Delete the mangle table if no rule is left in it (the lab's rules created it).

    iptables-nft creates the table on first use and never deletes it; an empty table
    is no rule, but removing it leaves the firewall exactly as it was before the lab.
    """
    if shutil.which("nft") is None or "nf_tables" not in process.run(
            ["iptables", "--version"], check=False).stdout:
        return
    listing = process.run(["nft", "list", "table", "ip", "mangle"], check=False)
    if listing.returncode != 0:
        return
    body = [ln.strip() for ln in listing.stdout.splitlines()]
    structural = ("table ", "chain ", "type ", "}", "#", "")
    if all(ln.startswith(structural) for ln in body):
        process.run(["nft", "delete", "table", "ip", "mangle"], check=False)


def _remove_lxd_nft(spec: LabSpec) -> int:
    """LXD's nftables driver keeps per-network chains in table inet lxd; drop ours."""
    if shutil.which("nft") is None:
        return 0
    out = process.run(["nft", "list", "table", "inet", "lxd"], check=False)
    if out.returncode != 0:
        return 0
    removed = 0
    for m in re.finditer(r"^\s*chain (\S+) \{", out.stdout, re.M):
        chain = m.group(1)
        if any(chain.endswith(f".{b}") for b in spec.bridges):
            process.run(["nft", "flush", "chain", "inet", "lxd", chain], check=False)
            if process.run(["nft", "delete", "chain", "inet", "lxd", chain],
                           check=False).returncode == 0:
                removed += 1
    return removed


def any_lab_rules() -> list[str]:
    """Every rule tagged by any lab (for status and leak checks)."""
    found = []
    for table in _TABLES:
        for rule in _rules_matching(table, lambda line: FIREWALL_TAG in line):
            found.append(f"{table}: {shlex.join(rule)}")
    return found


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = setup_host()
    except AirgapError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    c = client()
    ok, why = vm_support(c)
    print("\n".join(done) or "LXD already running and initialised")
    print(f"LXD {c.host_info['environment'].get('server_version')}: "
          f"instances will be {'VMs' if ok else 'containers'} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
