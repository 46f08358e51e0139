"""The clients the product builds: the plan's mirror (its CA and credentials), the
upstream registries (anonymous, at their API host), and the registries prepare pins
digests from, configured as regclient is (regctl's config: `regctl registry set` and
`regctl registry login`, at $REGCTL_CONFIG or ~/.regctl/config.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
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


def regctl_config_path() -> Path:
    """Where regctl keeps its per-registry settings (its own rule)."""
    env = os.environ.get("REGCTL_CONFIG")
    return Path(env) if env else Path.home() / ".regctl" / "config.json"


def regctl_hosts(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """regctl's per-registry settings (tls, regcert, user/pass); {} when there are none."""
    path = path or regctl_config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PlanError(
            f"{path}: cannot read regctl's configuration ({exc})",
            resolution="Fix or remove the file (`regctl registry set` writes it), or point "
            "REGCTL_CONFIG at a valid one.",
        ) from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    return {str(k): v for k, v in hosts.items() if isinstance(v, dict)} if isinstance(
        hosts, dict) else {}


def pinning_client(registry: str, hosts: dict[str, dict[str, Any]] | None = None
                   ) -> RegistryClient:
    """A client for a registry prepare pins digests from, with regctl's settings for it:
    plain http (`--tls disabled`), an unverified certificate (`insecure`), a private CA
    (`--cacert`) and a login (`regctl registry login`)."""
    host = api_host(registry)
    settings = hosts if hosts is not None else regctl_hosts()
    cfg = settings.get(registry) or settings.get(host) or {}
    tls = str(cfg.get("tls", "enabled"))
    user, password = cfg.get("user"), cfg.get("pass")
    return RegistryClient(
        host, tls=tls != "disabled", insecure=tls == "insecure",
        ca_pem=str(cfg["regcert"]) if cfg.get("regcert") else None,
        credentials=(str(user), str(password)) if user and password else None,
        label=registry,
        ca_hint=f"Trust the CA of {registry}: `regctl registry set {registry} --cacert "
        "\"$(cat ca.pem)\"`, or add it to the system's CAs (SSL_CERT_FILE).",
        credentials_hint=f"{registry} requires a login: `regctl registry login {registry}`.",
    )
