"""OCI and Docker manifest media types, named once for every module that reads manifests.

A registry answers with the type in Content-Type (and usually in the manifest's own
``mediaType``); an index (OCI) or manifest list (Docker) names one manifest per platform.
"""

from __future__ import annotations

from collections.abc import Mapping

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

# The Accept header of a manifest request: an index when there is one, else the manifest.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def is_index(media_type: str, data: Mapping[str, object] | None = None) -> bool:
    """An index by its media type, or (a registry that sent none) by its shape."""
    if media_type in INDEX_TYPES:
        return True
    return data is not None and "manifests" in data and "layers" not in data


__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "INDEX_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "is_index",
]
