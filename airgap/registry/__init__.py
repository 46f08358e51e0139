"""The one client every module uses to ask a registry: OCI distribution over HTTP(S),
with token and basic auth, a private CA, and the environment's proxy (``client``); the
mirror's and the upstreams' clients as the plan defines them (``clients``)."""

from airgap.registry.client import (
    ManifestInfo,
    ManifestNotFound,
    RegistryAccessError,
    RegistryClient,
    ResolvedImage,
    _proxy_for,
    api_reference,
    pick_platforms,
)
from airgap.registry.clients import (
    api_host,
    mirror_client,
    pinning_client,
    regctl_hosts,
    upstream_client,
)

__all__ = ["ManifestInfo", "ManifestNotFound", "RegistryAccessError", "RegistryClient",
           "ResolvedImage", "_proxy_for", "api_host", "api_reference", "mirror_client",
           "pick_platforms", "pinning_client", "regctl_hosts", "upstream_client"]
