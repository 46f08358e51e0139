"""SSHNode command construction and nodes built from the plan, without an SSH server."""

from __future__ import annotations

import base64
import io
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airgap.errors import AirgapError, CommandError, PlanError
from airgap.nodes import LocalNode, SSHNode, build_nodes
from airgap.plan import parse_plan


@dataclass
class Result:
    exited: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class FakeConnection:
    """Stands in for fabric.Connection: records command lines and uploads."""

    results: list[Result] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    kwargs: list[dict[str, object]] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)

    def run(self, command: str, **kwargs: object) -> object:
        self.lines.append(command)
        self.kwargs.append(kwargs)
        return self.results.pop(0) if self.results else Result()

    def put(self, local: object, remote: str | None = None) -> object:
        assert remote is not None
        if isinstance(local, str):
            self.uploads[remote] = Path(local).read_bytes()
        else:
            assert isinstance(local, io.BytesIO)
            self.uploads[remote] = local.getvalue()
        return None

    def get(self, remote: str, local: object = None) -> object:
        raise AssertionError("SSHNode.get reads through run(), not sftp")


def node(user: str = "root", **kw: object) -> tuple[SSHNode, FakeConnection]:
    conn = FakeConnection()
    return SSHNode("n1", "10.0.0.5", user=user, connection_factory=lambda: conn, **kw), conn  # type: ignore[arg-type]


def test_root_runs_commands_directly_quoted() -> None:
    n, conn = node()
    res = n.run(["sh", "-c", "echo $HOME; ls 'a b'"])
    assert res.ok
    assert conn.lines == [shlex.join(["sh", "-c", "echo $HOME; ls 'a b'"])]
    assert shlex.split(conn.lines[0]) == ["sh", "-c", "echo $HOME; ls 'a b'"]
    kw = conn.kwargs[0]
    assert kw["hide"] is True and kw["warn"] is True and kw["pty"] is False
    assert kw["in_stream"] is False  # never forwards our terminal's stdin


def test_non_root_uses_sudo_without_password_prompt() -> None:
    n, conn = node(user="ubuntu")
    n.run(["snap", "install", "/var/lib/k8s-airgap/bundle/snaps/k8s.snap", "--classic"])
    assert shlex.split(conn.lines[0]) == [
        "sudo", "-n", "--", "snap", "install",
        "/var/lib/k8s-airgap/bundle/snaps/k8s.snap", "--classic",
    ]


def test_env_is_inline_and_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    n, conn = node(user="ubuntu")
    with caplog.at_level(logging.DEBUG, logger="airgap.nodes"):
        n.run(["regctl", "version"], env={"PASSWORD": "s3cret value"})
    assert shlex.split(conn.lines[0]) == [
        "sudo", "-n", "--", "env", "PASSWORD=s3cret value", "regctl", "version"]
    assert "s3cret" not in caplog.text
    assert "PASSWORD=***" in caplog.text


def test_input_goes_to_stdin() -> None:
    n, conn = node()
    n.run(["sh", "-c", 'exec k8s join-cluster "$(cat)"'], input=b"tok")
    stream = conn.kwargs[0]["in_stream"]
    assert isinstance(stream, io.StringIO) and stream.getvalue() == "tok"
    assert "tok" not in conn.lines[0]


def test_failure_raises_command_error_naming_the_node() -> None:
    n, conn = node()
    conn.results.append(Result(exited=1, stderr="error: snap not found\n"))
    with pytest.raises(CommandError, match="on n1") as err:
        n.run(["snap", "list", "k8s"])
    assert err.value.returncode == 1
    conn.results.append(Result(exited=3))
    assert n.run(["false"], check=False).returncode == 3


def test_write_uploads_to_temp_then_installs_atomically() -> None:
    n, conn = node(user="ubuntu")
    n.write("/etc/containerd/hosts.d/ghcr.io/hosts.toml", b"server = 'x'\n", 0o644)
    [(tmp, data)] = conn.uploads.items()
    assert data == b"server = 'x'\n"
    assert tmp.startswith("/tmp/.k8s-airgap-")
    dest = "/etc/containerd/hosts.d/ghcr.io/hosts.toml"
    part = dest + ".k8s-airgap-part"
    assert [shlex.split(line) for line in conn.lines] == [
        ["sudo", "-n", "--", "mkdir", "-p", "/etc/containerd/hosts.d/ghcr.io"],
        ["sudo", "-n", "--", "install", "-m", "0644", "-o", "root", "-g", "root", "-T", tmp, part],
        ["sudo", "-n", "--", "rm", "-f", tmp],
        ["sudo", "-n", "--", "mv", "-f", "-T", part, dest],
    ]


def test_put_streams_a_local_file(tmp_path: Path) -> None:
    src = tmp_path / "k8s.snap"
    src.write_bytes(b"\x00snap\xff")
    n, conn = node()
    n.put(src, "/var/lib/k8s-airgap/bundle/snaps/k8s.snap", 0o600)
    assert list(conn.uploads.values()) == [b"\x00snap\xff"]
    assert "-m 0600" in conn.lines[1]


def test_get_decodes_base64_so_binary_survives() -> None:
    n, conn = node(user="ubuntu")
    conn.results.append(Result(stdout=base64.b64encode(b"\x00\xffbin").decode() + "\n"))
    assert n.get("/etc/x") == b"\x00\xffbin"
    assert shlex.split(conn.lines[0]) == ["sudo", "-n", "--", "base64", "-w0", "/etc/x"]


def test_connection_errors_become_airgap_errors() -> None:
    class Refusing(FakeConnection):
        def run(self, command: str, **kwargs: object) -> object:
            raise OSError("[Errno 111] Connection refused")

    n = SSHNode("n1", "10.0.0.5", connection_factory=Refusing)
    with pytest.raises(AirgapError, match=r"n1: cannot open SSH to root@10.0.0.5:22") as err:
        n.run(["true"])
    assert "Connection refused" in (err.value.details or "")


def test_auth_kwargs_key_or_agent() -> None:
    assert SSHNode("a", "h").connect_kwargs() == {"allow_agent": True, "look_for_keys": True}
    assert SSHNode("a", "h", key_file=Path("/k/id")).connect_kwargs() == {
        "allow_agent": True, "look_for_keys": False, "key_filename": "/k/id"}


def test_real_fabric_connection_rejects_unknown_host_keys_by_default(tmp_path: Path) -> None:
    from paramiko import RejectPolicy, WarningPolicy

    strict = SSHNode("a", "10.0.0.5", known_hosts=tmp_path / "none")
    conn = strict._connect()
    assert isinstance(conn.client._policy, RejectPolicy)  # type: ignore[attr-defined]
    loose = SSHNode("a", "10.0.0.5", strict_host_key_checking=False)
    assert isinstance(loose._connect().client._policy, WarningPolicy)  # type: ignore[attr-defined]


def test_build_nodes_from_plan(tmp_path: Path) -> None:
    plan = parse_plan({
        "access": ["proxy"],
        "proxy": {"https": "http://10.0.0.2:3128"},
        "nodes": [
            {"name": "cp", "address": "10.0.0.5", "transport": "ssh",
             "ssh": {"user": "ubuntu", "port": 2222, "key_file": "keys/id",
                     "strict_host_key_checking": False}},
            {"name": "here", "address": "10.0.0.6", "transport": "local", "role": "worker"},
        ],
    }, base_dir=tmp_path)
    nodes = build_nodes(plan)
    ssh = nodes["cp"]
    assert isinstance(ssh, SSHNode)
    assert (ssh.host, ssh.user, ssh.port, ssh.strict_host_key_checking) == (
        "10.0.0.5", "ubuntu", 2222, False)
    assert ssh.key_file == tmp_path / "keys/id"
    assert isinstance(nodes["here"], LocalNode)
    assert list(build_nodes(plan, ["here"])) == ["here"]
    with pytest.raises(AirgapError, match="no node named 'nope'"):
        build_nodes(plan, ["nope"])


def test_build_lxd_node_uses_the_lab() -> None:
    pytest.importorskip("pylxd")
    plan = parse_plan({
        "access": ["sideload"],
        "nodes": [{"name": "node-1", "address": "10.0.0.5", "transport": "lxd",
                   "lxd": {"instance": "lab-node-1", "project": "airgap-lab"}}],
    })
    from lab.lxd import TRANSPORTS

    n = build_nodes(plan, transports=TRANSPORTS)["node-1"]
    assert type(n).__name__ == "LXDNode"
    assert (n.name, n.instance, n.project) == ("node-1", "lab-node-1", "airgap-lab")  # type: ignore[attr-defined]


def test_lxd_without_the_lab_transport_is_a_plan_error_with_a_resolution() -> None:
    # The library never imports the lab: transport lxd exists only where it is injected.
    plan = parse_plan({
        "access": ["sideload"],
        "nodes": [{"name": "node-1", "address": "10.0.0.5", "transport": "lxd"}],
    })
    with pytest.raises(PlanError) as err:
        build_nodes(plan)
    assert "node-1: transport lxd is not available here" in err.value.brief
    assert "invoke" in (err.value.resolution or "")
