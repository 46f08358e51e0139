"""A real containerd (Debian's) with its own root, state, socket and config.

The CRI plugin is on with `config_path` pointing at a hosts directory, so CRI pulls
(what kubelet does) go through hosts.toml exactly as on a node; proxy variables go in
the daemon's environment, as the systemd drop-in puts them on a node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import PROXY_VARS, in_netns, spawn, terminate, wait_until

CONTAINERD_BIN = "containerd"
START_TIMEOUT = 30.0
DISABLED_PLUGINS = [
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
]


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(root: Path, state: Path, socket: Path, hosts_dir: Path,
                  snapshotter: str) -> str:
    disabled = ", ".join(_toml_str(p) for p in DISABLED_PLUGINS)
    return f"""version = 2
root = {_toml_str(str(root))}
state = {_toml_str(str(state))}
disabled_plugins = [{disabled}]

[grpc]
  address = {_toml_str(str(socket))}

[ttrpc]
  address = {_toml_str(str(socket) + ".ttrpc")}

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = {_toml_str(snapshotter)}
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {_toml_str(str(hosts_dir))}
"""


@dataclass
class Containerd:
    workdir: Path
    socket: Path
    root: Path
    state: Path
    hosts_dir: Path
    config_file: Path
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)
    netns: str | None = None
    _runtime_dir: Path | None = field(default=None, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ctr(self, *args: str, namespace: str = "k8s.io", check: bool = True,
            env: Mapping[str, str] | None = None, timeout: float = 300,
            ) -> subprocess.CompletedProcess[str]:
        """`ctr --address SOCKET -n NAMESPACE args...` (in the daemon's netns, if any).

        Note: `ctr images pull` pulls in the ctr process, with ctr's env and flags
        (`--hosts-dir`), not the daemon's; use airgap.cri for what kubelet does.
        """
        argv = in_netns(self.netns, ["ctr", "--address", str(self.socket), "-n", namespace,
                                     *args])
        full_env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
        full_env.update(env or {})
        proc = subprocess.run(argv, capture_output=True, text=True, env=full_env,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def _ready(self) -> bool:
        return self.socket.exists() and self.ctr("version", check=False, timeout=10).returncode == 0

    def start(self) -> None:
        if self.running:
            return
        self._proc = spawn([CONTAINERD_BIN, "--config", str(self.config_file)], self.log_file,
                           netns=self.netns, env=self.env)
        wait_until("containerd", self._ready, timeout=START_TIMEOUT, proc=self._proc,
                   log_file=self.log_file)

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None

    def cleanup(self) -> None:
        """Stop, then remove root/state (snapshots may be read-only or mounted)."""
        self.stop()
        if self._runtime_dir is not None:
            subprocess.run(["umount", "-R", "-l", str(self._runtime_dir)],
                           capture_output=True, check=False)
            shutil.rmtree(self._runtime_dir, ignore_errors=True)


def start_containerd(
    workdir: Path,
    *,
    hosts_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    netns: str | None = None,
    snapshotter: str = "native",
) -> Containerd:
    """Start containerd with config/log in workdir; socket, root and state in a short
    directory under /run (unix socket paths are limited to 107 bytes).

    hosts_dir (default workdir/hosts.d) is the CRI registry `config_path`; env holds
    e.g. HTTPS_PROXY/NO_PROXY for the daemon; netns runs it in a namespace.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    hosts_dir = hosts_dir or workdir / "hosts.d"
    hosts_dir.mkdir(parents=True, exist_ok=True)
    runtime_dir = Path(tempfile.mkdtemp(prefix="ag-ctrd-", dir="/run"))
    socket = runtime_dir / "containerd.sock"
    root, state = runtime_dir / "root", runtime_dir / "state"
    config_file = workdir / "containerd.toml"
    config_file.write_text(render_config(root, state, socket, hosts_dir, snapshotter))
    ctrd = Containerd(
        workdir=workdir, socket=socket, root=root, state=state, hosts_dir=hosts_dir,
        config_file=config_file, log_file=workdir / "containerd.log", env=dict(env or {}),
        netns=netns, _runtime_dir=runtime_dir,
    )
    try:
        ctrd.start()
    except BaseException:
        ctrd.cleanup()
        raise
    return ctrd
