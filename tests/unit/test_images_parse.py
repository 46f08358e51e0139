"""Image references and lists: normalisation, file/line errors, merge order."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.errors import ImageListError
from airgap.plan.images import (
    ImageRef,
    format_image_list,
    merge_images,
    parse_image_list,
    parse_image_ref,
    read_image_list,
    registries,
    upstream_server,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
        ("registry-1.docker.io/x/y:2", "docker.io/x/y:2"),
        (f"nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),
        (f"nginx:1.27@{DIGEST}", f"docker.io/library/nginx:1.27@{DIGEST}"),
        ("ghcr.io/canonical/coredns:1.11.1-ck4", "ghcr.io/canonical/coredns:1.11.1-ck4"),
        ("registry.corp:5000/team/app", "registry.corp:5000/team/app:latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("10.0.0.5:5050/a/b/c:d", "10.0.0.5:5050/a/b/c:d"),
        ("GHCR.IO/canonical/x:1", "ghcr.io/canonical/x:1"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert str(parse_image_ref(text)) == expected


def test_parts_and_helpers() -> None:
    ref = parse_image_ref(f"registry.corp:5000/team/app:1@{DIGEST}")
    assert ref == ImageRef("registry.corp:5000", "team/app", "1", DIGEST)
    assert ref.name == "registry.corp:5000/team/app:1"
    assert ref.path == f"team/app:1@{DIGEST}"
    assert str(ref.in_registry("m:5050", "/pre/")) == f"m:5050/pre/team/app:1@{DIGEST}"
    assert upstream_server("docker.io") == "https://registry-1.docker.io"
    assert upstream_server("ghcr.io") == "https://ghcr.io"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("ghcr.io/Canonical/x:1", "not a valid repository"),
        ("ghcr.io/x:bad tag", "white space"),
        ("ghcr.io/x:-bad", "not a valid tag"),
        ("ghcr.io/x@sha256:abc", "not a digest"),
        ("ghcr.io:99999/x", "out of range"),
        ("ghcr.io/x//y", "not a valid repository"),
        ("bad_host.io:5000/x", "not a registry host"),
    ],
)
def test_invalid_references(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_image_ref(text)


LIST_IMAGES = """\
ghcr.io/canonical/cilium:1.15.2-ck2\r
ghcr.io/canonical/coredns:1.11.1-ck4   \r
\r
# workload images
nginx            # comment after a reference
ghcr.io/canonical/cilium:1.15.2-ck2
docker.io/library/nginx:latest
"""


def test_list_blank_comments_crlf_trailing_spaces_duplicates() -> None:
    refs = parse_image_list(LIST_IMAGES, "list.txt")
    assert [str(r) for r in refs] == [
        "docker.io/library/nginx:latest",
        "ghcr.io/canonical/cilium:1.15.2-ck2",
        "ghcr.io/canonical/coredns:1.11.1-ck4",
    ]


def test_list_error_names_file_and_line() -> None:
    with pytest.raises(ImageListError) as info:
        parse_image_list("ghcr.io/a:1\n\n# c\nghcr.io/B:1\n", "work.txt")
    assert info.value.brief.startswith("work.txt:4: invalid image reference:")
    assert "\n" not in info.value.brief


def test_read_image_list_handles_bom_and_reports_missing_and_binary(tmp_path: Path) -> None:
    p = tmp_path / "images.txt"
    p.write_bytes(b"\xef\xbb\xbfghcr.io/a/b:1\n")
    assert [str(r) for r in read_image_list(p)] == ["ghcr.io/a/b:1"]
    with pytest.raises(ImageListError, match=r"nope\.txt: image list not found"):
        read_image_list(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ImageListError, match=r"bin\.txt: not a text file"):
        read_image_list(tmp_path / "bin.txt")


def test_merge_is_sorted_unique_and_order_independent() -> None:
    a = parse_image_list("nginx\nghcr.io/x/y:1\n")
    b = parse_image_list("docker.io/library/nginx:latest\nquay.io/z:2\n")
    assert merge_images(a, b) == merge_images(b, a)
    assert [str(r) for r in merge_images(a, b)] == [
        "docker.io/library/nginx:latest",
        "ghcr.io/x/y:1",
        "quay.io/z:2",
    ]
    assert registries(merge_images(a, b)) == ["docker.io", "ghcr.io", "quay.io"]
    assert format_image_list(merge_images(a)) == "docker.io/library/nginx:latest\nghcr.io/x/y:1\n"
