"""The validator rejects every archive the runtime would silently mis-import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap.errors import AirgapError
from airgap.plan.images import parse_image_ref
from airgap.sideload import archives_in, validate_archive, validate_archives
from airgap.sideload.archive import read_archive
from airgap.sideload.layout_tar import tar_overhead, write_layout_tar
from tests.unit.test_sideload_fixtures import (
    Archive,
    Img,
    docker_archive,
    layer,
    oci_archive,
    sha,
)

PAUSE = "ghcr.io/canonical/k8s-snap/pause:3.10"
COREDNS = "ghcr.io/canonical/coredns:1.11.1-ck4"
AMD64 = "linux/amd64"


def refs(*names: str) -> list:
    return [parse_image_ref(n) for n in names]


def test_named_archive_passes_and_reports_the_runtime_digest(tmp_path: Path) -> None:
    img = Img(PAUSE, ref_name="3.10")
    path = oci_archive(tmp_path / "pause.tar", img)
    report = validate_archive(path, refs(PAUSE), AMD64)
    assert report.format == "oci"
    assert [(i.name, i.digest, i.platforms) for i in report.images] == [
        (PAUSE, img.digest, (AMD64,))
    ]
    assert report.blob_count == 3


def test_expected_digest_is_enforced(tmp_path: Path) -> None:
    img = Img(PAUSE)
    path = oci_archive(tmp_path / "pause.tar", img)
    validate_archive(path, [parse_image_ref(PAUSE).with_digest(img.digest)], AMD64)
    other = "sha256:" + "0" * 64
    with pytest.raises(AirgapError) as err:
        validate_archive(path, [parse_image_ref(PAUSE).with_digest(other)], AMD64)
    assert f"the image list pins {other}" in str(err.value)


def test_archive_exported_without_name_says_how_to_fix(tmp_path: Path) -> None:
    # What `regctl image export --platform X` writes without --name (FACTS).
    bad = f"{PAUSE}@sha256:{'a' * 64}"
    path = oci_archive(tmp_path / "pause.tar", Img(bad, ref_name="3.10"))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE, COREDNS), AMD64)
    text = str(err.value)
    assert "never found by kubelet" in text
    assert f"Re-export with --name {PAUSE}" in text


def test_archive_with_no_name_at_all_is_rejected(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "x.tar", Img(None))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert "imports nothing" in str(err.value)
    assert f"--name {PAUSE}" in str(err.value)


def test_raw_ref_name_counts_when_fully_qualified(tmp_path: Path) -> None:
    # containerd falls back to the raw org.opencontainers.image.ref.name.
    good = oci_archive(tmp_path / "good.tar", Img(None, ref_name=PAUSE))
    assert validate_archive(good, refs(PAUSE), AMD64).images[0].name == PAUSE
    tag_only = oci_archive(tmp_path / "tag.tar", Img(None, ref_name="3.10"))
    with pytest.raises(AirgapError, match="not a fully qualified name"):
        validate_archive(tag_only, refs(PAUSE), AMD64)


def test_short_docker_hub_name_is_rejected(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "nginx.tar", Img("nginx:1.27"))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs("nginx:1.27"), AMD64)
    assert "docker.io/library/nginx:1.27" in str(err.value)


def test_name_not_in_image_list(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "x.tar", Img("ghcr.io/other/pause:3.10"))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE, COREDNS), AMD64)
    assert f"the image list says {PAUSE!r}" in str(err.value)


def test_gzip_archive_is_rejected_with_advice(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "pause.tar", Img(PAUSE), compress=True)
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert "gzip-compressed" in err.value.brief
    assert "uncompressed" in (err.value.resolution or "")
    assert ".tar.gz" in (err.value.resolution or "")


def test_zstd_magic_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pause.tar"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 600)
    with pytest.raises(AirgapError, match="zstd-compressed"):
        validate_archive(path, None, AMD64)


def test_only_dot_tar_files_are_imported(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "pause.tar.gz", Img(PAUSE))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert "pause.tar" in (err.value.resolution or "")


def test_wrong_platform_names_both_platforms(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "pause.tar", Img(PAUSE, platform="linux/arm64"))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert "is for linux/arm64, the plan's nodes are linux/amd64" in str(err.value)
    assert "--platform linux/amd64" in (err.value.resolution or "")
    assert validate_archive(path, refs(PAUSE), "linux/arm64").images[0].platforms == (
        "linux/arm64",
    )


def test_missing_blob_names_blob_and_image(tmp_path: Path) -> None:
    big = layer({"bin/app": b"x" * 1000})
    arch = Archive()
    arch.add(Img(PAUSE, layers=[big]))
    path = arch.write(tmp_path / "pause.tar", skip=[sha(big)])
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert f"image {PAUSE}: blob {sha(big)} (layer 1) is missing" in str(err.value)


def test_corrupt_blob_is_detected(tmp_path: Path) -> None:
    big = layer({"bin/app": b"x" * 1000})
    arch = Archive()
    arch.add(Img(PAUSE, layers=[big]))
    path = arch.write(tmp_path / "pause.tar", replace={sha(big): bytes([big[0] ^ 0xFF]) + big[1:]})
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert f"blob {sha(big)} (layer 1) is corrupt" in str(err.value)


def test_truncated_tar_is_rejected(tmp_path: Path) -> None:
    noise = layer({"a": os.urandom(50_000)})
    path = oci_archive(tmp_path / "pause.tar", Img(PAUSE, layers=[noise]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AirgapError):
        validate_archive(path, refs(PAUSE), AMD64)


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"hello" * 300)
    with pytest.raises(AirgapError, match="not a readable tar"):
        validate_archive(path, None, AMD64)


def test_docker_archive_is_accepted_with_normalised_name(tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "nginx.tar", "nginx:1.27")
    report = validate_archive(path, refs("docker.io/library/nginx:1.27"), AMD64)
    assert report.format == "docker-archive"
    assert report.images[0].name == "docker.io/library/nginx:1.27"
    assert report.images[0].digest is None  # the runtime rewrites it on import


def test_docker_archive_wrong_platform(tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "nginx.tar", "nginx:1.27", platform="linux/arm64")
    with pytest.raises(AirgapError, match="is for linux/arm64"):
        validate_archive(path, None, AMD64)


def test_multi_image_archive_and_set_checks(tmp_path: Path) -> None:
    shared = layer({"bin/busybox": b"b" * 4000})
    arch = Archive()
    arch.add(Img(PAUSE, layers=[shared, layer({"p": b"1"})]))
    arch.add(Img(COREDNS, layers=[shared, layer({"c": b"2"})]))
    both = arch.write(tmp_path / "images.tar")
    report = validate_archive(both, refs(PAUSE, COREDNS), AMD64)
    assert [i.name for i in report.images] == [PAUSE, COREDNS]
    assert report.blob_count == 6  # 1 config (same), 2 manifests, 3 layers: shared once
    validate_archives([both], refs(PAUSE, COREDNS), AMD64)
    with pytest.raises(AirgapError, match="in no archive"):
        validate_archives([both], refs(PAUSE, COREDNS, "ghcr.io/x/y:1"), AMD64)
    again = oci_archive(tmp_path / "pause.tar", Img(PAUSE))
    with pytest.raises(AirgapError, match="is in both"):
        validate_archives([both, again], refs(PAUSE, COREDNS), AMD64)


def test_several_problems_are_all_listed(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "x.tar", Img(None, platform="linux/arm64"))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert "and 1 more problem" in err.value.brief
    details = err.value.details or ""
    assert "linux/arm64" in details
    first = err.value.brief.split(": ", 1)[1].split(" (and ", 1)[0]
    assert first not in details, "the details repeat the headline"


def test_one_problem_has_no_details_repeating_it(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "x.tar", Img(None))
    with pytest.raises(AirgapError) as err:
        validate_archive(path, refs(PAUSE), AMD64)
    assert err.value.details is None
    assert str(err.value).count(err.value.brief.split(": ", 1)[1]) == 1


def test_a_compressed_file_beside_the_archives_is_named(tmp_path: Path) -> None:
    oci_archive(tmp_path / "pause.tar", Img(PAUSE))
    (tmp_path / "coredns.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(AirgapError) as err:
        archives_in(tmp_path)
    assert "coredns.tar.gz: is compressed" in err.value.brief
    assert "images would be missing" in err.value.brief
    assert "gunzip" in (err.value.resolution or "")


def test_another_file_beside_the_archives_is_named(tmp_path: Path) -> None:
    oci_archive(tmp_path / "pause.tar", Img(PAUSE))
    (tmp_path / "pause.oci").write_bytes(b"x")
    with pytest.raises(AirgapError, match=r"pause.oci: is not named \*\.tar"):
        archives_in(tmp_path)


def test_layout_tar_overhead_is_headers_only(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    arch = Archive()
    arch.add(Img(PAUSE, layers=[layer({"a": b"z" * 3000})]))
    src = arch.write(tmp_path / "src.tar")
    import tarfile

    with tarfile.open(src) as t:
        t.extractall(layout, filter="data")
    files = ["oci-layout", "index.json", *sorted(
        p.relative_to(layout).as_posix() for p in (layout / "blobs").rglob("*") if p.is_file())]
    out = write_layout_tar(layout, tmp_path / "out" / "images.tar", files)
    sizes = [(layout / f).stat().st_size for f in files]
    assert out.stat().st_size == sum(sizes) + tar_overhead(sizes)
    contents = read_archive(out)
    assert contents.images[0].name == PAUSE and not contents.images[0].problems
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left behind
