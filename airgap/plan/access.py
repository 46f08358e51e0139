"""What the plan says about reaching the mirror: nested paths, credentials (from the
environment only), the CA."""

from __future__ import annotations

import os

from airgap.errors import PlanError
from airgap.plan.images import (
    ImageRef,
    is_repository_path,
)
from airgap.plan.model import Plan
from airgap.plan.settings import _CA_RESOLUTION


def mirror_prefix(plan: Plan, registry: str) -> str:
    """The nested path below the mirror that holds ``registry``'s images, validated."""
    assert plan.mirror is not None
    prefix = plan.mirror.prefix_for(registry).strip("/")
    if prefix and not is_repository_path(prefix):
        raise PlanError(
            f"{plan.source}: mirror.path_prefix {plan.mirror.path_prefix!r} gives {prefix!r} "
            f"for {registry}, which is not a valid repository path",
            resolution="Use a prefix of lowercase path components; {registry} cannot be used "
            "for a registry with a port.",
        )
    return prefix


def check_mirror_paths(plan: Plan, images: list[ImageRef]) -> None:
    """Refuse two images of different registries that would land on one mirror path.

    Without {registry} in the prefix, docker.io/foo/bar:1 and quay.io/foo/bar:1 would
    both become MIRROR/foo/bar:1: one overwrites the other and a node pulls the wrong
    image with no error.
    """
    if plan.mirror is None:
        return
    seen: dict[str, ImageRef] = {}
    for ref in images:
        prefix = mirror_prefix(plan, ref.registry)
        key = f"{prefix}/{ref.path}" if prefix else ref.path
        other = seen.setdefault(key, ref)
        if other.registry != ref.registry:
            raise PlanError(
                f"{plan.source}: mirror.path_prefix: {other} and {ref} would both be "
                f"mirrored as {key}",
                resolution="Put {registry} in mirror.path_prefix (e.g. path_prefix: "
                "'{registry}') so that each upstream registry gets its own path.",
            )


def mirror_credentials(plan: Plan) -> tuple[str, str] | None:
    """Read the mirror credentials from the environment variables the plan names."""
    m = plan.mirror
    if m is None or m.username_env is None or m.password_env is None:
        return None
    missing = [e for e in (m.username_env, m.password_env) if e not in os.environ]
    if missing:
        raise PlanError(
            f"{plan.source}: mirror credentials: environment variable {missing[0]} is not set",
            resolution=f"export {m.username_env}=... {m.password_env}=... before running.",
        )
    return os.environ[m.username_env], os.environ[m.password_env]


def mirror_ca_pem(plan: Plan) -> bytes | None:
    """The mirror's CA certificate(s), checked to be PEM, or None when the plan has none.

    Read here, once, so that the renderers stay pure and a bad CA file fails before any
    file is written rather than on a node at pull time.
    """
    if plan.mirror is None or plan.mirror.ca_file is None:
        return None
    from cryptography import x509

    path = plan.resolve(plan.mirror.ca_file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanError(
            f"{plan.source}: mirror.ca_file: cannot read {path} ({exc.strerror or exc})",
            resolution=_CA_RESOLUTION,
        ) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise PlanError(
            f"{plan.source}: mirror.ca_file: {path} is not a PEM certificate",
            resolution="Use the CA certificate in PEM form (-----BEGIN CERTIFICATE-----), "
            "e.g. `openssl x509 -in ca.der -inform der -out ca.crt`.",
        )
    return data
