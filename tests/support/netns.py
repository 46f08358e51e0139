"""Network namespaces as test hosts: real addresses that are not loopback, and real
isolation (a host on one network cannot reach a host on another).

Each lab gets its own switch namespace holding one bridge per network; member
namespaces hang off those bridges by veth pairs. No namespace has a default route.
Subnets are /27s carved from TEST_RANGE and handed out under a file lock, so tests
from several processes can run at once. A blackhole route for TEST_RANGE in the root
namespace (added before anything is created, removed when the last user leaves)
means a packet for a test address with no namespace behind it goes nowhere instead
of out of the machine. Commands run with `nsenter --net=/run/netns/NAME`, never `ip
netns exec` (it remounts /sys and breaks runc). Leftovers from dead processes are
removed on the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import NETNS_DIR, PROXY_VARS, in_netns

TEST_RANGE = ipaddress.ip_network("10.213.240.0/20")
SUBNET_PREFIX = 27
STATE_DIR = Path("/run/airgap-test-netns")
_labs = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _owner(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _delete_netns(name: str) -> None:
    """Kill what still runs in it (it is ours: the name is unique), then delete it."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def _purge_dead() -> None:
    """Under the lock: drop registrations, subnets and namespaces of dead processes."""
    for sub in ("users", "subnets"):
        d = STATE_DIR / sub
        d.mkdir(exist_ok=True)
        for f in d.iterdir():
            pid = _owner(f) if sub == "subnets" else int(f.name) if f.name.isdigit() else None
            if pid is None or not _alive(pid):
                f.unlink(missing_ok=True)
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.iterdir():
            parts = ns.name.split("-")
            ours = len(parts) >= 3 and parts[0] == "ag" and parts[1].isdigit()
            if ours and not _alive(int(parts[1])):
                _delete_netns(ns.name)


def _blackhole_present() -> bool:
    out = _ip("route", "show", "type", "blackhole", str(TEST_RANGE)).stdout
    return str(TEST_RANGE) in out


_in_process = 0  # labs open in this process; the pid's registration covers them all


def _register() -> None:
    global _in_process
    _in_process += 1
    if _in_process > 1:
        return
    with _locked():
        _purge_dead()
        if not _blackhole_present():
            _ip("route", "add", "blackhole", str(TEST_RANGE))
            (STATE_DIR / "route-added").write_text("1")
        (STATE_DIR / "users" / str(os.getpid())).touch()


def _unregister() -> None:
    global _in_process
    _in_process -= 1
    if _in_process > 0:
        return
    with _locked():
        (STATE_DIR / "users" / str(os.getpid())).unlink(missing_ok=True)
        _purge_dead()
        if not any((STATE_DIR / "users").iterdir()) and (STATE_DIR / "route-added").exists():
            _ip("route", "del", "blackhole", str(TEST_RANGE), check=False)
            (STATE_DIR / "route-added").unlink(missing_ok=True)


def _allocate_subnet() -> ipaddress.IPv4Network:
    with _locked():
        _purge_dead()
        for index, subnet in enumerate(TEST_RANGE.subnets(new_prefix=SUBNET_PREFIX)):
            slot = STATE_DIR / "subnets" / str(index)
            if not slot.exists():
                slot.write_text(str(os.getpid()))
                assert isinstance(subnet, ipaddress.IPv4Network)
                return subnet
    raise RuntimeError(f"no free /{SUBNET_PREFIX} left in {TEST_RANGE}")


def _release_subnet(subnet: ipaddress.IPv4Network) -> None:
    subnets = list(TEST_RANGE.subnets(new_prefix=SUBNET_PREFIX))
    with _locked():
        slot = STATE_DIR / "subnets" / str(subnets.index(subnet))
        if _owner(slot) == os.getpid():
            slot.unlink(missing_ok=True)


@dataclass
class Network:
    """One bridge (in the lab's switch namespace) and its subnet."""

    name: str
    subnet: ipaddress.IPv4Network
    bridge: str
    host_address: str | None = None  # the root namespace's address, when host=True
    _hosts: Iterator[ipaddress.IPv4Address] = field(
        repr=False, default_factory=lambda: iter(())
    )

    def next_address(self) -> str:
        return str(next(self._hosts))


@dataclass
class Namespace:
    """A test host: a named network namespace with one interface per network."""

    name: str
    addresses: dict[str, str] = field(default_factory=dict)  # network -> IP
    interfaces: dict[str, str] = field(default_factory=dict)  # network -> ifname

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def address(self) -> str:
        """The address on its first network."""
        return next(iter(self.addresses.values()))

    def argv(self, argv: Sequence[str]) -> list[str]:
        return in_netns(self.name, argv)

    def run(self, argv: Sequence[str], *, check: bool = True, env: Mapping[str, str] | None = None,
            timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside this namespace (nsenter); proxy variables only if env sets them."""
        full_env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
        full_env.update(env or {})
        proc = subprocess.run(
            self.argv(argv), capture_output=True, text=True, env=full_env, timeout=timeout,
            input=input, stdin=None if input is not None else subprocess.DEVNULL, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in {self.name}: {' '.join(argv)} failed ({proc.returncode})\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc


class NetnsLab:
    """Namespaces joined by bridges on private /27s of TEST_RANGE; cleanup() undoes all.

    lab.network("airgap") makes a network (host=True also gives the root namespace an
    address on it, so this process can reach its members); lab.add("client",
    networks=["airgap"]) makes a namespace with one interface per network. Calling the
    lab is the same as add().
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"ag-{os.getpid()}-{next(_labs)}"
        self.networks: dict[str, Network] = {}
        self.namespaces: dict[str, Namespace] = {}
        self._host_links: list[str] = []
        self._subnets: list[ipaddress.IPv4Network] = []
        self._veths = itertools.count()
        self._created: list[str] = []
        self._registered = False
        _register()
        self._registered = True
        try:
            self.switch = self._create_ns(f"{self.prefix}-sw")
        except BaseException:
            self.cleanup()
            raise

    def _create_ns(self, name: str) -> str:
        if len(name) > 60:
            raise ValueError(f"namespace name too long: {name}")
        _ip("netns", "add", name)
        self._created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def network(self, name: str = "net0", *, host: bool = False) -> Network:
        if name in self.networks:
            return self.networks[name]
        subnet = _allocate_subnet()
        self._subnets.append(subnet)
        bridge = f"br{len(self.networks)}"
        _ip("-n", self.switch, "link", "add", bridge, "type", "bridge")
        _ip("-n", self.switch, "link", "set", bridge, "up")
        net = Network(name, subnet, bridge, _hosts=iter(subnet.hosts()))
        if host:
            # Root-side interface names must be unique machine-wide and <= 15 chars.
            link = f"agh{os.getpid() % 10**7}{next(self._veths)}"[:15]
            peer = f"h{len(self.networks)}"
            _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", self.switch)
            self._host_links.append(link)
            net.host_address = net.next_address()
            _ip("addr", "add", f"{net.host_address}/{subnet.prefixlen}", "dev", link)
            _ip("link", "set", link, "up")
            _ip("-n", self.switch, "link", "set", peer, "master", bridge)
            _ip("-n", self.switch, "link", "set", peer, "up")
        self.networks[name] = net
        return net

    def add(self, name: str, networks: Sequence[str] = ("net0",)) -> Namespace:
        """A namespace `<prefix>-<name>` with eth0, eth1... on the named networks."""
        if name in self.namespaces:
            raise ValueError(f"namespace {name} already exists in this lab")
        ns = Namespace(self._create_ns(f"{self.prefix}-{name}"))
        self.namespaces[name] = ns
        for i, net_name in enumerate(networks):
            net = self.network(net_name)
            ifname, peer = f"eth{i}", f"v{next(self._veths)}"
            _ip("-n", ns.name, "link", "add", ifname, "type", "veth", "peer", "name", peer,
                "netns", self.switch)
            _ip("-n", self.switch, "link", "set", peer, "master", net.bridge)
            _ip("-n", self.switch, "link", "set", peer, "up")
            address = net.next_address()
            _ip("-n", ns.name, "addr", "add", f"{address}/{net.subnet.prefixlen}", "dev", ifname)
            _ip("-n", ns.name, "link", "set", ifname, "up")
            ns.addresses[net_name] = address
            ns.interfaces[net_name] = ifname
        return ns

    __call__ = add

    def run(self, ns: Namespace | str, argv: Sequence[str], **kwargs: object,
            ) -> subprocess.CompletedProcess[str]:
        target = ns if isinstance(ns, Namespace) else self.namespaces[ns]
        return target.run(argv, **kwargs)  # type: ignore[arg-type]

    def cleanup(self) -> None:
        """Delete every namespace and link made here, release subnets and the route."""
        errors: list[str] = []
        for name in reversed(self._created):
            try:
                _delete_netns(name)
            except Exception as exc:  # keep going: cleanup must be thorough
                errors.append(f"{name}: {exc}")
        self._created.clear()
        for link in self._host_links:
            _ip("link", "del", link, check=False)  # normally gone with the switch
        self._host_links.clear()
        for subnet in self._subnets:
            _release_subnet(subnet)
        self._subnets.clear()
        if self._registered:
            self._registered = False
            _unregister()
        if errors:
            raise RuntimeError("netns cleanup: " + "; ".join(errors))

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def netns_lab(prefix: str | None = None) -> Iterator[NetnsLab]:
    lab = NetnsLab(prefix)
    try:
        yield lab
    finally:
        lab.cleanup()
