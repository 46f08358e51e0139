"""Test-side wrapper around lab.ocibuild: build tiny images and push them to a Registry.

The builder itself is product code (lab/ocibuild.py) because the lab's simulated
upstream needs it too; this module only knows about the test Registry objects.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.ocibuild import Builder, Layout, Regctl, build_index, write_oci_archive
from lab.ocibuild import build_image as _build_image
from lab.ocibuild import push_layout as _push_layout
from tests.support.registry import Registry

__all__ = [
    "Builder",
    "Layout",
    "Regctl",
    "build_image",
    "build_index",
    "layout_tag",
    "make_test_images",
    "push_layout",
    "regctl_for",
    "write_oci_archive",
]


def build_image(
    workdir: Path,
    files: Mapping[str, bytes],
    *,
    base_layer: bool = True,
    platform: str = "linux/amd64",
    tag: str = "latest",
    image_name: str | None = None,
) -> Path:
    """An OCI layout at workdir holding one image tagged `tag`; returns workdir."""
    _build_image(workdir, files, tag=tag, platform=platform, base_layer=base_layer,
                 image_name=image_name)
    return workdir


def regctl_for(registry: Registry | None = None, home: Path | None = None,
               *, host: str | None = None, insecure: bool = True) -> Regctl:
    """A Regctl with a private config that can talk to registry (TLS/CA/login set up).

    Without a registry, `host` is configured as plain http when insecure.
    """
    regctl = Regctl(home or Path(tempfile.mkdtemp(prefix="regctl-")))
    if registry is not None:
        if registry.tls:
            pem = registry.ca_file.read_bytes() if registry.ca_file else None
            regctl.configure(registry.address, tls="enabled", ca_pem=pem)
        else:
            regctl.configure(registry.address, tls="disabled")
        if registry.username is not None and registry.password is not None:
            regctl.login(registry.address, registry.username, registry.password)
    elif host is not None:
        regctl.configure(host, tls="disabled" if insecure else "enabled")
    return regctl


def push_layout(
    layout: Path,
    ref: str,
    *,
    registry: Registry | None = None,
    insecure: bool = True,
    tag: str | None = None,
    regctl: Regctl | None = None,
) -> str:
    """Push the layout's image (its only tag, or `tag`) to ref; returns the digest.

    Give `registry` for https/CA/htpasswd registries; otherwise the ref's host is
    treated as plain http when insecure.
    """
    if regctl is None:
        host = ref.split("/", 1)[0]
        regctl = regctl_for(registry, host=host, insecure=insecure)
    return _push_layout(layout, ref, regctl=regctl, tag=tag)


def _with_tag(name: str) -> tuple[str, str]:
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "latest"
    return repo, tag


def layout_tag(name: str) -> str:
    """A valid OCI tag naming `repo:tag` inside a shared layout."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128]


def make_test_images(
    registry: Registry,
    names: Sequence[str],
    shared: bool = True,
    *,
    multi_platform: str | None = "test/multi:1",
    workdir: Path | None = None,
) -> dict[str, str]:
    """Build and push one small image per name (repo[:tag]) plus one multi-platform index.

    With shared=True every image carries the same busybox base layer (one blob,
    reused); each image also gets a unique /etc/airgap-test-image, so digests differ.
    Returns name -> manifest digest (the index digest for multi_platform).
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ocibuild-"))
    builder = Builder(workdir / "layout")
    regctl = regctl_for(registry, workdir / "regctl")
    out: dict[str, str] = {}
    for name in names:
        repo, tag = _with_tag(name)
        files = {"etc/airgap-test-image": f"{repo}:{tag}\n".encode()}
        builder.image(layout_tag(name), files, base_layer=shared)
        out[name] = _push_layout(builder.layout.path, f"{registry.address}/{repo}:{tag}",
                                 regctl=regctl, tag=layout_tag(name))
    if multi_platform:
        repo, tag = _with_tag(multi_platform)
        files = {"etc/airgap-test-image": f"{repo}:{tag}\n".encode()}
        builder.index(layout_tag(multi_platform), files, base_layer=shared)
        out[multi_platform] = _push_layout(
            builder.layout.path, f"{registry.address}/{repo}:{tag}", regctl=regctl,
            tag=layout_tag(multi_platform),
        )
    return out
