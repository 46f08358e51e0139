"""A throwaway OpenSSH server on loopback, for testing SSHNode against the real thing.

Each server gets its own host key, client key, authorized_keys and config in a private
work directory, listens on 127.0.0.1 only, and never touches /etc/ssh. A temporary
non-root user with passwordless sudo (sudoers.d) exercises SSHNode's ``sudo -n`` path;
the user and its sudoers entry are removed by ``remove_sudo_user``.

The work directory lives under /tmp with mode 0755, not in pytest's 0700 tmp_path:
sshd reads AuthorizedKeysFile as the logging-in user, so the non-root user must be
able to reach it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from airgap import process
from tests.support import free_port, spawn, tail, terminate, wait_until

SSHD_BIN = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it
SUDOERS_DIR = Path("/etc/sudoers.d")
START_TIMEOUT = 20.0


@dataclass
class SSHServer:
    """A running sshd: where to connect, which key to use, and its host key line."""

    host: str
    port: int
    workdir: Path
    client_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA..." (no comment)
    log_file: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def known_hosts_line(self) -> str:
        """The known_hosts entry for this server (OpenSSH's [host]:port form)."""
        return f"[{self.host}]:{self.port} {self.host_public_key}\n"

    def log(self) -> str:
        return tail(self.log_file, 40)

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _keygen(path: Path, comment: str) -> None:
    process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _config(workdir: Path, host: str, port: int, users: list[str]) -> str:
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {host}",
        f"HostKey {workdir / 'ssh_host_ed25519_key'}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {' '.join(users)}",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        f"Subsystem sftp {SFTP_SERVER}",
        "LogLevel VERBOSE",
        "",
    ])


def start_sshd(host: str = "127.0.0.1", users: list[str] | None = None) -> SSHServer:
    """Start sshd -D on host:<free port> accepting one fresh client key for ``users``."""
    if not host.startswith("127."):
        raise ValueError(f"test sshd listens on loopback only, not {host}")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="k8s-airgap-sshd-"))
    try:
        workdir.chmod(0o755)
        host_key = workdir / "ssh_host_ed25519_key"
        client_key = workdir / "client_key"
        _keygen(host_key, "k8s-airgap test host")
        _keygen(client_key, "k8s-airgap test client")
        authorized = workdir / "authorized_keys"
        authorized.write_bytes(client_key.with_suffix(".pub").read_bytes())
        authorized.chmod(0o644)
        port = free_port(host)
        cfg = workdir / "sshd_config"
        cfg.write_text(_config(workdir, host, port, users or ["root"]))
        process.run([SSHD_BIN, "-t", "-f", str(cfg)])  # config errors surface here, clearly
        log_file = workdir / "sshd.log"
        proc = spawn([SSHD_BIN, "-D", "-e", "-f", str(cfg)], log_file)
        server = SSHServer(
            host=host,
            port=port,
            workdir=workdir,
            client_key=client_key,
            host_public_key=" ".join(
                host_key.with_suffix(".pub").read_text().split()[:2]
            ),
            log_file=log_file,
            _proc=proc,
        )
        try:
            wait_until(
                "sshd",
                lambda: f"Server listening on {host} port {port}" in tail(log_file, 200),
                timeout=START_TIMEOUT,
                proc=proc,
                log_file=log_file,
            )
        except BaseException:
            terminate(proc)
            raise
        return server
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def add_sudo_user(home_parent: Path) -> str:
    """A temporary login user (random name) with passwordless sudo; returns its name.

    The password field is '*' (no password, but not locked: with UsePAM no, sshd
    refuses key logins for accounts whose password starts with '!').
    """
    name = f"agt{secrets.token_hex(4)}"
    home = home_parent / name
    process.run([
        "useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
        "--password", "*", "--user-group", name,
    ])
    try:
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, *_ids(name))
        sudoers = SUDOERS_DIR / f"k8s-airgap-test-{name}"
        tmp = SUDOERS_DIR / f".k8s-airgap-test-{name}.tmp"
        tmp.write_text(f"{name} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        tmp.chmod(0o440)
        process.run(["visudo", "-c", "-q", "-f", str(tmp)])
        tmp.replace(sudoers)
    except BaseException:
        remove_sudo_user(name)
        raise
    return name


def _ids(name: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def remove_sudo_user(name: str) -> None:
    """Undo add_sudo_user: sudoers entry, user, group and home."""
    for path in (
        SUDOERS_DIR / f"k8s-airgap-test-{name}",
        SUDOERS_DIR / f".k8s-airgap-test-{name}.tmp",
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    process.run(["userdel", "--force", "--remove", name], check=False)
    process.run(["groupdel", name], check=False)
