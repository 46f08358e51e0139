"""A recording fake Node that simulates just enough of a machine for deploy/preflight.

It records every command (argv) and every file written, and answers the commands the
deploy and preflight steps issue from a small simulated state: files, the default
route, installed snaps, cluster membership (shared between the nodes of one
``FakeCluster``), the snap's containerd (inactive until bootstrap/join, like the real
snap, when ``containerd_active=False``; it imports side-loaded archives when it starts),
systemd's view of the proxy drop-in, snapd's trust (``trusts_assertions=False``: `snap
ack` refuses as it refuses the lab authority) and its hold (``per_snap_hold``: snapd
2.58+ `--hold=forever`, else only `refresh.hold=<time>`). Like k8sd, a join is refused
unless the name the node joins as (``--name``, else its hostname) is the name the
token was made for.
Tests inject failures with ``fail_on`` and canned answers with ``on``. It does not run
anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap.deploy.snapstep import SHA3_SCRIPT, SNAPS_DIR
from airgap.errors import AirgapError, CommandError
from airgap.nodes import RunResult, check_result
from airgap.plan import CONTAINERD_UNIT, PROXY_DROPIN, SIDELOAD_DIR
from airgap.preflight.runtime import LIST_SCRIPT as HOSTS_LIST_SCRIPT
from airgap.preflight.runtime import MARK as HOSTS_MARK
from airgap.sideload import SNAP_CTR

Responder = Callable[[list[str], bytes | None], RunResult]


@dataclass
class FakeCluster:
    """What `k8s kubectl get node` on any member shows."""

    members: dict[str, str] = field(default_factory=dict)  # name -> address
    ready: set[str] = field(default_factory=set)
    # Nodes become Ready after this many `get node` calls (0: at once).
    ready_after_polls: int = 0
    polls: int = 0
    tokens: dict[str, str] = field(default_factory=dict)  # node name -> token

    def node_list(self) -> str:
        self.polls += 1
        if self.polls > self.ready_after_polls:
            self.ready |= set(self.members)
        items = [
            {
                "metadata": {"name": name},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": addr}],
                    "conditions": [
                        {"type": "Ready", "status": "True" if name in self.ready else "False"}
                    ],
                },
            }
            for name, addr in self.members.items()
        ]
        return json.dumps({"items": items})


@dataclass
class FakeNode:
    name: str
    cluster: FakeCluster = field(default_factory=FakeCluster)
    address: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    snaps: dict[str, str] = field(default_factory=dict)  # name -> revision
    has_snapd: bool = True
    default_route: str = ""
    missing_commands: set[str] = field(default_factory=set)
    # Revision that `snap install PATH` installs, by snap name.
    snap_revisions: dict[str, str] = field(default_factory=dict)
    local_installs: dict[str, int] = field(default_factory=dict)  # --dangerous: x1, x2, ...
    versions: dict[str, str] = field(default_factory=dict)  # snap list's Version, by name
    # The Version a `snap install` of that snap's file gives (an upgrade's new k8s).
    install_versions: dict[str, str] = field(default_factory=dict)
    pulled: list[str] = field(default_factory=list)  # `ctr images pull` references
    # snapd trusts only Canonical's root: False makes `snap ack` refuse as it refuses
    # the lab authority's assertions (tests/integration/test_lab_snapd.py).
    trusts_assertions: bool = True
    # snapd 2.58+ has `snap refresh --hold` (Debian 13, Ubuntu); 2.57 (Debian 12) only
    # `snap set system refresh.hold=<time>`, and refuses "forever".
    per_snap_hold: bool = True
    held: set[str] = field(default_factory=set)
    refresh_hold: str = ""
    commands: list[list[str]] = field(default_factory=list)
    inputs: list[bytes | None] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    hostname: str = ""  # what join-cluster/bootstrap use without --name ("" = name)
    member_as: str | None = None  # the node name this machine is in the cluster as
    containerd_active: bool = True
    images: dict[str, str] = field(default_factory=dict)  # ctr -n k8s.io: name -> digest
    platform: str = "linux/amd64"
    # The drop-in content systemd last loaded (daemon-reload), and what the unit's
    # Environment= shows.
    loaded_dropin: bytes | None = None
    # `ctr images label` (name -> labels; the snap's import sets none) and the daemon
    # version `ctr version` reports in its Server: section ("" = the bare answer).
    image_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    containerd_version: str = ""
    _fail: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)
    _on: list[tuple[tuple[str, ...], Responder]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hostname:
            self.hostname = self.name
        if self.name in self.cluster.members and self.member_as is None:
            self.member_as = self.name

    # -- test controls -------------------------------------------------------------
    def fail_on(self, *prefix: str, times: int = 1, stderr: str = "simulated failure") -> None:
        """Make the next ``times`` commands starting with prefix exit 1."""
        self._fail.append((prefix, times, stderr))

    def on(self, *prefix: str, answer: Responder | RunResult) -> None:
        """Answer commands starting with prefix (latest registration wins)."""
        fn: Responder = answer if callable(answer) else (lambda _a, _i, r=answer: r)
        self._on.insert(0, (prefix, fn))

    def issued(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.commands if tuple(c[: len(prefix)]) == prefix]

    def reset_log(self) -> None:
        self.commands.clear()
        self.inputs.clear()
        self.written.clear()

    # -- Node protocol -------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        args = [str(a) for a in argv]
        self.commands.append(args)
        self.inputs.append(input)
        result = self._answer(args, input)
        return check_result(self.name, result) if check else result

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        self.write(remote, Path(local).read_bytes(), mode)

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        self.files[remote] = bytes(data)
        self.modes[remote] = mode
        self.written.append(remote)

    def get(self, remote: str) -> bytes:
        if remote not in self.files:
            msg = f"cat: {remote}: No such file"
            raise CommandError(["cat", remote], 1, "", msg, where=self.name)
        return self.files[remote]

    # -- simulation ----------------------------------------------------------------
    def start_containerd(self) -> None:
        """As the snap's containerd does at start: import *.tar, rename to *.tar.loaded."""
        from airgap.platforms import parse_platform
        from airgap.sideload.archive import read_archive

        self.containerd_active = True
        for path in sorted(p for p in self.files if p.startswith(f"{SIDELOAD_DIR}/")):
            if not path.endswith(".tar"):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "a.tar"
                local.write_bytes(self.files[path])
                try:
                    contents = read_archive(local, parse_platform(self.platform))
                except AirgapError:
                    contents = None
            if contents is not None:
                for img in contents.images:
                    if img.name and img.digest and "@" not in img.name:
                        self.images[img.name] = img.digest
            self.files[path + ".loaded"] = self.files.pop(path)

    def _join_as(self, flags: list[str]) -> tuple[str, str]:
        opts = dict(zip(flags[::2], flags[1::2], strict=False))
        return opts.get("--name", self.hostname), opts.get("--address", "")

    def _dropin_env(self, data: bytes | None) -> str:
        if not data:
            return ""
        return " ".join(line.split("=", 1)[1].strip('"') for line in data.decode().splitlines()
                        if line.startswith("Environment="))

    def _answer(self, a: list[str], input: bytes | None) -> RunResult:
        for n, (prefix, times, stderr) in enumerate(self._fail):
            if tuple(a[: len(prefix)]) == prefix:
                if times <= 1:
                    del self._fail[n]
                else:
                    self._fail[n] = (prefix, times - 1, stderr)
                return RunResult(a, 1, "", stderr)
        for prefix, fn in self._on:
            if tuple(a[: len(prefix)]) == prefix:
                return fn(a, input)
        ok = RunResult(a, 0, "", "")

        def fail(msg: str, rc: int = 1) -> RunResult:
            return RunResult(a, rc, "", msg)

        match a:
            case ["sh", "-c", script, _, name] if script.startswith("command -v"):
                present = self.has_snapd if name == "snap" else name not in self.missing_commands
                return ok if present else fail("", 1)
            case ["test", "-e" | "-S", path]:
                return ok if path in self.files else fail("")
            case ["cat", path]:
                if path not in self.files:
                    return fail(f"cat: {path}: No such file or directory")
                return RunResult(a, 0, self.files[path].decode(), "")
            case ["sha256sum", "--", *paths]:
                lines, rc = [], 0
                for p in paths:
                    if p in self.files:
                        lines.append(f"{hashlib.sha256(self.files[p]).hexdigest()}  {p}\n")
                    else:
                        rc = 1
                return RunResult(a, rc, "".join(lines), "")
            case ["snap", "list", name]:
                if not self.has_snapd:
                    return fail("snap: not found", 127)
                if name not in self.snaps:
                    return fail("error: no matching snaps installed")
                rev = self.snaps[name]
                head = "Name  Version  Rev  Tracking  Publisher  Notes\n"
                # Notes as snapd prints them (checked against a real snapd in the lab):
                # a comma list, "held" added by --hold.
                notes = {"k8s": "classic", "snapd": "snapd"}.get(name, "base")
                notes += ",held" if name in self.held else ""
                version = self.versions.get(name, "1.0")
                return RunResult(
                    a, 0, f"{head}{name}  {version}  {rev}  -  canonical**  {notes}\n", "")
            case ["snap", "ack", path]:
                if path not in self.files:
                    return fail(f"error: cannot read {path}")
                if not self.trusts_assertions:
                    return fail("error: cannot assert: assert failed: cannot resolve "
                                "prerequisite assertion: account (k8s-airgap-lab)")
                return ok
            case ["snap", "refresh", "--hold=forever", name]:
                if not self.per_snap_hold:
                    return fail("error: unknown flag `hold'")
                if name not in self.snaps:
                    return fail(f'error: snap "{name}" is not installed')
                self.held.add(name)
                return RunResult(a, 0, f"General refreshes of \"{name}\" held indefinitely\n", "")
            case ["snap", "get", "system", "refresh.hold"]:
                if not self.refresh_hold:
                    return fail('error: snap "core" has no "refresh.hold" configuration option')
                return RunResult(a, 0, self.refresh_hold + "\n", "")
            case ["snap", "set", "system", setting] if setting.startswith("refresh.hold="):
                value = setting.split("=", 1)[1]
                if value == "forever" and not self.per_snap_hold:
                    return fail('error: cannot perform the following tasks:\n- Run configure '
                                'hook of "core" snap (cannot parse "forever")')
                self.refresh_hold = value
                return ok
            case ["sh", "-c", script, _, path] if script == SHA3_SCRIPT:
                if path not in self.files:
                    return fail(f"{path}: No such file or directory")
                digest = hashlib.sha3_384(self.files[path]).digest()
                return RunResult(a, 0, base64.b64encode(digest).decode(), "")
            case ["snap", "install", *args]:
                path = next((x for x in args if not x.startswith("-")), "")
                flags = [x for x in args if x.startswith("-")]
                if path not in self.files:
                    return fail(f"cannot find {path}")
                name = Path(path).stem
                # As a real snapd does (tests/integration/test_lab_snapd.py): an app snap
                # needs its base and snapd first (else snapd asks the store), a classic
                # snap needs --classic, and a file installed again is a new revision.
                if name == "k8s" and (len(self.snaps.keys() - {"k8s"}) < 2):
                    return fail('cannot perform the following tasks:\n- Ensure prerequisites '
                                'for "k8s" are available (cannot install snap base: no store)')
                if name == "k8s" and "--classic" not in flags:
                    return fail('This revision of snap "k8s" was published using classic '
                                "confinement ... repeat the command including --classic.")
                if "--dangerous" in flags:
                    self.local_installs[name] = self.local_installs.get(name, 0) + 1
                    self.snaps[name] = f"x{self.local_installs[name]}"
                elif not self.trusts_assertions:
                    return fail(f'error: cannot find signatures with metadata for snap "{path}"')
                else:
                    self.snaps[name] = self.snap_revisions.get(name, "1")
                if name in self.install_versions:
                    self.versions[name] = self.install_versions[name]
                # snapd keeps each installed revision's file under /var/lib/snapd/snaps.
                self.files[f"{SNAPS_DIR}/{name}_{self.snaps[name]}.snap"] = self.files[path]
                return ok
            case ["ip", "-4", "route", "show", "default"]:
                out = self.default_route + ("\n" if self.default_route else "")
                return RunResult(a, 0, out, "")
            case ["ip", "route", "replace", "default", "dev", iface]:
                self.default_route = f"default dev {iface} scope link"
                return ok
            case ["systemctl", "daemon-reload"]:
                self.loaded_dropin = self.files.get(PROXY_DROPIN)
                return ok
            case ["systemctl", "is-active", *rest] if rest[-1] in (
                    CONTAINERD_UNIT, f"{CONTAINERD_UNIT}.service"):
                # systemctl prints the state on stdout either way (exit 3: not active).
                if self.containerd_active:
                    return RunResult(a, 0, "active\n", "")
                return RunResult(a, 3, "inactive\n", "")
            case ["systemctl", "show", "-p", "NeedDaemonReload", _]:
                need = self.files.get(PROXY_DROPIN) != self.loaded_dropin
                return RunResult(a, 0, f"NeedDaemonReload={'yes' if need else 'no'}\n", "")
            case ["systemctl", "show", "-p", "Environment", _]:
                return RunResult(a, 0, f"Environment={self._dropin_env(self.loaded_dropin)}\n",
                                 "")
            case ["systemctl", *_]:
                return ok
            case ["snap", "restart", "k8s.containerd"]:
                self.start_containerd()
                return ok
            case ["ctr" | "/snap/k8s/current/bin/ctr", "--version"]:
                return ok if "ctr" not in self.missing_commands else fail("", 127)
            case ["sh", "-c", script, _, hosts_dir] if script == HOSTS_LIST_SCRIPT:
                # As the script does: every file two levels down, hosts.toml with content.
                found = sorted(p for p in self.files if p.startswith(f"{hosts_dir}/")
                               and p.count("/") - hosts_dir.count("/") <= 2)
                text = "".join(
                    f"{HOSTS_MARK}{p}\n" + (self.files[p].decode() + "\n"
                                            if p.endswith("/hosts.toml") else "")
                    for p in found)
                return RunResult(a, 0, text, "")
            case ["ctr" | "/snap/k8s/current/bin/ctr", "version"] if self.containerd_version:
                if not self.containerd_active:
                    return fail("ctr: connection refused")
                v = self.containerd_version
                return RunResult(a, 0, f"Client:\n  Version:  {v}\n\nServer:\n  Version:  {v}\n"
                                 "  UUID: 0\n", "")
            case ["ctr" | "/snap/k8s/current/bin/ctr", "version"]:
                return ok if self.containerd_active else fail("ctr: connection refused")
            case [ctr, "-n", "k8s.io", "images", "pull", "--hosts-dir", _, ref] if ctr in (
                    "ctr", SNAP_CTR):
                if not self.containerd_active:
                    return fail("ctr: failed to dial: connection refused")
                self.pulled.append(ref)
                self.images[ref] = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
                return ok
            case [ctr, "-n", "k8s.io", "images", "label", name, *pairs] if ctr in (
                    "ctr", SNAP_CTR):
                if not self.containerd_active:
                    return fail("ctr: failed to dial: connection refused")
                if name not in self.images:
                    return fail(f'ctr: image "{name}": not found')
                labels = self.image_labels.setdefault(name, {})
                for pair in pairs:
                    key, _, value = pair.partition("=")
                    labels[key] = value
                return RunResult(a, 0, f"{name}\n", "")
            case [ctr, "-n", "k8s.io", "images", "ls"] if ctr in ("ctr", SNAP_CTR) and (
                    self.image_labels):
                if not self.containerd_active:
                    return fail("ctr: failed to dial: connection refused")
                head = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
                rows = "".join(
                    f"{n} application/vnd.oci.image.manifest.v1+json {d} 1.0 MiB {self.platform} "
                    + ",".join(f"{k}={v}" for k, v in sorted(
                        {"io.cri-containerd.image": "managed",
                         **self.image_labels.get(n, {})}.items())) + "\n"
                    for n, d in sorted(self.images.items()))
                return RunResult(a, 0, head + rows, "")
            case [ctr, "-n", "k8s.io", "images", "ls"] if ctr in ("ctr", SNAP_CTR):
                if not self.containerd_active:
                    return fail("ctr: failed to dial: connection refused")
                head = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
                rows = "".join(f"{n} application/vnd.oci.image.manifest.v1+json {d} 1.0 MiB "
                               f"{self.platform} io.cri-containerd.image=managed\n"
                               for n, d in sorted(self.images.items()))
                return RunResult(a, 0, head + rows, "")
            case ["k8s", "status"]:
                if self.member_as is not None:
                    return RunResult(a, 0, "cluster status: ready\n", "")
                return fail("Error: The node is not part of a Kubernetes cluster.")
            case ["k8s", "local-node-status"]:
                if self.member_as is not None:
                    return RunResult(a, 0, f"name: {self.member_as}\n", "")
                return fail("Error: The node is not part of a Kubernetes cluster.")
            case ["k8s", "bootstrap", *flags]:
                if self.member_as is not None:
                    return fail("Error: the node is already part of a cluster")
                name, addr = self._join_as([f for f in flags if f != "--interactive"])
                self.cluster.members[name] = addr
                self.member_as = name
                self.start_containerd()
                return ok
            case ["k8s", "get-join-token", name, *_]:
                if self.member_as is None:
                    return fail("not bootstrapped")
                token = f"secret-token-for-{name}"
                self.cluster.tokens[name] = token
                return RunResult(a, 0, token + "\n", "")
            case ["sh", "-c", script, _, *flags] if "join-cluster" in script:
                if self.member_as is not None:
                    return fail("Error: the node is already part of a cluster")
                name, addr = self._join_as(flags)
                token = (input or b"").decode()
                # k8sd: the token was made for a node name; joining as another is refused.
                if self.cluster.tokens.get(name) != token:
                    return fail("Error: failed to join: invalid token")
                self.cluster.members[name] = addr
                self.member_as = name
                self.start_containerd()
                return ok
            case ["k8s", "kubectl", "get", "node", "-o", "json"]:
                if self.member_as is None:
                    return fail("not part of a cluster")
                return RunResult(a, 0, self.cluster.node_list(), "")
            case ["date", "+%s"]:
                return RunResult(a, 0, f"{int(time.time())}\n", "")
        return fail(f"fake node {self.name}: no simulation for {a}", 127)


def fake_nodes(names: Sequence[str], **kwargs: object) -> tuple[FakeCluster, dict[str, FakeNode]]:
    cluster = FakeCluster()
    nodes = {n: FakeNode(n, cluster=cluster, **kwargs) for n in names}  # type: ignore[arg-type]
    return cluster, nodes
