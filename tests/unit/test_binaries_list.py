"""The one list of external programs: loaded strictly, checked by lab.host, enforced
on every test run under CI (tests/support/binaryrecord.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airgap import binaries, process
from airgap.errors import AirgapError
from tests.support.taskrun import ROOT, assert_clean_error

LAB = [b for b in binaries.host_binaries().values()
       if "lab" in b.used_by and b.apt_package and not b.optional]


def exe(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_the_shipped_list_loads_and_names_a_package_for_every_apt_binary() -> None:
    listed = binaries.load()
    assert {"dnsmasq", "lxd", "regctl", "containerd"} <= set(binaries.host_binaries(listed))
    for b in listed.values():
        assert b.why, b.key
        if b.apt_package is not None:
            assert b.apt_package and " " not in b.apt_package, b.key
    assert binaries.host_binaries(listed)["dnsmasq"].apt_package == "dnsmasq-base"


@pytest.mark.parametrize(("text", "wanted"), [
    ('[x]\nsource = "brew:x"\nused_by = ["lab"]\n', "[x].source must be apt:PKG"),
    ('[x]\nsource = "apt:x"\nused_by = []\n', "[x].used_by must list"),
    ('[x]\nsource = "apt:x"\nused_by = ["ops"]\n', "[x].used_by must list"),
    ('[x]\nsource = "apt:x"\nused_by = ["lab"]\non = "moon"\n', "[x].on must be host or node"),
    ('[x]\nsource = "apt:x"\nused_by = ["lab"]\npackage = "x"\n', "unknown keys: package"),
    ('x = 1\n', "[x] must be a table"),
    ('[x\n', "not TOML"),
])
def test_a_malformed_entry_is_named(text: str, wanted: str) -> None:
    with pytest.raises(AirgapError) as err:
        binaries.load(text, source="list.toml")
    assert err.value.brief.startswith("list.toml: ")
    assert wanted in str(err.value)


def test_missing_names_each_binary_and_its_package_once(tmp_path: Path) -> None:
    for b in LAB:
        if b.name not in ("dnsmasq", "debootstrap"):
            exe(tmp_path / b.name)
    with pytest.raises(AirgapError) as err:
        binaries.check(["lab"], path=str(tmp_path))
    assert err.value.brief == ("missing programs the lab needs: dnsmasq (dnsmasq-base), "
                              "debootstrap (debootstrap)")
    assert err.value.resolution == (
        "apt-get install --no-install-recommends debootstrap dnsmasq-base")
    exe(tmp_path / "dnsmasq")
    exe(tmp_path / "debootstrap")
    binaries.check(["lab"], path=str(tmp_path))  # all there: no error


def test_invoke_lab_host_fails_first_on_a_missing_dnsmasq(tmp_path: Path) -> None:
    # A PATH with every lab binary but dnsmasq (Debian's lxd only recommends it).
    bindir = tmp_path / "bin"
    for b in LAB:
        if b.name != "dnsmasq":
            exe(bindir / b.name)
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "lab.host"],
        env={**os.environ, "PATH": str(bindir)}, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert_clean_error(proc, ["dnsmasq (dnsmasq-base)",
                              "apt-get install --no-install-recommends dnsmasq-base"])
    assert proc.stderr.count("Error:") == 1
    assert "lxd" not in proc.stderr.split("\n")[0].replace("lxd-", "")  # only what is missing


def test_the_chokepoint_records_what_it_runs_and_not_what_is_absent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "ran.txt"
    monkeypatch.setenv(binaries.RECORD_ENV, str(record))
    probe = exe(tmp_path / "bin" / "k8s-airgap-probe")
    process.run([str(probe)])
    process.run_bytes(["true"])
    with pytest.raises(AirgapError, match="Command not found"):
        process.run(["k8s-airgap-no-such-program"])
    assert binaries.recorded(record) == {"k8s-airgap-probe", "true"}
    assert binaries.unlisted(binaries.recorded(record)) == ["k8s-airgap-probe", "true"]


def test_program_names_fold_the_interpreter() -> None:
    assert binaries.program_name(sys.executable) == "python3"
    assert binaries.program_name("/usr/bin/python3.11") == "python3"
    assert binaries.program_name("/work/main/.bin/regctl") == "regctl"


def test_a_test_run_that_starts_an_unlisted_program_fails(tmp_path: Path) -> None:
    # A child pytest with the plugin, under CI, whose one test passes but starts a
    # program the list does not have, directly with subprocess (the audit hook).
    probe = exe(tmp_path / "bin" / "k8s-airgap-unlisted-probe")
    test = tmp_path / "test_probe.py"
    test.write_text(
        "import subprocess\n"
        "def test_runs_probe():\n"
        f"    subprocess.run([{str(probe)!r}], check=True)\n"
    )

    def child(record: Path, argv0: str) -> subprocess.CompletedProcess[str]:
        test.write_text(test.read_text().replace(str(probe), argv0))
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.binaryrecord",
             "-p", "no:cacheprovider", str(test)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "CI": "true", binaries.RECORD_ENV: str(record),
                 "PYTHONPATH": str(ROOT)},
        )

    bad = child(tmp_path / "bad.txt", str(probe))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "1 passed" in bad.stdout
    assert ("binaries run but not listed in airgap/data/binaries.toml: "
            "k8s-airgap-unlisted-probe") in bad.stdout
    good = child(tmp_path / "good.txt", "openssl")  # listed
    test.write_text(test.read_text().replace("check=True", "check=False"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "all listed" in good.stdout


def test_every_run_loads_the_recorder(pytestconfig: pytest.Config) -> None:
    # Loaded by pyproject's addopts (-p), so no import can be tidied away; under CI it
    # records to a file every child process inherits.
    assert pytestconfig.pluginmanager.has_plugin("tests.support.binaryrecord")
    if os.environ.get("CI") == "true":
        assert os.environ.get(binaries.RECORD_ENV)
