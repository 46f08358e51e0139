"""Blobs and manifests in bulk: streamed to and from files, never whole in memory.

``download_blob`` writes repo@digest to a file through a ``.partial`` beside it, hashing
as it writes, and renames it into place only when the digest matches (a blob already in
place with the right content is kept: resumable). ``upload_blob`` is the two-step push
of the distribution API (POST an upload, PUT the bytes with the digest), streamed from
the file in 1 MiB chunks. ``put_manifest`` pushes a manifest's exact bytes, so its
digest is the one images.lock pins. Each uses the client's authentication and its
per-thread connection.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from airgap.mediatypes import MANIFEST_ACCEPT
from airgap.registry.client import RegistryAccessError, RegistryClient

CHUNK = 1 << 20
READ_BUFFER = 4 << 20  # measured: 4 MiB reads halve the time of 64 KiB-1 MiB ones
REDIRECTS = (301, 302, 303, 307, 308)

Progress = Callable[[int], None]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _copy(src: IO[bytes], dst: IO[bytes], progress: Progress | None) -> str:
    """src to dst through one reused buffer (readinto: no allocation per chunk), hashed."""
    h = hashlib.sha256()
    buf = memoryview(bytearray(READ_BUFFER))
    while n := src.readinto(buf):  # type: ignore[attr-defined]
        h.update(buf[:n])
        dst.write(buf[:n])
        if progress is not None:
            progress(n)
    return "sha256:" + h.hexdigest()


def download_blob(client: RegistryClient, repo: str, digest: str, dest: Path,
                  progress: Progress | None = None) -> int:
    """repo@digest into dest, verified while written; bytes written (0 if kept)."""
    if dest.is_file() and sha256_file(dest) == digest:
        return 0
    scope = f"repository:{repo}:pull"
    if not client.has_blob(repo, digest):  # also earns the pull token for the GET
        raise RegistryAccessError(
            f"{client.label} ({client.url}): blob {repo}@{digest} not found",
            resolution="The image in the registry is incomplete: re-push it, or run "
            "`invoke prepare --refresh-images` to pin what the registry serves now.")
    tmp = dest.with_name(dest.name + ".partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = f"/v2/{repo}/blobs/{digest}"
    conn = client.connection()
    try:
        conn.request("GET", path, headers=client.authorization(scope))
        resp = conn.getresponse()
        if resp.status in REDIRECTS and resp.getheader("location"):
            resp.read()
            url = urllib.parse.urljoin(client.url + path, resp.getheader("location") or "")
            with urllib.request.urlopen(url, timeout=300, context=client.ssl_context) as r, \
                    tmp.open("wb") as fh:
                got = _copy(r, fh, progress)
        elif resp.status == 200:
            with tmp.open("wb") as fh:
                got = _copy(resp, fh, progress)
        else:
            body = resp.read()[:200]
            raise RegistryAccessError(
                f"{client.label} ({client.url}): HTTP {resp.status} for {repo}@{digest}: "
                f"{body!r}", resolution="Check the registry's log, then run the command again.")
    except (OSError, http.client.HTTPException) as exc:
        client.discard_connection()
        tmp.unlink(missing_ok=True)
        raise client.unreachable(exc) from None
    if got != digest:
        tmp.unlink(missing_ok=True)
        raise RegistryAccessError(
            f"{client.label} ({client.url}): blob {repo}@{digest} arrived as {got}",
            resolution="The registry's storage is damaged or a proxy altered the answer: "
            "repair or re-push the image, then run the command again.")
    os.replace(tmp, dest)
    return dest.stat().st_size


def _location_path(client: RegistryClient, location: str) -> str:
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(client.url + "/", location))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def upload_blob(client: RegistryClient, repo: str, digest: str, src: Path,
                progress: Progress | None = None) -> int:
    """Push src as repo@digest (POST, then one streamed PUT); bytes sent."""
    scope = f"repository:{repo}:pull,push"
    status, rh, body = client.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope)
    if status != 202 or not rh.get("location"):
        raise RegistryAccessError(
            f"{client.label} ({client.url}): cannot start an upload to {repo} (HTTP {status}: "
            f"{body[:200]!r})", resolution="Check that the credentials may push to "
            f"{repo} and that the registry is writable, then run the command again.")
    path = _location_path(client, rh["location"])
    path += ("&" if "?" in path else "?") + urllib.parse.urlencode({"digest": digest})
    size = src.stat().st_size
    conn = client.connection()
    try:
        conn.putrequest("PUT", path)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
                   **client.authorization(scope)}
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        with src.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                conn.send(chunk)
                if progress is not None:
                    progress(len(chunk))
        resp = conn.getresponse()
        answer = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        client.discard_connection()
        raise client.unreachable(exc) from None
    if resp.status != 201:
        raise RegistryAccessError(
            f"{client.label} ({client.url}): upload of {repo}@{digest} refused (HTTP "
            f"{resp.status}: {answer[:200]!r})",
            resolution="A digest mismatch means the local copy is damaged (`invoke verify`); "
            "otherwise check the registry's log and free space.")
    return size


def put_manifest(client: RegistryClient, repo: str, reference: str, media_type: str,
                 body: bytes) -> None:
    """PUT the manifest's exact bytes at repo:reference (a tag or its digest)."""
    status, _, answer = client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
        headers={"Content-Type": media_type}, data=body)
    if status not in (200, 201):
        raise RegistryAccessError(
            f"{client.label} ({client.url}): manifest {repo}:{reference} refused (HTTP "
            f"{status}: {answer[:300]!r})",
            resolution="MANIFEST_BLOB_UNKNOWN means a blob or platform manifest it names is "
            "missing from the repository; otherwise check the registry's log.")


def get_manifest_bytes(client: RegistryClient, repo: str, reference: str) -> tuple[str, bytes]:
    """The manifest's media type and exact bytes (checked against reference if a digest)."""
    status, rh, body = client.request(
        "GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
        headers={"Accept": MANIFEST_ACCEPT})
    if status == 404:
        raise RegistryAccessError(
            f"{client.label} ({client.url}): manifest {repo}@{reference} not found",
            resolution="The image changed or was removed upstream: run `invoke prepare "
            "--refresh-images` to pin what the registry serves now.")
    if status >= 400:
        raise RegistryAccessError(
            f"{client.label} ({client.url}): HTTP {status} for {repo}:{reference}",
            resolution="Check the registry's log, then run the command again.")
    if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(body).hexdigest() != \
            reference:
        raise RegistryAccessError(
            f"{client.label} ({client.url}): manifest {repo}@{reference} does not match its "
            "digest", resolution="A proxy or the registry altered the answer; fix it and run "
            "the command again.")
    media = rh.get("content-type", "").split(";")[0]
    if not media:
        media = str(json.loads(body).get("mediaType", ""))
    return media, body
