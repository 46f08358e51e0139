"""sync-images.yaml: the fields regsync needs to reach the mirror, as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.errors import AirgapError, PlanError
from airgap.plan import Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.render.sync import (
    RegistryAccess,
    mirror_path,
    mirror_ref,
    render_sync_images,
    sync_config,
)

# The procedure's example, as written (seed/offline-install.md).
SEED_SYNC_IMAGES = """\
sync:
  - source: ghcr.io/canonical/k8s-snap/pause:3.10
    target: '{{ env "MIRROR" }}/canonical/k8s-snap/pause:3.10'
    type: image
"""

IMAGES = [
    parse_image_ref("ghcr.io/canonical/k8s-snap/pause:3.10"),
    parse_image_ref("ghcr.io/canonical/coredns:1.11.1-ck4"),
    parse_image_ref("nginx:1.27"),
]

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def plan(**mirror: Any) -> Plan:
    return parse_plan({
        "access": ["mirror"],
        "nodes": [{"name": "node-1", "address": "10.0.0.2"}],
        "mirror": mirror,
    }, base_dir=Path("/nonexistent"))


def expand(text: str, env: dict[str, str]) -> str:
    """What regclient's template does with {{ env "X" }} (enough for these files)."""
    for key, value in env.items():
        text = text.replace('{{ env "' + key + '" }}', value)
    return text


def regsync_uses_tls(config: dict[str, Any], host: str) -> bool:
    """Would regsync speak TLS to host? Yes unless a creds entry for it disables TLS."""
    for entry in config.get("creds") or []:
        if entry.get("registry") == host:
            return entry.get("tls", "enabled") != "disabled"
    return True


def loaded(text: str, mirror: str) -> dict[str, Any]:
    data = yaml.safe_load(expand(text, {"MIRROR": mirror}))
    assert isinstance(data, dict)
    return data


def test_seed_example_would_speak_tls_to_an_http_mirror() -> None:
    # The reason for creds: the procedure's file against http://10.10.10.10:5050.
    assert regsync_uses_tls(loaded(SEED_SYNC_IMAGES, "10.10.10.10:5050"), "10.10.10.10:5050")


def test_http_mirror_disables_tls() -> None:
    p = plan(url="http://10.10.10.10:5050")
    text = render_sync_images(p, IMAGES).text
    assert not regsync_uses_tls(loaded(text, p.mirror.host), "10.10.10.10:5050")  # type: ignore[union-attr]


def test_entries_follow_the_procedure() -> None:
    p = plan(url="http://10.10.10.10:5050")
    data = yaml.safe_load(render_sync_images(p, IMAGES).text)
    assert data["sync"] == [
        {"source": "docker.io/library/nginx:1.27",
         "target": '{{ env "MIRROR" }}/library/nginx:1.27', "type": "image"},
        {"source": "ghcr.io/canonical/coredns:1.11.1-ck4",
         "target": '{{ env "MIRROR" }}/canonical/coredns:1.11.1-ck4', "type": "image"},
        {"source": "ghcr.io/canonical/k8s-snap/pause:3.10",
         "target": '{{ env "MIRROR" }}/canonical/k8s-snap/pause:3.10', "type": "image"},
    ]
    assert data["defaults"]["parallel"] > 1
    assert data["version"] == 1


def test_https_mirror_with_private_ca_carries_the_pem() -> None:
    p = plan(url="https://mirror.internal:5443")
    data = yaml.safe_load(render_sync_images(p, IMAGES, ca_pem=PEM.encode()).text)
    mirror = data["creds"][0]
    assert mirror["registry"] == '{{ env "MIRROR" }}'
    assert mirror["tls"] == "enabled"
    assert mirror["regcert"] == PEM
    assert "user" not in mirror and "pass" not in mirror


def real_pem() -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_ca_file_is_read_when_no_pem_is_passed(tmp_path: Path) -> None:
    pem = real_pem()
    (tmp_path / "ca.pem").write_text(pem)
    p = parse_plan({
        "access": ["mirror"], "nodes": [{"name": "n", "address": "10.0.0.2"}],
        "mirror": {"url": "https://m:5443", "ca_file": "ca.pem"},
    }, base_dir=tmp_path)
    data = yaml.safe_load(render_sync_images(p, IMAGES).text)
    assert data["creds"][0]["regcert"] == pem


def test_unreadable_ca_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    p = parse_plan({
        "access": ["mirror"], "nodes": [{"name": "n", "address": "10.0.0.2"}],
        "mirror": {"url": "https://m:5443", "ca_file": "ca.pem"},
    }, base_dir=tmp_path)
    with pytest.raises(PlanError, match=r"mirror\.ca_file"):
        render_sync_images(p, IMAGES)


def test_credentials_are_templates_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_USER", "alice")
    monkeypatch.setenv("MIRROR_PASS", "s3cret-value")
    p = plan(url="https://m:5443", username_env="MIRROR_USER", password_env="MIRROR_PASS")
    text = render_sync_images(p, IMAGES, ca_pem=PEM).text
    assert "alice" not in text and "s3cret-value" not in text
    assert "MIRROR_USER" not in text  # regsync reads USERNAME/PASSWORD, as the procedure runs it
    mirror = yaml.safe_load(text)["creds"][0]
    assert mirror["user"] == '{{ env "USERNAME" }}'
    assert mirror["pass"] == '{{ env "PASSWORD" }}'


def test_nested_prefix_with_registry_placeholder() -> None:
    p = plan(url="https://10.10.10.10:5050", path_prefix="my/own/{registry}")
    ghcr = IMAGES[1]
    assert mirror_path(p, ghcr) == "my/own/ghcr.io/canonical/coredns:1.11.1-ck4"
    assert mirror_ref(p, IMAGES[2]) == "10.10.10.10:5050/my/own/docker.io/library/nginx:1.27"
    data = yaml.safe_load(render_sync_images(p, [ghcr]).text)
    target = data["sync"][0]["target"]
    assert target == '{{ env "MIRROR" }}/my/own/ghcr.io/canonical/coredns:1.11.1-ck4'


def test_digest_pinned_source_keeps_a_tagged_target() -> None:
    digest = "sha256:" + "a" * 64
    ref = parse_image_ref(f"ghcr.io/canonical/coredns:1.11.1-ck4@{digest}")
    p = plan(url="http://m:5000")
    entry = sync_config(p, [ref])["sync"][0]
    assert entry["source"] == f"ghcr.io/canonical/coredns:1.11.1-ck4@{digest}"
    assert entry["target"] == '{{ env "MIRROR" }}/canonical/coredns:1.11.1-ck4'
    only_digest = parse_image_ref(f"ghcr.io/canonical/coredns@{digest}")
    assert sync_config(p, [only_digest])["sync"][0]["target"].endswith(f"coredns@{digest}")


def test_http_upstreams_get_their_own_creds_entry() -> None:
    p = plan(url="http://127.0.0.1:5001")
    config = sync_config(p, IMAGES, upstreams=[
        RegistryAccess("127.0.0.1:5000", tls="disabled"),
        RegistryAccess("upstream.lab:443", ca_pem=PEM),
    ])
    hosts = {c["registry"]: c for c in config["creds"]}
    assert hosts["127.0.0.1:5000"]["tls"] == "disabled"
    assert hosts["upstream.lab:443"]["regcert"] == PEM


def test_parallel_of_one_is_regsyncs_default_and_accepted() -> None:
    config = sync_config(plan(url="http://m:5000"), IMAGES, parallel=1)
    assert config["defaults"]["parallel"] == 1


@pytest.mark.parametrize("parallel", [0, -3])
def test_parallel_below_one_names_the_flag(parallel: int) -> None:
    with pytest.raises(AirgapError, match=rf"--parallel {parallel}: ") as info:
        sync_config(plan(url="http://m:5000"), IMAGES, parallel=parallel)
    assert info.value.resolution


def test_no_mirror_section_is_a_plan_error() -> None:
    p = parse_plan({"access": ["sideload"], "nodes": [{"name": "n", "address": "10.0.0.2"}]})
    with pytest.raises(PlanError, match="mirror"):
        render_sync_images(p, IMAGES)


def test_output_is_stable_and_sorted() -> None:
    p = plan(url="http://m:5000")
    a = render_sync_images(p, IMAGES).content
    b = render_sync_images(p, list(reversed(IMAGES)) + IMAGES).content
    assert a == b


def test_registry_placeholder_with_a_port_is_refused() -> None:
    p = plan(url="http://m:5000", path_prefix="mirror/{registry}")
    with pytest.raises(PlanError, match="path_prefix"):
        mirror_path(p, parse_image_ref("127.0.0.1:5000/x/y:1"))
