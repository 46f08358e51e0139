"""The plan: loading, defaults, validation messages that name the field, examples, init."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.errors import PlanError
from airgap.plan import (
    CLASSIC_HOSTS_DIR,
    Mode,
    RoutePersistence,
    load_plan,
    mirror_ca_pem,
    parse_plan,
    starter_plan,
    workload_images,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def base(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "access": ["sideload"],
        "nodes": [{"name": "node-1", "address": "10.0.0.1"}],
    }
    data.update(extra)
    return data


def error(data: Any) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(data, source="p.yaml")
    return info.value.brief


def test_minimal_plan_defaults() -> None:
    plan = parse_plan(base())
    assert plan.k8s.hosts_dir == CLASSIC_HOSTS_DIR
    assert plan.network.pod_cidr == "10.1.0.0/16"
    assert plan.network.service_cidr == "10.152.183.0/24"
    assert plan.network.route_persistence is RoutePersistence.netplan
    assert plan.platforms == ["linux/amd64"]
    assert plan.control_plane.name == "node-1"


def test_access_may_be_a_single_string() -> None:
    assert parse_plan(base(access="sideload")).access == [Mode.sideload]


def test_containerd_base_dir_moves_hosts_dir() -> None:
    plan = parse_plan(base(k8s={"containerd_base_dir": "/var/snap/k8s/common/"}))
    assert plan.k8s.hosts_dir == "/var/snap/k8s/common/etc/containerd/hosts.d"


def test_mirror_properties() -> None:
    plan = parse_plan(
        base(
            access=["mirror"],
            mirror={"url": "https://Mirror.internal:5443/", "path_prefix": "/m/{registry}/"},
        )
    )
    assert plan.mirror is not None
    assert plan.mirror.url == "https://Mirror.internal:5443"
    assert plan.mirror.host == "Mirror.internal:5443"
    assert plan.mirror.hostname == "mirror.internal"
    assert plan.mirror.prefix_for("ghcr.io") == "m/ghcr.io"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (base(acess=["mirror"]), "p.yaml: acess: unknown field"),
        (base(nodes=[{"name": "Node_1", "address": "10.0.0.1"}]), "p.yaml: nodes[0].name:"),
        (
            base(nodes=[{"name": "n", "address": "ten"}]),
            "p.yaml: nodes[0].address: 'ten' is not an IP",
        ),
        (base(access=["mirror"]), "access includes mirror but there is no mirror"),
        (base(access=["proxy"]), "access includes proxy but there is no proxy"),
        (
            base(access=["mirror"], mirror={"url": "10.0.0.1:5000"}),
            "mirror.url: '10.0.0.1:5000' needs a scheme",
        ),
        (
            base(access=["mirror"], mirror={"url": "http://m:5000", "ca_file": "ca.crt"}),
            "mirror: ca_file is set but the mirror url is http://",
        ),
        (
            base(access=["mirror"], mirror={"url": "http://m:5000", "username_env": "U"}),
            "set both username_env and password_env",
        ),
        (
            base(proxy={"http": "http://user:secret@p:3128"}),
            "proxy.http: credentials in the proxy URL",
        ),
        (
            base(network={"pod_cidr": "10.1.0.1/16"}),
            "network.pod_cidr: '10.1.0.1/16' is not a network",
        ),
        (
            base(network={"route_persistence": "networkd"}),
            "route_persistence is networkd: set networkd_file",
        ),
        (base(network={"route_persistence": "ifupdown"}), "network.route_persistence:"),
        (base(platforms=["windows/amd64"]), "platforms: 'windows/amd64' is not a platform"),
        (
            base(images={"extra": ["nginx", "Bad Ref"]}),
            "images.extra: item 1: invalid image reference",
        ),
        (
            base(
                nodes=[{"name": "a", "address": "10.0.0.1"}, {"name": "a", "address": "10.0.0.2"}]
            ),
            "duplicate node name 'a'",
        ),
        (
            base(nodes=[{"name": "w", "address": "10.0.0.1", "role": "worker"}]),
            "at least one node needs role control-plane",
        ),
        (["not", "a", "mapping"], "p.yaml: the plan must be a YAML mapping"),
    ],
)
def test_invalid_plans_name_the_field(data: Any, expected: str) -> None:
    brief = error(data)
    assert brief.startswith("p.yaml:")
    assert expected in brief
    assert "\n" not in brief


def test_load_plan_yaml_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "airgap.yaml"
    p.write_text("access: [mirror\nnodes: []\n")
    with pytest.raises(PlanError, match=r"airgap.yaml: line \d+, column \d+: not valid YAML"):
        load_plan(p)


def test_load_plan_resolves_relative_files(tmp_path: Path) -> None:
    (tmp_path / "work.txt").write_text("nginx\n# comment\nghcr.io/x/y:1\r\n")
    p = tmp_path / "airgap.yaml"
    p.write_text(yaml.safe_dump(base(images={"files": ["work.txt"], "extra": ["busybox:1.36"]})))
    plan = load_plan(p)
    assert plan.base_dir == tmp_path
    assert [str(i) for i in workload_images(plan)] == [
        "docker.io/library/busybox:1.36",
        "docker.io/library/nginx:latest",
        "ghcr.io/x/y:1",
    ]


def test_missing_image_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "airgap.yaml"
    p.write_text(yaml.safe_dump(base(images={"files": ["nope.txt"]})))
    with pytest.raises(PlanError, match=r"images\.files: nope\.txt does not exist"):
        load_plan(p)


def test_mirror_ca_pem_reads_and_checks_pem(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "ca.crt").write_bytes(pem)
    (tmp_path / "bad.crt").write_text("hello\n")
    good = parse_plan(
        base(access=["mirror"], mirror={"url": "https://m:5443", "ca_file": "ca.crt"}),
        base_dir=tmp_path,
    )
    assert mirror_ca_pem(good) == pem
    bad = parse_plan(
        base(access=["mirror"], mirror={"url": "https://m:5443", "ca_file": "bad.crt"}),
        source="p.yaml",
        base_dir=tmp_path,
    )
    with pytest.raises(
        PlanError, match=r"p\.yaml: mirror\.ca_file: .*bad\.crt is not a PEM"
    ):
        mirror_ca_pem(bad)
    assert mirror_ca_pem(parse_plan(base())) is None


@pytest.mark.parametrize("mode", list(Mode))
def test_starter_plan_validates_as_written(mode: Mode) -> None:
    text = starter_plan(mode)
    plan = parse_plan(yaml.safe_load(text))
    assert plan.access == [mode]
    assert text.count("#") > 10  # it is commented


def test_examples_exist_and_load() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"proxy.yaml", "mirror.yaml", "sideload.yaml"} <= names
    for path in EXAMPLES:
        plan = load_plan(path)
        assert plan.nodes
