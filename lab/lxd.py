"""LXD through pylxd: the lab's project, bridges, instances, and LXDNode.

LXDNode is the Node transport for lab instances, so every airgap step (preflight,
side-load, deploy) runs unchanged against lab nodes. pylxd's ``execute`` has no
time-out of its own (FACTS): commands run under coreutils ``timeout`` inside the
instance, and a thread with a deadline guards the websocket as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shlex
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from airgap.errors import AirgapError
from airgap.nodes import Node, RunResult, check_result
from airgap.plan import Node as PlanNode
from airgap.plan import Transport
from airgap.wait import wait_until as _wait_until
from lab import host

log = logging.getLogger(__name__)

EXEC_GRACE = 15.0
DEFAULT_EXEC_TIMEOUT = 300.0
T = TypeVar("T")


LAB_WAIT_RESOLUTION = "Check the instance with `invoke lab.shell NAME`."


def wait_until(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    resolution: str | None = None,
) -> T:
    """airgap.wait.wait_until with the lab's advice on a time-out."""
    return _wait_until(what, check, timeout=timeout, interval=interval,
                       resolution=resolution or LAB_WAIT_RESOLUTION)


@dataclass(frozen=True)
class _ExecResult:
    exit_code: int
    stdout: str
    stderr: str


def _execute(c: Any, instance: str, argv: list[str], environment: dict[str, str],
             timeout: float) -> _ExecResult | None:
    """Run argv through LXD's exec API with recorded output: no websockets.

    pylxd's ``execute`` attaches stdout/stderr over ws4py websockets, which lose races
    when several commands run at once (BrokenPipeError after the command already ran,
    so a retry would run it twice). ``record-output`` makes LXD write the output to
    log files that are fetched once the operation is over. None on time-out.
    """
    from pylxd.exceptions import LXDAPIException

    try:
        resp = c.api.instances[instance].exec.post(json={
            "command": argv, "environment": environment, "wait-for-websocket": False,
            "interactive": False, "record-output": True,
        })
    except LXDAPIException as exc:  # a stopped instance: the node is unreachable
        raise AirgapError(f"{instance}: unreachable (LXD exec refused: {exc})",
                          resolution=f"Start it (`lxc start {instance}` in the lab's "
                          "project) or check `invoke lab.status`.") from None
    op_id = os.path.basename(resp.json()["operation"])
    wait = c.api.operations[op_id].wait.get(params={"timeout": int(timeout) + 1})
    body = wait.json().get("metadata") or {}
    if body.get("status") != "Success":
        if body.get("status") in ("Running", "Pending"):
            return None
        raise AirgapError(f"LXD exec failed on {instance}: {body.get('err') or body}",
                          resolution=f"Check the instance with `invoke lab.status` and "
                          f"`invoke lab.shell {instance}`; LXD's log is {host.LXD_LOG}.")
    meta = body.get("metadata") or {}
    outputs = meta.get("output") or {}
    texts = {}
    for fd in ("1", "2"):
        path = outputs.get(fd, "")
        name = os.path.basename(path)
        if not name:
            texts[fd] = ""
            continue
        log_api = c.api.instances[instance].logs[name]
        texts[fd] = log_api.get(is_api=False).content.decode("utf-8", errors="replace")
        with contextlib.suppress(Exception):  # a leftover log is harmless
            log_api.delete()
    return _ExecResult(int(meta.get("return", -1)), texts["1"], texts["2"])


def client(project: str | None = None) -> Any:
    return host.client(project)


@dataclass
class LXDNode:
    """A lab instance, reached through the LXD API (no SSH, no network needed)."""

    name: str
    instance: str = ""
    project: str = "default"
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.instance:
            self.instance = self.name

    @property
    def lxd(self) -> Any:
        if self._client is None:
            self._client = client(self.project)
        return self._client

    def _instance(self) -> Any:
        from pylxd.exceptions import NotFound

        try:
            return self.lxd.instances.get(self.instance)
        except NotFound:
            raise AirgapError(
                f"LXD instance {self.instance!r} not found in project {self.project!r}",
                resolution="Bring the lab up with `invoke lab.up`, or check `invoke lab.status`.",
            ) from None

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        argv = [str(a) for a in argv]
        limit = DEFAULT_EXEC_TIMEOUT if timeout is None else timeout
        log.debug("run on %s: %s", self.name, shlex.join(argv))
        full = ["timeout", "-k", "5", f"{limit:g}"]
        stdin_file = None
        if input is not None:
            stdin_file = f"/run/.k8s-airgap-stdin-{uuid.uuid4().hex}"
            self._instance().files.put(stdin_file, input, mode=0o600, uid=0, gid=0)
            # record-output mode has no stdin: feed the payload from a file, then drop it.
            full += ["sh", "-c", 'f=$1; shift; "$@" < "$f"; rc=$?; rm -f "$f"; exit $rc',
                     "sh", stdin_file]
        full += argv
        # /snap/bin as on Ubuntu (and sudo's secure_path there): the snap's `k8s` command.
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"
                               "/snap/bin",
                       "LC_ALL": "C.UTF-8", **(env or {})}
        self._instance()
        try:
            res = _execute(self.lxd, self.instance, full, environment, limit + EXEC_GRACE)
        finally:
            if stdin_file is not None:
                # The wrapper removes it, unless `timeout` killed the wrapper first:
                # stdin may carry a secret (a join token), so never leave it behind.
                with contextlib.suppress(Exception):
                    _execute(self.lxd, self.instance, ["rm", "-f", stdin_file], environment, 30)
        if res is None:
            raise AirgapError(
                f"Command timed out after {limit:g} s on {self.name}: {shlex.join(argv)}",
                resolution="The lab instance may be overloaded or hung; see `invoke lab.status`.",
            )
        stderr = res.stderr
        if res.exit_code in (124, 137) and timeout is not None:
            stderr += f"\n(timed out after {limit:g} s)"
        result = RunResult(argv, res.exit_code, res.stdout, stderr)
        return check_result(self.name, result) if check else result

    def stop(self) -> None:
        """Stop the instance at once (the node becomes unreachable, as a lost machine)."""
        self._instance().stop(force=True, wait=True)

    def start(self, timeout: float = 120) -> None:
        """Start it and wait until snapd and the runtime answer again."""
        self._instance().start(wait=True)
        wait_command(self, ["snap", "list", "snapd"], "snapd after a start", timeout=timeout)

    def _mkdir(self, remote: str) -> None:
        parent = posixpath.dirname(remote)
        if parent and parent != "/":
            self.run(["mkdir", "-p", parent])

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        self._mkdir(remote)
        inst = self._instance()
        tmp = posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.part")
        inst.files.put(tmp, data, mode=mode, uid=0, gid=0)
        self.run(["mv", "-f", tmp, remote])

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        self.write(remote, Path(local).read_bytes(), mode)

    def get(self, remote: str) -> bytes:
        from pylxd.exceptions import NotFound

        try:
            data = self._instance().files.get(remote)
        except NotFound:
            raise AirgapError(f"{remote}: no such file on {self.name}",
                              resolution="The step that writes it has not run on this node; "
                              "run it first (see the report's steps).") from None
        return bytes(data)

    def __str__(self) -> str:
        return f"{self.name} (lxd {self.project}/{self.instance})"


# Readiness ---------------------------------------------------------------


def wait_system_running(node: LXDNode, timeout: float = 120) -> str:
    """Wait until systemd has finished booting; fail with the failed units if degraded."""

    def state() -> str | None:
        r = node.run(["systemctl", "is-system-running"], check=False, timeout=15)
        s = r.stdout.strip()
        return s if s in ("running", "degraded") else None

    s = wait_until(f"`systemctl is-system-running` on {node.name}", state, timeout=timeout)
    if s == "degraded":
        failed = node.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
        raise AirgapError(
            f"{node.name}: systemd is degraded after boot",
            details=failed.stdout,
            resolution=f"Inspect with `invoke lab.shell {node.name}` and journalctl -u UNIT.",
        )
    return s


def wait_address(node: LXDNode, iface: str, address: str, timeout: float = 60) -> None:
    def has() -> bool:
        r = node.run(["ip", "-4", "-o", "addr", "show", "dev", iface], check=False, timeout=10)
        return f" {address}/" in r.stdout

    wait_until(f"{node.name} to get {address} on {iface} (DHCP)", has, timeout=timeout)


def wait_command(node: LXDNode, argv: list[str], what: str, timeout: float = 60) -> None:
    def ok() -> bool:
        try:
            return node.run(argv, check=False, timeout=10).ok
        except AirgapError:  # not running (yet)
            return False

    wait_until(f"{what} on {node.name}", ok, timeout=timeout)


def expose_unix_socket(
    project: str, instance: str, listen: Path, connect: str = "/run/containerd/containerd.sock",
    device: str = "cri",
) -> Path:
    """Expose an instance's unix socket (e.g. the CRI socket) on the host (LXD proxy device).

    The host-side path must not exist yet; LXD creates it. Returns ``listen``.
    """
    c = client(project)
    inst = c.instances.get(instance)
    devices = dict(inst.devices)
    devices[device] = {"type": "proxy", "listen": f"unix:{listen}",
                       "connect": f"unix:{connect}", "bind": "host", "mode": "0600"}
    inst.devices = devices
    inst.save(wait=True)
    wait_until(f"{listen} to appear (LXD proxy device {device} on {instance})",
               lambda: listen.exists(), timeout=20)
    return listen


def remove_device(project: str, instance: str, device: str) -> None:
    c = client(project)
    inst = c.instances.get(instance)
    if device in inst.devices:
        devices = dict(inst.devices)
        del devices[device]
        inst.devices = devices
        inst.save(wait=True)


def node_from_plan(node: PlanNode) -> Node:
    """The Node for a plan entry with ``transport: lxd`` (injected into airgap.nodes.build)."""
    return LXDNode(name=node.name, instance=node.lxd.instance or node.name,
                   project=node.lxd.project)


TRANSPORTS: dict[Transport, Callable[[PlanNode], Node]] = {Transport.lxd: node_from_plan}
