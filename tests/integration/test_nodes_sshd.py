"""SSHNode against a real OpenSSH server on loopback (the unit tests use a fake).

The server (tests/support/sshd.py) is a throwaway sshd on 127.0.0.1:<free port> with
its own host and client keys. Nodes are built from a plan, exactly as tasks build
them. HOME points at a per-test directory so the user's real ~/.ssh is never read or
written, and the SSH agent is hidden so only the plan's key_file is offered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap import process
from airgap.errors import AirgapError, CommandError
from airgap.nodes import SSHNode, build_nodes
from airgap.plan import parse_plan
from tests.support.require import need, require_binary, require_root
from tests.support.sshd import (
    SSHD_BIN,
    SSHServer,
    add_sudo_user,
    remove_sudo_user,
    start_sshd,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sudo_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A temporary non-root login user with passwordless sudo, removed at the end."""
    require_root()
    require_binary("useradd")
    require_binary("sudo")
    require_binary("visudo")
    name = add_sudo_user(tmp_path_factory.mktemp("ssh-homes"))
    try:
        yield name
    finally:
        remove_sudo_user(name)


@pytest.fixture(scope="module")
def sshd(sudo_user: str) -> Iterator[SSHServer]:
    need(Path(SSHD_BIN).is_file(), f"{SSHD_BIN} is missing (apt-get install openssh-server)")
    require_binary("ssh-keygen")
    server = start_sshd("127.0.0.1", users=["root", sudo_user])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME (no ~/.ssh/known_hosts yet) and no SSH agent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def trust(home: Path, line: str) -> None:
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "known_hosts").write_text(line)


def ssh_node(
    server: SSHServer, *, user: str = "root", key: Path | None = None, **ssh: object
) -> SSHNode:
    plan = parse_plan({
        "access": ["sideload"],
        "nodes": [{
            "name": "node-ssh",
            "address": server.host,
            "transport": "ssh",
            "ssh": {"user": user, "port": server.port,
                    "key_file": str(key or server.client_key), **ssh},
        }],
    })
    node = build_nodes(plan)["node-ssh"]
    assert isinstance(node, SSHNode)
    return node


@pytest.fixture
def node(sshd: SSHServer, home: Path) -> Iterator[SSHNode]:
    """A root SSHNode whose host key is in the (temporary) ~/.ssh/known_hosts."""
    trust(home, sshd.known_hosts_line())
    n = ssh_node(sshd)
    try:
        yield n
    finally:
        n.close()


def test_run_returns_stdout_stderr_and_exit_code(node: SSHNode) -> None:
    res = node.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert not res.ok
    assert node.run(["id", "-un"]).stdout.strip() == "root"
    # Arguments arrive as words, not re-split or expanded by the remote shell.
    res = node.run(["printf", "%s|", "a b", "$HOME", "it's", "*"])
    assert res.stdout == "a b|$HOME|it's|*|"


def test_env_is_passed_through(node: SSHNode) -> None:
    value = "http://10.0.0.2:3128 $(touch /tmp/pwned) 'q' \"d\""
    res = node.run(["sh", "-c", 'printf "%s" "$HTTPS_PROXY"'], env={"HTTPS_PROXY": value})
    assert res.stdout == value


def test_input_reaches_stdin(node: SSHNode) -> None:
    res = node.run(["wc", "-c"], input=b"twelve bytes", timeout=30)
    assert res.stdout.strip() == "12"


def test_failing_command_raises_command_error_naming_node(node: SSHNode) -> None:
    with pytest.raises(CommandError) as err:
        node.run(["sh", "-c", "echo boom >&2; exit 7"])
    assert err.value.returncode == 7
    assert "node-ssh" in str(err.value)
    assert "boom" in err.value.stderr


def test_write_put_get_round_trip(node: SSHNode, tmp_path: Path) -> None:
    data = bytes(range(256)) * 64 + b"\x00\r\n\xff"
    target = tmp_path / "remote" / "new" / "deeper" / "blob.bin"
    node.write(str(target), data, mode=0o640)
    assert node.get(str(target)) == data
    mode_owner = node.run(["stat", "-c", "%a %U", str(target)]).stdout.split()
    assert mode_owner == ["640", "root"]

    local = tmp_path / "local.sh"
    local.write_bytes(b"#!/bin/sh\necho put-ok\n")
    dest = tmp_path / "remote" / "other" / "run.sh"
    node.put(local, str(dest), mode=0o755)
    assert node.run([str(dest)]).stdout == "put-ok\n"
    assert node.run(["stat", "-c", "%a", str(dest)]).stdout.strip() == "755"

    node.write(str(target), b"replaced", mode=0o600)  # overwrite in place
    assert node.get(str(target)) == b"replaced"
    assert node.run(["stat", "-c", "%a", str(target)]).stdout.strip() == "600"
    # Only the final files are left behind: no .part file next to them.
    leftovers = sorted(p.name for p in (tmp_path / "remote").rglob("*") if p.is_file())
    assert leftovers == ["blob.bin", "run.sh"]


def test_get_missing_file_is_command_error(node: SSHNode, tmp_path: Path) -> None:
    with pytest.raises(CommandError) as err:
        node.get(str(tmp_path / "absent"))
    assert "node-ssh" in str(err.value)


def log_since(server: SSHServer, offset: int) -> str:
    return server.log_file.read_bytes()[offset:].decode(errors="replace")


def test_unknown_host_key_is_refused_by_default(sshd: SSHServer, home: Path) -> None:
    offset = sshd.log_file.stat().st_size
    n = ssh_node(sshd)
    try:
        with pytest.raises(AirgapError) as err:
            n.run(["true"])
        assert not isinstance(err.value, CommandError)
        text = str(err.value)
        assert "node-ssh" in text and f"127.0.0.1:{sshd.port}" in text
        assert "known_hosts" in text
        assert not (home / ".ssh" / "known_hosts").exists()  # nothing auto-added
    finally:
        n.close()
    # The refusal happened before authentication: sshd saw no accepted key.
    assert "Accepted publickey" not in log_since(sshd, offset)

    trust(home, sshd.known_hosts_line())
    n = ssh_node(sshd)
    try:
        assert n.run(["echo", "trusted"]).stdout == "trusted\n"
    finally:
        n.close()


def test_changed_host_key_is_refused(sshd: SSHServer, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
    wrong = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    trust(home, f"[{sshd.host}]:{sshd.port} {wrong}\n")
    n = ssh_node(sshd, strict_host_key_checking=False)  # even when not strict
    try:
        with pytest.raises(AirgapError) as err:
            n.run(["true"])
        assert not isinstance(err.value, CommandError)
        text = str(err.value)
        assert "node-ssh" in text and "host key does not match" in text
        assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in text
        assert "accepts your key" not in text  # not mistaken for an auth problem
    finally:
        n.close()


def test_strict_host_key_checking_false_accepts_unknown_host(
    sshd: SSHServer, home: Path
) -> None:
    n = ssh_node(sshd, strict_host_key_checking=False)
    try:
        with pytest.warns(UserWarning, match=r"Unknown ssh-ed25519 host key"):
            assert n.run(["id", "-u"]).stdout.strip() == "0"
    finally:
        n.close()
    assert not (home / ".ssh" / "known_hosts").exists()  # nothing written


def test_rejected_key_is_clear_error(sshd: SSHServer, home: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)])
    trust(home, sshd.known_hosts_line())
    n = ssh_node(sshd, key=stranger)
    try:
        with pytest.raises(AirgapError) as err:
            n.run(["true"])
        assert not isinstance(err.value, CommandError)
        assert "node-ssh" in str(err.value) and "key_file" in str(err.value)
    finally:
        n.close()


def test_non_root_user_runs_as_root_through_sudo(
    sshd: SSHServer, home: Path, sudo_user: str, tmp_path: Path
) -> None:
    trust(home, sshd.known_hosts_line())
    offset = sshd.log_file.stat().st_size
    n = ssh_node(sshd, user=sudo_user)
    try:
        assert n.sudo
        assert n.run(["id", "-u"]).stdout.strip() == "0"
        res = n.run(["sh", "-c", 'printf "%s" "$NO_PROXY"'], env={"NO_PROXY": "a,b c"})
        assert res.stdout == "a,b c"  # env survives sudo
        target = tmp_path / "sudo" / "new" / "root-only.conf"
        n.write(str(target), b"secret=1\n", mode=0o600)
        assert n.get(str(target)) == b"secret=1\n"
        assert n.run(["stat", "-c", "%a %U", str(target)]).stdout.split() == ["600", "root"]
    finally:
        n.close()
    assert f"Accepted publickey for {sudo_user} " in log_since(sshd, offset)
