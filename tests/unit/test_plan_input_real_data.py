"""Input a real user gives that was accepted silently: credentials, empty lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airgap.errors import AirgapError, ImageListError
from airgap.plan import parse_plan
from airgap.plan.images import parse_image_list, read_image_list
from tests.support.taskrun import assert_clean_error, run_task


@pytest.mark.parametrize(
    "url", ["https://user:s3cr3t-value@mirror.internal:5443", "http://s3cr3t-value@10.0.0.5:5000"]
)
def test_credentials_in_the_mirror_url_are_refused_without_echoing_them(url: str) -> None:
    plan = {"access": ["mirror"], "mirror": {"url": url},
            "nodes": [{"name": "node-1", "address": "10.0.0.9"}]}
    with pytest.raises(AirgapError) as err:
        parse_plan(plan, source="airgap.yaml")
    text = str(err.value)
    assert "mirror.url" in text and "mirror.username_env" in text
    assert "s3cr3t-value" not in text


def test_credentials_in_the_mirror_url_through_render(tmp_path: Path) -> None:
    plan = {"access": ["mirror"], "mirror": {"url": "https://u:s3cr3t-value@mirror:5443"},
            "nodes": [{"name": "node-1", "address": "10.0.0.9"}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = run_task("render", "--plan", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "o"))
    assert_clean_error(proc, ["mirror.url", "username_env"])
    assert "s3cr3t-value" not in proc.stdout + proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["", "\n\n", "# k8s list-images failed\n\n  # nothing\n"])
def test_an_image_list_without_images_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ImageListError, match=r"list\.txt: no image references"):
        parse_image_list(text, "list.txt")
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(ImageListError) as err:
        read_image_list(path)
    assert "k8s list-images" in (err.value.resolution or "")


def _plan(network: dict[str, str], address: str = "10.0.0.9") -> dict[str, object]:
    return {"access": ["proxy"], "proxy": {"https": "http://10.0.0.2:3128"},
            "network": network, "nodes": [{"name": "node-1", "address": address}]}


@pytest.mark.parametrize(
    ("network", "address", "wanted"),
    [
        ({"pod_cidr": "10.1.0.0"}, "10.0.0.9", "network.pod_cidr: '10.1.0.0' has no prefix"),
        ({"service_cidr": "10.152.183.0"}, "10.0.0.9", "network.service_cidr: '10.152.183.0'"),
        ({"pod_cidr": "10.0.0.0/8", "service_cidr": "10.152.183.0/24"}, "192.168.1.5",
         "service_cidr 10.152.183.0/24 overlaps pod_cidr 10.0.0.0/8"),
        ({}, "10.1.2.3", "nodes[0].address 10.1.2.3 (node-1) is inside network.pod_cidr"),
        ({}, "10.152.183.7", "is inside network.service_cidr 10.152.183.0/24"),
    ],
)
def test_network_values_that_cannot_work_are_refused(
    network: dict[str, str], address: str, wanted: str
) -> None:
    with pytest.raises(AirgapError) as err:
        parse_plan(_plan(network, address), source="airgap.yaml")
    assert wanted in str(err.value), str(err.value)


def test_default_networks_and_a_plain_node_address_pass() -> None:
    plan = parse_plan(_plan({}), source="airgap.yaml")
    assert (plan.network.pod_cidr, plan.network.service_cidr) == ("10.1.0.0/16", "10.152.183.0/24")


def _render(tmp_path: Path, plan_text: str | bytes, images: str | None = None) -> str:
    plan = tmp_path / "airgap.yaml"
    plan.write_bytes(plan_text if isinstance(plan_text, bytes) else plan_text.encode())
    args = ["render", "--plan", str(plan), "--out", str(tmp_path / "out")]
    if images is not None:
        (tmp_path / "images.txt").write_text(images)
        args += ["--images", str(tmp_path / "images.txt")]
    proc = run_task(*args)
    assert_clean_error(proc, [])
    assert proc.stderr.count("Error:") == 1 and len(proc.stderr) < 2000, proc.stderr[:3000]
    assert not (tmp_path / "out").exists()
    return proc.stderr


GOOD = (
    "access: [proxy]\nproxy:\n  https: http://10.0.0.2:3128\n"
    "nodes:\n  - name: node-1\n    address: 10.0.0.9\n"
)


def test_yaml_nested_5000_deep_is_one_error(tmp_path: Path) -> None:
    err = _render(tmp_path, GOOD + "extra: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested more than 32 levels deep" in err


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    err = _render(tmp_path, GOOD + "proxy:\n  https: http://10.0.0.3:3128\n")
    assert "duplicate key 'proxy' (first at line 2" in err and "line 7" in err


def test_a_huge_plan_is_refused(tmp_path: Path) -> None:
    err = _render(tmp_path, GOOD + "#" * (2 * 1024 * 1024) + "\n")
    assert "far too large for a plan" in err


def test_an_image_name_over_255_characters_is_refused(tmp_path: Path) -> None:
    err = _render(tmp_path, GOOD, "ghcr.io/" + "a" * 250 + ":1\n")
    assert "registries refuse names over 255" in err


def test_a_2_mb_line_in_an_image_list_is_refused(tmp_path: Path) -> None:
    err = _render(tmp_path, GOOD, "ghcr.io/canonical/pause:3.10\n" + "x" * (2 * 1024 * 1024) + "\n")
    assert "images.txt:2: line of 2097152 characters" in err
