"""Input a real user gives that was accepted silently: credentials, empty lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airgap.config import parse_plan
from airgap.errors import AirgapError, ImageListError
from airgap.images import parse_image_list, read_image_list
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
