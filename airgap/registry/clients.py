"""The clients the product builds: the plan's mirror (its CA and credentials) and the
upstream registries (anonymous, at their API host)."""

from __future__ import annotations

from urllib.parse import urlsplit

from airgap.errors import PlanError
from airgap.plan import Plan, mirror_ca_pem, mirror_credentials
from airgap.plan.images import upstream_server
from airgap.registry.client import RegistryClient
from airgap.render.sync import RegistryAccess


def api_host(registry: str) -> str:
    """The host that serves ``registry``'s /v2/ API: registry-1.docker.io for docker.io."""
    return urlsplit(upstream_server(registry)).netloc


def mirror_client(plan: Plan) -> RegistryClient:
    """A client for the plan's mirror with its CA and the credentials the plan names."""
    if plan.mirror is None:
        raise PlanError(f"{plan.source}: no mirror: section",
                        resolution="Add mirror: url: http(s)://HOST:PORT to the plan.")
    m = plan.mirror
    ca = mirror_ca_pem(plan)
    creds = mirror_credentials(plan)
    cred_hint = (f"Set {m.username_env} and {m.password_env} to a user the mirror accepts "
                 "(they are read from the environment only)." if m.username_env else
                 "The mirror requires a login: set mirror.username_env and mirror.password_env "
                 "in the plan to the NAMES of environment variables holding the credentials.")
    ca_hint = (f"mirror.ca_file ({m.ca_file}) is not the CA that signed the mirror's "
               "certificate: point it at the right CA (PEM)." if m.ca_file else
               "The mirror's certificate is from a private CA: set mirror.ca_file to that CA "
               "(PEM).")
    return RegistryClient(
        m.host, tls=m.scheme == "https", ca_pem=ca.decode() if ca else None,
        credentials=creds, label="the mirror", credentials_hint=cred_hint, ca_hint=ca_hint,
    )


def upstream_client(access: RegistryAccess) -> RegistryClient:
    """A client for an upstream registry; upstreams are read without credentials.

    Docker Hub's API is not at docker.io but at registry-1.docker.io (as containerd and
    regclient know); every other registry answers at its own name.
    """
    return RegistryClient(
        api_host(access.host), tls=access.tls != "disabled", ca_pem=access.ca_pem,
        insecure=access.tls == "insecure", label=f"upstream {access.host}",
        ca_hint=f"Give the CA of {access.host} (--upstream-ca).",
        credentials_hint=f"upstream {access.host} requires a login, and upstreams are read "
        "without one: take the images from a registry that allows anonymous pulls.",
    )
