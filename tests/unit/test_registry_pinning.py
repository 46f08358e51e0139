"""prepare pins digests through the one registry client, configured as regclient is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.errors import PlanError
from airgap.registry import pinning_client, regctl_hosts


def config(tmp_path: Path, hosts: dict[str, dict[str, str]]) -> Path:
    path = tmp_path / "regctl.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


def test_regctl_settings_decide_scheme_ca_and_login(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGCTL_CONFIG", str(config(tmp_path, {
        "127.0.0.1:5000": {"tls": "disabled", "hostname": "127.0.0.1:5000"},
        "reg.test": {"tls": "enabled", "user": "u", "pass": "p"},
    })))
    hosts = regctl_hosts()
    http = pinning_client("127.0.0.1:5000", hosts)
    assert (http.url, http.tls) == ("http://127.0.0.1:5000", False)
    login = pinning_client("reg.test", hosts)
    assert login.url == "https://reg.test"
    assert login._credentials == ("u", "p")
    # Docker Hub is asked at its API host, and with no settings over TLS, anonymously.
    hub = pinning_client("docker.io", {})
    assert (hub.url, hub._credentials) == ("https://registry-1.docker.io", None)


def test_no_regctl_config_is_no_settings(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGCTL_CONFIG", str(tmp_path / "absent.json"))
    assert regctl_hosts() == {}


def test_a_broken_regctl_config_is_named_with_its_fix(tmp_path: Path) -> None:
    bad = tmp_path / "regctl.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError) as err:
        regctl_hosts(bad)
    assert str(bad) in err.value.brief
    assert "REGCTL_CONFIG" in (err.value.resolution or "")
