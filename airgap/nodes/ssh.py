"""A machine over SSH (Fabric) as a Node."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from airgap.errors import AirgapError
from airgap.nodes.base import RunResult, check_result, shell_quote

SSH_CONNECT_TIMEOUT = 15
_STAGING_DIR = "/tmp"


class _Remote(Protocol):
    """The part of fabric.Connection SSHNode uses (a seam for unit tests)."""

    def run(self, command: str, **kwargs: object) -> object: ...

    def put(self, local: object, remote: str | None = None) -> object: ...

    def get(self, remote: str, local: object = None) -> object: ...


def redact_env(command: str, env: Mapping[str, str] | None) -> str:
    """The command as it may be logged: environment values replaced by '***'."""
    for key, value in (env or {}).items():
        if value:
            command = command.replace(shlex.quote(f"{key}={value}"), f"{key}=***")
    return command


@dataclass
class SSHNode:
    """A machine over SSH (Fabric): key or agent auth, host keys checked by default.

    Commands run as root: directly when ``user`` is root, else through ``sudo -n`` (no
    password prompt: a node that asks for one fails fast instead of hanging). Host-key
    checking uses ~/.ssh/known_hosts and rejects unknown hosts unless the plan says
    ``strict_host_key_checking: false``: an air-gapped install is exactly where a
    spoofed host must not receive join tokens. Environment values are passed inline on
    the remote command line (sshd's AcceptEnv is rarely configured, and sudo drops the
    SSH environment); they are redacted from logs.
    """

    name: str
    host: str
    user: str = "root"
    port: int = 22
    key_file: Path | None = None
    strict_host_key_checking: bool = True
    connect_timeout: int = SSH_CONNECT_TIMEOUT
    known_hosts: Path | None = None
    connection_factory: Callable[[], _Remote] | None = field(default=None, repr=False)
    _conn: _Remote | None = field(default=None, init=False, repr=False)

    @property
    def sudo(self) -> bool:
        return self.user != "root"

    # -- command construction (pure, unit-tested) --------------------------------
    def command_line(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        """The shell line sent to sshd for argv (sshd always hands it to a shell)."""
        words = [str(a) for a in argv]
        if env:
            words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
        if self.sudo:
            words = ["sudo", "-n", "--", *words]
        return shlex.join(words)

    def connect_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"allow_agent": True, "look_for_keys": self.key_file is None}
        if self.key_file is not None:
            kwargs["key_filename"] = str(self.key_file)
        return kwargs

    def _connect(self) -> _Remote:
        if self._conn is not None:
            return self._conn
        if self.connection_factory is not None:
            self._conn = self.connection_factory()
            return self._conn
        from fabric import Connection
        from paramiko import RejectPolicy, WarningPolicy

        conn = Connection(
            self.host,
            user=self.user,
            port=self.port,
            connect_timeout=self.connect_timeout,
            connect_kwargs=self.connect_kwargs(),
        )
        conn.client.load_system_host_keys()
        known = self.known_hosts or Path.home() / ".ssh" / "known_hosts"
        if known.is_file():
            conn.client.load_host_keys(str(known))
        conn.client.set_missing_host_key_policy(
            RejectPolicy() if self.strict_host_key_checking else WarningPolicy()
        )
        remote: _Remote = conn
        self._conn = remote
        return remote

    def _ssh_error(self, exc: Exception) -> AirgapError:
        where = f"{self.user}@{self.host}:{self.port}"
        if type(exc).__name__ == "BadHostKeyException":
            # A known host presenting another key: a reinstalled node, or an impostor
            # that would receive join tokens. Never the same advice as an unknown host.
            entry = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            known = self.known_hosts or "~/.ssh/known_hosts"
            return AirgapError(
                f"{self.name}: cannot open SSH to {where}: its host key does not match "
                f"the one in {known} (reinstalled node, or another machine on its address)",
                details=f"{type(exc).__name__}: {exc}",
                resolution=(
                    "Compare the node's fingerprint on its console (ssh-keygen -lf "
                    "/etc/ssh/ssh_host_ed25519_key.pub) with ssh-keyscan -p "
                    f"{self.port} {self.host} | ssh-keygen -lf -; only if they match, "
                    f"ssh-keygen -R '{entry}' and add the new key to {known}."
                ),
            )
        hint = (
            f"Check that {where} accepts your key "
            "(ssh-agent or nodes[].ssh.key_file)"
        )
        if "not found in known_hosts" in str(exc) or type(exc).__name__ == "SSHException":
            hint += (
                f", and that its host key is in ~/.ssh/known_hosts "
                f"(ssh-keyscan -p {self.port} {self.host}, then compare the fingerprint "
                "with the node's console)"
            )
        return AirgapError(
            f"{self.name}: cannot open SSH to {self.user}@{self.host}:{self.port}",
            details=f"{type(exc).__name__}: {exc}",
            resolution=hint + ".",
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        import io
        import logging

        line = self.command_line(argv, env)
        logging.getLogger(__name__).debug("%s: ssh: %s", self.name, redact_env(line, env))
        conn = self._connect()
        try:
            res = conn.run(
                line,
                hide=True,
                warn=True,
                pty=False,
                in_stream=io.StringIO(input.decode()) if input is not None else False,
                timeout=int(timeout) if timeout else None,
            )
        except Exception as exc:  # fabric/paramiko raise many types; keep one message
            if type(exc).__name__ == "CommandTimedOut":
                raise AirgapError(
                    f"{self.name}: command timed out after {timeout} s: {shell_quote(argv)}",
                    resolution=f"Check that {self.name} is up and not overloaded, then run the "
                    "task again (finished steps are skipped).",
                ) from exc
            raise self._ssh_error(exc) from exc
        result = RunResult(
            [str(a) for a in argv],
            int(getattr(res, "exited", 0) or 0),
            str(getattr(res, "stdout", "")),
            str(getattr(res, "stderr", "")),
        )
        return check_result(self.name, result) if check else result

    def _upload(self, fileobj: object, remote: str, mode: int) -> None:
        """sftp to a private temp file, then move into place as root (atomic rename)."""
        import posixpath
        import uuid

        tmp = posixpath.join(_STAGING_DIR, f".k8s-airgap-{uuid.uuid4().hex}")
        conn = self._connect()
        try:
            conn.put(fileobj, remote=tmp)
        except Exception as exc:
            raise self._ssh_error(exc) from exc
        for argv in self.install_commands(tmp, remote, mode):
            self.run(argv)

    @staticmethod
    def install_commands(tmp: str, remote: str, mode: int) -> list[list[str]]:
        """Commands that move an uploaded temp file to ``remote`` with ``mode``."""
        import posixpath

        part = f"{remote}.k8s-airgap-part"
        return [
            ["mkdir", "-p", posixpath.dirname(remote) or "/"],
            ["install", "-m", f"{mode:04o}", "-o", "root", "-g", "root", "-T", tmp, part],
            ["rm", "-f", tmp],
            ["mv", "-f", "-T", part, remote],
        ]

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        self._upload(str(local), remote, mode)

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        import io

        self._upload(io.BytesIO(data), remote, mode)

    def get(self, remote: str) -> bytes:
        import base64

        # base64 through the command channel: works for non-root users via sudo, and
        # fabric's run() decodes output as text.
        res = self.run(["base64", "-w0", remote])
        return base64.b64decode(res.stdout.strip())

    def close(self) -> None:
        conn, self._conn = self._conn, None
        closer = getattr(conn, "close", None)
        if callable(closer):
            closer()

    def __str__(self) -> str:
        return f"{self.name} ({self.user}@{self.host}:{self.port})"


