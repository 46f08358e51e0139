"""The one registry client: every module that asks a registry something asks it here.

An in-process client for the /v2/ API (keep-alive, basic and bearer auth, a private CA,
HTTPS_PROXY/NO_PROXY) instead of one `regctl` process per question: that keeps checking
a mirror, counting blobs and resolving tags cheap. Every failure a user can act on is a
RegistryAccessError whose resolution names the plan field or flag to fix.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airgap.errors import AirgapError
from airgap.mediatypes import MANIFEST_ACCEPT, is_index
from airgap.plan.images import ImageRef
from airgap.platforms import parse_platform, platform_matches

REQUEST_TIMEOUT = 60.0


class RegistryAccessError(AirgapError):
    """A registry could not be reached, refused our credentials, or failed TLS."""


class ManifestNotFound(Exception):
    """The registry has no manifest for that reference (HTTP 404)."""


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class ResolvedImage:
    """A reference's manifest (or index) digest; per platform the manifest a runtime pulls."""

    ref: ImageRef
    digest: str
    media_type: str
    platforms: dict[str, str]


def api_reference(ref: ImageRef) -> tuple[str, str]:
    """(repository, reference) for the /v2/ API: the digest when pinned, else the tag."""
    return ref.repository, ref.digest or ref.tag or "latest"


def _proxy_for(hostname: str, tls: bool) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment names for hostname, or None: HTTPS_PROXY
    (HTTP_PROXY for http) and NO_PROXY as Go reads them; loopback is never proxied."""
    if hostname in ("localhost", "::1") or hostname.startswith("127."):
        return None
    proxies = urllib.request.getproxies_environment()
    url = proxies.get("https" if tls else "http")
    bypass: Callable[..., bool] = (
        urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    )
    if not url or bypass(hostname, proxies):
        return None
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 80


def _platform_of(p: Mapping[str, Any]) -> str:
    """os/architecture[/variant] of an index entry's platform or an image config."""
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def pick_platforms(candidates: Sequence[tuple[str, str]],
                   platforms: Sequence[str]) -> dict[str, str]:
    """Per wanted platform, the digest of the first (platform, digest) candidate matching
    it by containerd's rule (arm64 implies v8); a platform nothing matches is left out."""
    picked: dict[str, str] = {}
    for want in platforms:
        wanted = parse_platform(want)
        for text, digest in candidates:
            if platform_matches(parse_platform(text), wanted):
                picked[want] = digest
                break
    return picked


class RegistryClient:
    """HEAD/GET against one registry's /v2/ API, safe to share between threads. label names
    it in messages ("the mirror"); the hints resolve credential and TLS problems."""

    def __init__(self, host: str, *, tls: bool = True, ca_pem: str | None = None,
                 insecure: bool = False, credentials: tuple[str, str] | None = None,
                 label: str | None = None, credentials_hint: str = "", ca_hint: str = "",
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.host = host
        self.tls = tls
        self.label = label or host
        self.url = f"{'https' if tls else 'http'}://{host}"
        self._credentials = credentials
        self._credentials_hint = credentials_hint
        self._ca_hint = ca_hint
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if tls:
            ctx = ssl.create_default_context()
            if ca_pem:
                ctx.load_verify_locations(cadata=ca_pem)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx
        self._local = threading.local()
        self._lock = threading.Lock()
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        self._basic_ok = False
        self.requests = 0

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            hostname, port = self.host, ""
            if ":" in self.host and not self.host.endswith("]"):
                hostname, _, port = self.host.rpartition(":")
            hostname = hostname.strip("[]")
            port_n = int(port) if port else (443 if self.tls else 80)
            proxy = _proxy_for(hostname, self.tls)
            dial_host, dial_port = proxy if proxy is not None else (hostname, port_n)
            conn = (http.client.HTTPSConnection(dial_host, dial_port, context=self._ssl,
                                                timeout=self._timeout)
                    if self.tls else
                    http.client.HTTPConnection(dial_host, dial_port, timeout=self._timeout))
            if proxy is not None:
                # A connected machine behind a proxy (HTTPS_PROXY/NO_PROXY, as regsync
                # and regctl honour them): tunnel with CONNECT, never a direct dial.
                conn.set_tunnel(hostname, port_n)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _send(self, method: str, path: str, headers: dict[str, str],
              body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                with self._lock:
                    self.requests += 1
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                if attempt == 2:
                    raise self._unreachable(exc) from None
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise RegistryAccessError(
                    f"{self.label} ({self.url}): TLS certificate not trusted: {exc.verify_message}",
                    resolution=self._ca_hint or "Give the CA of the registry's certificate.",
                ) from None
            except ssl.SSLError as exc:
                self._drop()
                raise RegistryAccessError(
                    f"{self.label} ({self.url}): TLS failed: {exc.reason or exc}",
                    resolution="Check the registry's scheme (http or https) and certificate.",
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise self._unreachable(exc) from None
        raise AssertionError("unreachable")

    def _unreachable(self, exc: BaseException) -> RegistryAccessError:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror:
            why = exc.strerror
        return RegistryAccessError(
            f"cannot reach {self.label} at {self.url}: {why}",
            resolution=f"Start {self.label} (or fix its address) and run the command again.")

    def request(self, method: str, path: str, *, scope: str = "",
                headers: dict[str, str] | None = None,
                data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        hdrs = {**(headers or {}), **self.authorization(scope)}
        extra = () if data is None else (data,)  # tests script _send with three arguments
        status, rh, body = self._send(method, path, hdrs, *extra)
        if status != 401:
            return status, rh, body
        hdrs["Authorization"] = self._answer(rh.get("www-authenticate", ""), scope)
        status, rh, body = self._send(method, path, hdrs, *extra)
        if status == 401:
            raise self._rejected()
        return status, rh, body

    def _basic(self) -> str:
        assert self._credentials is not None
        user, password = self._credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _rejected(self) -> RegistryAccessError:
        if self._credentials is None:
            return RegistryAccessError(
                f"{self.label} ({self.url}) requires a login and no credentials were given",
                resolution=self._credentials_hint or "Give credentials for this registry.",
            )
        return RegistryAccessError(
            f"{self.label} ({self.url}) rejected the credentials (HTTP 401)",
            resolution=self._credentials_hint or "Check the user name and password.",
        )

    def _auth_failed(self, brief: str) -> RegistryAccessError:
        return RegistryAccessError(
            brief, resolution=f"Check that {self.url} is the registry's address and that its "
            "token service is reachable from this machine (HTTPS_PROXY/NO_PROXY), then run "
            "the command again.")

    def _answer(self, challenge: str, scope: str) -> str:
        kind, _, params_text = challenge.partition(" ")
        if kind.lower() == "basic":
            if self._credentials is None:
                raise self._rejected()
            self._basic_ok = True
            return self._basic()
        if kind.lower() != "bearer":
            raise RegistryAccessError(
                f"{self.label} ({self.url}) asks for unsupported authentication {kind!r}",
                resolution="Configure the registry for basic or bearer-token authentication "
                "(what docker and regclient speak).",
            )
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        realm = params.get("realm")
        if not realm:
            raise self._auth_failed(f"{self.label} ({self.url}): bearer challenge without realm")
        query = {"service": params.get("service", "")}
        if scope:
            query["scope"] = scope
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        req = urllib.request.Request(url)
        if self._credentials is not None:
            req.add_header("Authorization", self._basic())
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._ssl) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise self._rejected() from None
            raise self._auth_failed(
                f"{self.label}: token service {realm} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise self._auth_failed(f"{self.label}: token service {realm} failed: {exc}") from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise self._auth_failed(f"{self.label}: token service {realm} returned no token")
        value = f"Bearer {token}"
        with self._lock:
            self._auth[scope] = value
        return value

    def authorization(self, scope: str) -> dict[str, str]:
        """The Authorization header a request for scope already earned (may be empty):
        for streamed requests (airgap/registry/blobs.py) after a small one authenticated."""
        auth = self._auth.get(scope) or (self._basic() if self._basic_ok else None)
        return {"Authorization": auth} if auth else {}

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl

    def unreachable(self, exc: BaseException) -> RegistryAccessError:
        return self._unreachable(exc)

    def connection(self) -> http.client.HTTPConnection:
        """This thread's connection (opened on demand), for streamed requests."""
        return self._conn()

    def discard_connection(self) -> None:
        self._drop()

    def ping(self) -> None:
        """Reach /v2/ once: surfaces connection, TLS and credential problems up front."""
        status, _, body = self.request("GET", "/v2/")
        if status >= 400:
            raise RegistryAccessError(
                f"{self.label} ({self.url}) answered HTTP {status} on /v2/: {body[:200]!r}",
                resolution=f"Check that {self.url} is a container registry (the /v2/ API) "
                "and that it is healthy, then run the command again.")

    def head_manifest(self, repo: str, reference: str) -> ManifestInfo | None:
        """The digest the registry serves for repo:reference; None when it has none."""
        status, rh, body = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
            headers={"Accept": MANIFEST_ACCEPT})
        if status == 404:
            return None
        self._check(status, f"{repo}:{reference}", body)
        digest = rh.get("docker-content-digest")
        if not digest:
            return self.get_manifest(repo, reference)[0]
        return ManifestInfo(digest, rh.get("content-type", "").split(";")[0],
                            int(rh.get("content-length", "0") or 0))

    def get_manifest(self, repo: str, reference: str) -> tuple[ManifestInfo, dict[str, Any]]:
        status, rh, body = self.request(
            "GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
            headers={"Accept": MANIFEST_ACCEPT})
        if status == 404:
            raise ManifestNotFound(f"{self.host}/{repo}:{reference}")
        self._check(status, f"{repo}:{reference}", body)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        data = json.loads(body)
        media = rh.get("content-type", "").split(";")[0] or str(data.get("mediaType", ""))
        return ManifestInfo(digest, media, len(body)), data

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _, body = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                                       scope=f"repository:{repo}:pull")
        if status == 404:
            return False
        self._check(status, f"{repo}@{digest}", body)
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A small blob (an image config), checked against its digest; a redirect to a
        storage host (ghcr.io, Docker Hub) is followed without our credentials."""
        path = f"/v2/{repo}/blobs/{digest}"
        status, rh, body = self.request("GET", path, scope=f"repository:{repo}:pull")
        if status in (301, 302, 303, 307, 308) and rh.get("location"):
            body = self._follow(urllib.parse.urljoin(self.url + path, rh["location"]))
        else:
            self._check(status, f"{repo}@{digest}", body)
        algo, _, want = digest.partition(":")
        if algo == "sha256" and hashlib.sha256(body).hexdigest() != want:
            raise RegistryAccessError(
                f"{self.label} ({self.url}): blob {repo}@{digest} does not match its digest",
                resolution="The registry's storage is damaged or a proxy altered the "
                "answer: repair or re-push the image, then run the command again.")
        return body

    def _follow(self, url: str) -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=self._timeout, context=self._ssl) as resp:
                return bytes(resp.read())
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise RegistryAccessError(
                f"{self.label}: its blob storage {url.split('?')[0]} failed: {exc}",
                resolution="Allow this machine to reach the registry's storage host "
                "(through HTTPS_PROXY if there is one), then run the command again.",
            ) from None

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount (server side, no bytes sent); False if refused."""
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        status, rh, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                                     scope=f"repository:{repo}:pull,push")
        if status == 201:
            return True
        location = rh.get("location")
        if status == 202 and location:  # the registry opened an upload instead: cancel it
            path = urllib.parse.urlsplit(location)
            self.request("DELETE", path.path + (f"?{path.query}" if path.query else ""),
                         scope=f"repository:{repo}:pull,push")
        return False

    def resolve(self, ref: ImageRef, platforms: Sequence[str]) -> ResolvedImage:
        """Tag (or digest) -> manifest digest, and per platform the manifest to pull: what
        `regctl manifest get` answers (an index, or a manifest and its config's platform).
        ref's registry is this client's host; a platform the image lacks is refused."""
        repo, reference = api_reference(ref)
        try:
            info, data = self.get_manifest(repo, reference)
            if is_index(info.media_type, data):
                candidates = [(_platform_of(m.get("platform") or {}), str(m["digest"]))
                              for m in data.get("manifests", [])]
            else:
                config = json.loads(self.get_blob(repo, str(data["config"]["digest"])))
                candidates = [(_platform_of(config), info.digest)]
            per_platform = pick_platforms(candidates, platforms)
        except ManifestNotFound:
            raise RegistryAccessError(
                f"image {ref} not found in {self.label} ({self.url})",
                resolution="Check the image's name and tag (or digest), or remove it from "
                "the image list.") from None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RegistryAccessError(
                f"cannot resolve image {ref}: unexpected manifest ({exc!r})",
                resolution="Check that the reference names a container image (OCI or "
                "Docker v2 manifest), not another kind of artifact.") from None
        missing = [p for p in platforms if p not in per_platform]
        if missing:
            raise AirgapError(
                f"image {ref} has no {', '.join(missing)} variant",
                resolution="Remove that platform from the plan or use an image built for it.")
        return ResolvedImage(ref, info.digest, info.media_type, per_platform)

    def _check(self, status: int, what: str, body: bytes) -> None:
        if status == 403:
            raise RegistryAccessError(
                f"{self.label} ({self.url}) denied access to {what} (HTTP 403)",
                resolution=self._credentials_hint or
                f"Use credentials that may read (and, for the mirror, write) {what}.")
        if status >= 400:
            raise RegistryAccessError(
                f"{self.label} ({self.url}): HTTP {status} for {what}: {body[:200]!r}",
                resolution=f"Check that {self.label} is healthy (its log names the cause), "
                "then run the command again.")

    def close(self) -> None:
        self._drop()
