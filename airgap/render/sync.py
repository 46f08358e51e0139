"""regsync's sync-images.yaml, as the procedure shows it, but one that works.

The procedure's example has only ``sync:`` entries. regclient assumes TLS for every
registry, so against an http mirror (the procedure's own ``http://10.10.10.10:5050``)
it speaks TLS and fails; a mirror with a private CA fails certificate checks; and
``parallel`` defaults to 1, one image at a time. This file adds a ``creds`` entry for
the mirror (``tls: disabled`` for http, ``regcert`` with the CA's PEM for https),
user and password only as ``{{ env "USERNAME" }}`` / ``{{ env "PASSWORD" }}``
templates (secrets never land in the file), and ``parallel`` of 6 by default.

The target of every entry is ``{{ env "MIRROR" }}/<prefix>/<path below the source
registry>``, so the same file runs as the procedure says:
``MIRROR=host:port USERNAME=... PASSWORD=... regsync once -c sync-images.yaml``.
Built as data and written with pyyaml, never by pasting strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from airgap.errors import AirgapError, PlanError
from airgap.plan import Plan, mirror_ca_pem, mirror_prefix
from airgap.plan.images import ImageRef
from airgap.render import RenderedFile

SYNC_FILE = "sync-images.yaml"
DEFAULT_PARALLEL = 6
MIRROR_ENV = "MIRROR"
USERNAME_ENV = "USERNAME"
PASSWORD_ENV = "PASSWORD"
_MIRROR_TEMPLATE = '{{ env "MIRROR" }}'
_HEADER = (
    "# regsync configuration written by k8s-airgap (invoke mirror / invoke render).\n"
    "# Run: MIRROR=<mirror host:port> [USERNAME=... PASSWORD=...] regsync once -c {name}\n"
    "# Credentials come from the environment only; none are stored here.\n"
)


@dataclass(frozen=True)
class RegistryAccess:
    """How regclient reaches a source registry that is not plain public TLS.

    Real upstreams (ghcr.io, docker.io) need nothing; a test or lab upstream served
    over http needs ``tls="disabled"``, one with a private CA needs ``ca_pem``.
    """

    host: str
    tls: str = "enabled"
    ca_pem: str | None = None

    def __post_init__(self) -> None:
        if self.tls not in ("enabled", "disabled", "insecure"):
            raise ValueError(
                f"{self.host}: tls must be enabled, disabled or insecure, not {self.tls!r}"
            )


def mirror_path(plan: Plan, ref: ImageRef) -> str:
    """repository[:tag] below the mirror host: prefix (per registry) + path below the source."""
    if plan.mirror is None:
        raise PlanError(f"{plan.source}: no mirror: section",
                        resolution="Add mirror: (url, and optionally path_prefix, ca_file).")
    prefix = mirror_prefix(plan, ref.registry)
    target = ImageRef(ref.registry, ref.repository, ref.tag, None if ref.tag else ref.digest)
    below = target.path
    return f"{prefix}/{below}" if prefix else below


def mirror_ref(plan: Plan, ref: ImageRef) -> str:
    """The image's reference in the mirror, with the real host (for checks and pulls)."""
    assert plan.mirror is not None
    return f"{plan.mirror.host}/{mirror_path(plan, ref)}"


def _mirror_creds(plan: Plan, ca_pem: str | None) -> dict[str, Any]:
    assert plan.mirror is not None
    entry: dict[str, Any] = {"registry": _MIRROR_TEMPLATE}
    if plan.mirror.scheme == "http":
        entry["tls"] = "disabled"
    else:
        entry["tls"] = "enabled"
        if ca_pem:
            entry["regcert"] = ca_pem
    if plan.mirror.username_env:
        entry["user"] = '{{ env "USERNAME" }}'
        entry["pass"] = '{{ env "PASSWORD" }}'
    # More concurrent requests per host than regclient's default of 3: the mirror is
    # ours and near, and blob uploads are what a first sync waits on.
    entry["reqConcurrent"] = 8
    return entry


def _upstream_creds(access: RegistryAccess) -> dict[str, Any]:
    entry: dict[str, Any] = {"registry": access.host, "tls": access.tls}
    if access.ca_pem:
        entry["regcert"] = access.ca_pem
    return entry


def sync_config(
    plan: Plan,
    images: Iterable[ImageRef],
    *,
    ca_pem: str | None = None,
    upstreams: Sequence[RegistryAccess] = (),
    parallel: int = DEFAULT_PARALLEL,
) -> dict[str, Any]:
    """The regsync configuration as data (see the module docstring for why each part)."""
    if plan.mirror is None:
        raise PlanError(
            f"{plan.source}: sync-images.yaml needs a mirror: section",
            resolution="Add mirror: url: http(s)://HOST:PORT to the plan.",
        )
    if parallel < 1:
        raise AirgapError(
            f"--parallel {parallel}: regsync needs at least 1 image at a time",
            resolution=f"Pass --parallel 1 or more (default {DEFAULT_PARALLEL}; 1 copies one "
            "image at a time, as regsync does by default).",
        )
    creds = [_mirror_creds(plan, ca_pem)]
    mirror_host = plan.mirror.host
    for access in sorted(upstreams, key=lambda a: a.host):
        if access.host == mirror_host:
            continue
        creds.append(_upstream_creds(access))
    sync = []
    seen: set[str] = set()
    for ref in sorted(images, key=str):
        source = str(ref)
        if source in seen:
            continue
        seen.add(source)
        sync.append({
            "source": source,
            "target": f"{_MIRROR_TEMPLATE}/{mirror_path(plan, ref)}",
            "type": "image",
        })
    return {
        "version": 1,
        "creds": creds,
        "defaults": {"parallel": parallel},
        "sync": sync,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a CA's PEM) as literal blocks, so the file stays readable."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump_sync_config(config: dict[str, Any], name: str = SYNC_FILE) -> str:
    body = yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return _HEADER.format(name=name) + body


def render_sync_images(
    plan: Plan,
    images: Iterable[ImageRef],
    *,
    ca_pem: bytes | str | None = None,
    upstreams: Sequence[RegistryAccess] = (),
    parallel: int = DEFAULT_PARALLEL,
) -> RenderedFile:
    """sync-images.yaml for regsync. ``ca_pem`` is the mirror CA's PEM; when the
    caller passes none and the plan names mirror.ca_file, that file is read (the one
    read this renderer does, so that ``render_sync_images(plan, images)`` is enough)."""
    pem = ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem
    if plan.mirror is not None and plan.mirror.ca_file and not pem:
        raw = mirror_ca_pem(plan)
        pem = raw.decode() if raw else None
    config = sync_config(plan, images, ca_pem=pem, upstreams=upstreams, parallel=parallel)
    return RenderedFile(SYNC_FILE, dump_sync_config(config).encode(), 0o644)
