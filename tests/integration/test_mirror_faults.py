"""Mirror mode when things go wrong: each fault is a clear message and a non-zero exit.

Real registries, real regsync: a mirror stopped mid-sync (then restarted: the re-run
does not send finished blobs again), wrong credentials, a CA that does not match, an
image missing upstream, and a mirror whose disk fills up (a small tmpfs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airgap.mirror import MirrorError, RegistryAccessError, Status, mirror_images
from airgap.plan import Plan, parse_plan
from airgap.plan.images import ImageRef, parse_image_ref
from airgap.render.sync import RegistryAccess
from lab.ocibuild import Builder
from tests.support.ocibuild import layout_tag, make_test_images, push_layout, regctl_for
from tests.support.regclient import private_regclient_home  # noqa: F401 (autouse)
from tests.support.registry import Registry, TestCA
from tests.support.require import require_root

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def make_plan(mirror: Registry, tmp_path: Path, **extra: Any) -> Plan:
    section: dict[str, Any] = {"url": mirror.url, **extra}
    return parse_plan({
        "access": ["mirror"], "nodes": [{"name": "node-1", "address": "10.0.0.2"}],
        "mirror": section,
    }, source=str(tmp_path / "airgap.yaml"), base_dir=tmp_path)


def push_big_images(upstream: Registry, count: int, size: int, workdir: Path) -> list[ImageRef]:
    """count images, each with its own incompressible layer of size bytes."""
    builder = Builder(workdir / "layout")
    regctl = regctl_for(upstream, workdir / "regctl")
    refs = []
    for n in range(count):
        name = f"big/img{n}:1"
        builder.image(layout_tag(name), {"data/blob": os.urandom(size)}, base_layer=False)
        push_layout(builder.layout.path, f"{upstream.address}/{name}", registry=upstream,
                    tag=layout_tag(name), regctl=regctl)
        refs.append(parse_image_ref(f"{upstream.address}/{name}"))
    return refs


def blob_puts(log: str) -> set[tuple[str, str]]:
    """(repo, digest) of every finished blob upload in a registry access log."""
    found = set()
    for m in re.finditer(r'"PUT /v2/(\S+?)/blobs/uploads/\S*?digest=(sha256(?::|%3A)[0-9a-f]{64})'
                         r'\S* HTTP/1\.1" 201', log):
        found.add((m.group(1), m.group(2).replace("%3A", ":")))
    return found


def test_mirror_stopped_mid_sync_then_rerun_sends_no_finished_blob_again(
    tmp_path: Path, registry_factory: Callable[..., Registry],
) -> None:
    upstream = registry_factory("upstream")
    mirror = registry_factory("mirror")
    refs = push_big_images(upstream, 8, 6 * 1024 * 1024, tmp_path / "build")
    plan = make_plan(mirror, tmp_path)
    ups = [RegistryAccess(upstream.address, tls="disabled")]

    def stop_after_first_blob() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if blob_puts(mirror.log_file.read_text(errors="replace")):
                mirror.stop()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=stop_after_first_blob)
    watcher.start()
    with pytest.raises((MirrorError, RegistryAccessError)) as err:
        mirror_images(plan, refs, upstreams=ups, parallel=2)
    watcher.join()
    assert not mirror.running
    assert "mirror" in err.value.brief
    assert "invoke mirror" in (err.value.resolution or "")
    first_log = mirror.log_file.read_text(errors="replace")
    finished = blob_puts(first_log)
    assert finished, "the mirror was stopped before any blob finished"

    mirror.start()
    report = mirror_images(plan, refs, upstreams=ups, parallel=2)
    assert all(i.status.ok for i in report.images)
    second = blob_puts(mirror.log_file.read_text(errors="replace")[len(first_log):])
    assert second, "the re-run had nothing left to copy: the stop came too late"
    assert not (finished & second), "finished blobs were uploaded again"
    # The report counts exactly the blobs the mirror received in this run.
    assert report.blobs_copied == len(second)
    assert report.bytes_copied < len(refs) * 6 * 1024 * 1024 + 65536
    assert report.count(Status.synced) + report.count(Status.present) == len(refs)


def test_wrong_credentials_fail_before_anything_is_copied(
    tmp_path: Path, registry_factory: Callable[..., Registry], test_ca: TestCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = registry_factory("upstream")
    digests = make_test_images(upstream, ["app/one:1"], multi_platform=None,
                               workdir=tmp_path / "build")
    mirror = registry_factory("mirror", tls=True, ca=test_ca, htpasswd=("alice", "right-pw"))
    monkeypatch.setenv("M_USER", "alice")
    monkeypatch.setenv("M_PASS", "wrong-pw-xyz")
    plan = make_plan(mirror, tmp_path, ca_file=str(test_ca.ca_cert),
                     username_env="M_USER", password_env="M_PASS")
    refs = [parse_image_ref(f"{upstream.address}/{n}") for n in digests]
    with pytest.raises(RegistryAccessError) as err:
        mirror_images(plan, refs, upstreams=[RegistryAccess(upstream.address, tls="disabled")])
    assert "rejected the credentials" in err.value.brief
    assert "M_USER" in (err.value.resolution or "")
    assert "wrong-pw-xyz" not in str(err.value)
    assert mirror.catalog() == []

    # The same through the task: a clean `Error:` line and exit 1, no traceback, no secret.
    (tmp_path / "airgap.yaml").write_text(
        "access: [mirror]\nnodes: [{name: node-1, address: 10.0.0.2}]\n"
        f"mirror:\n  url: {mirror.url}\n  ca_file: {test_ca.ca_cert}\n"
        "  username_env: M_USER\n  password_env: M_PASS\n")
    (tmp_path / "images.txt").write_text("".join(f"{r}\n" for r in refs))
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "mirror", "--plan", str(tmp_path / "airgap.yaml"),
         "--images", str(tmp_path / "images.txt"), "--insecure-upstream", upstream.address],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Error: the mirror" in proc.stderr and "rejected the credentials" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wrong-pw-xyz" not in proc.stderr + proc.stdout


def test_ca_that_does_not_match(
    tmp_path: Path, registry_factory: Callable[..., Registry], test_ca: TestCA,
) -> None:
    other = TestCA.create(tmp_path / "other-ca", "some other CA")
    mirror = registry_factory("mirror", tls=True, ca=test_ca)
    plan = make_plan(mirror, tmp_path, ca_file=str(other.ca_cert))
    ref = parse_image_ref("127.0.0.1:1/never/used:1")
    with pytest.raises(RegistryAccessError) as err:
        mirror_images(plan, [ref])
    assert "certificate not trusted" in err.value.brief
    assert "mirror.ca_file" in (err.value.resolution or "")


def test_image_missing_upstream_is_named_and_the_rest_still_synced(
    tmp_path: Path, registry_factory: Callable[..., Registry],
) -> None:
    upstream = registry_factory("upstream")
    digests = make_test_images(upstream, ["app/one:1"], multi_platform=None,
                               workdir=tmp_path / "build")
    mirror = registry_factory("mirror")
    plan = make_plan(mirror, tmp_path)
    refs = [parse_image_ref(f"{upstream.address}/app/one:1"),
            parse_image_ref(f"{upstream.address}/app/gone:9")]
    with pytest.raises(MirrorError) as err:
        mirror_images(plan, refs, upstreams=[RegistryAccess(upstream.address, tls="disabled")])
    assert "missing upstream" in err.value.brief
    assert f"{upstream.address}/app/gone:9" in err.value.brief
    status = {str(i.ref): i.status for i in err.value.report.images}
    assert status == {str(refs[0]): Status.synced, str(refs[1]): Status.missing_upstream}
    assert mirror.manifest_digest("app/one", "1") == digests["app/one:1"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    require_root()
    path = tmp_path / "tiny-disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_mirror_disk_full(
    tmp_path: Path, registry_factory: Callable[..., Registry], tiny_disk: Path,
) -> None:
    upstream = registry_factory("upstream")
    refs = push_big_images(upstream, 3, 3 * 1024 * 1024, tmp_path / "build")
    mirror = registry_factory("mirror", data_dir=tiny_disk)
    plan = make_plan(mirror, tmp_path)
    ups = [RegistryAccess(upstream.address, tls="disabled")]
    try:
        with pytest.raises(MirrorError) as err:
            mirror_images(plan, refs, upstreams=ups, parallel=2)
    finally:
        mirror.stop()
    assert "mirror incomplete" in err.value.brief
    assert "disk space" in (err.value.details or ""), err.value.details
    assert "storage" in (err.value.resolution or "")
    bad = [i for i in err.value.report.images if not i.status.ok]
    assert bad
