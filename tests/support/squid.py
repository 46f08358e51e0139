"""A real squid (Debian's) as the site's egress proxy: an allow-list, CONNECT to the
registry ports, no cache, its own config and logs.

squid drops privileges to `proxy`, so its logs and pid live in a directory under /run
owned by that user (pytest's temp dirs are root-only). DNS goes nowhere but the
namespace's own loopback: names resolve only through the hosts file given here, so a
test proxy can never look anything up on the machine's resolver. Remember: Go programs
never proxy localhost/127.x, so a proxied client must name the registry by a namespace
address or by a name only squid resolves (`hosts`).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, spawn, terminate, wait_until

SQUID_BIN = "/usr/sbin/squid"
START_TIMEOUT = 30.0
_counter = itertools.count()


def _is_net(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def render_config(
    *, bind: str, port: int, run_dir: Path, hosts_file: Path, allow_hosts: Sequence[str],
    connect_ports: Sequence[int],
) -> str:
    # Names and single IPs match the URL's host literally (dstdomain -n: no DNS, no
    # reverse lookups); only CIDRs need `dst`, which resolves the destination.
    names = [h for h in allow_hosts if "/" not in h or not _is_net(h)]
    nets = [h for h in allow_hosts if "/" in h and _is_net(h)]
    ports = " ".join(str(p) for p in sorted({443, *connect_ports}))
    lines = [
        f"http_port {bind}:{port}",
        f"pid_filename {run_dir / 'squid.pid'}",
        f"cache_log {run_dir / 'cache.log'}",
        f"access_log stdio:{run_dir / 'access.log'} squid",
        "cache_store_log none",
        "logfile_rotate 0",
        f"coredump_dir {run_dir}",
        "cache deny all",
        "cache_mem 8 MB",
        "netdb_filename none",
        f"hosts_file {hosts_file}",
        "dns_nameservers 127.0.0.1",
        "dns_timeout 3 seconds",
        "shutdown_lifetime 0 seconds",
        "pinger_enable off",
        "visible_hostname airgap-test-proxy",
        f"acl SSL_ports port {ports}",
        f"acl Safe_ports port 80 {ports}",
        "acl CONNECT method CONNECT",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT !SSL_ports",
    ]
    if names:
        lines.append("acl allowed_names dstdomain -n " + " ".join(names))
        lines.append("http_access allow allowed_names")
    if nets:
        lines.append("acl allowed_nets dst " + " ".join(nets))
        lines.append("http_access allow allowed_nets")
    lines.append("http_access deny all")
    return "\n".join(lines) + "\n"


@dataclass
class Squid:
    bind: str
    port: int
    config_file: Path
    access_log: Path
    cache_log: Path
    run_dir: Path
    service_name: str
    netns: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"

    @property
    def url(self) -> str:
        """What HTTP(S)_PROXY should say."""
        return f"http://{self.address}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def access_lines(self) -> list[str]:
        """The access log so far (a CONNECT shows up only when its tunnel closes)."""
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def start(self) -> None:
        if self.running:
            return
        self._log_offset = self.cache_log.stat().st_size if self.cache_log.exists() else 0
        self._proc = spawn(
            [SQUID_BIN, "-N", "-n", self.service_name, "-f", str(self.config_file)],
            self.run_dir / "stdout.log", netns=self.netns,
        )
        # Readiness from its own log: a probe connection would add a line to access.log.
        wait_until(f"squid on {self.address}", self._accepting,
                   timeout=START_TIMEOUT, proc=self._proc, log_file=self.cache_log)

    def _accepting(self) -> bool:
        try:
            with self.cache_log.open("rb") as fh:
                fh.seek(self._log_offset)
                log = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return False
        return "Accepting HTTP Socket connections at conn" in log and f":{self.port} " in log

    def stop(self) -> None:
        terminate(self._proc, timeout=15)
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def start_squid(
    workdir: Path,
    *,
    bind: str = "127.0.0.1",
    port: int = 0,
    allow_hosts: Sequence[str] = (),
    connect_ports: Sequence[int] = (),
    hosts: Mapping[str, str] | None = None,
    netns: str | None = None,
) -> Squid:
    """Start squid listening on bind:port (in netns if given) and wait until it accepts.

    allow_hosts: destination names (dstdomain; ".example.test" covers subdomains) and/or
    IPs/CIDRs (dst); everything else is denied. connect_ports: ports CONNECT may reach
    (443 always); add the registry ports. hosts: name -> IP, the only names squid
    resolves.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if port == 0:
        port = free_port("0.0.0.0" if bind in ("0.0.0.0", "") else bind, netns)
    proxy = pwd.getpwnam("proxy")
    run_dir = Path(tempfile.mkdtemp(prefix="ag-squid-", dir="/run"))
    os.chown(run_dir, proxy.pw_uid, proxy.pw_gid)
    hosts_file = run_dir / "hosts"
    hosts_file.write_text(
        "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in (hosts or {}).items())
    )
    os.chmod(hosts_file, 0o644)
    config_file = workdir / "squid.conf"
    config_file.write_text(render_config(
        bind=bind, port=port, run_dir=run_dir, hosts_file=hosts_file,
        allow_hosts=allow_hosts, connect_ports=connect_ports,
    ))
    squid = Squid(
        bind=bind, port=port, config_file=config_file, access_log=run_dir / "access.log",
        cache_log=run_dir / "cache.log", run_dir=run_dir,
        service_name=f"agsquid{os.getpid()}x{next(_counter)}", netns=netns,
    )
    try:
        squid.start()
    except BaseException:
        squid.cleanup()
        raise
    return squid
