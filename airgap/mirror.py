"""Mirror mode: copy every image into the private registry with regsync, then prove it.

The procedure stops at `regsync once`: nothing says whether the mirror is complete,
and a re-sync re-asks the upstream about every image. Here:

1. Check first. Every image's tag in the mirror is compared with its expected digest
   (images.lock when there is one, else what the upstream serves now). An image that
   is already there, whole, is not handed to regsync; when nothing is missing regsync
   does not run at all, so a no-change re-sync costs one HEAD per image on the mirror
   and never touches the upstream.
2. Count. For each image to copy, its blobs (every platform's manifest, config and
   layers) are looked up in the mirror, so the summary can say how many bytes the sync
   really moved, and a re-run after an interrupted sync shows that finished blobs
   were not sent again.
3. Sync. `regsync once -c` with a sync-images.yaml holding only what is missing,
   MIRROR/USERNAME/PASSWORD in its environment (never on its command line, never in
   the file). Sources are pinned to images.lock digests, so the mirror gets exactly
   what was locked even if an upstream tag has moved since.
4. Verify. Every image by digest, multi-platform images as whole manifest lists
   (the index digest and every platform manifest it names).

Registry lookups use a small in-process client (HTTP keep-alive, basic and bearer
auth, private CA) instead of one `regctl` process per image: that is what keeps the
checks cheap.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID
from rich.table import Table

from airgap import process, tools
from airgap.config import Plan, check_mirror_paths, mirror_ca_pem, mirror_credentials
from airgap.errors import AirgapError, PlanError
from airgap.fileio import write_atomic
from airgap.images import ImageRef
from airgap.lock import ImageLock
from airgap.render.sync import (
    DEFAULT_PARALLEL,
    MIRROR_ENV,
    PASSWORD_ENV,
    SYNC_FILE,
    USERNAME_ENV,
    RegistryAccess,
    dump_sync_config,
    mirror_path,
    sync_config,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

REQUEST_TIMEOUT = 60.0
CHECK_WORKERS = 8
POLL_INTERVAL = 0.5
MIRROR_DOWN_GRACE = 10.0


# --------------------------------------------------------------------------------------
# A small registry client: just what checks and counting need.


class RegistryAccessError(AirgapError):
    """A registry could not be reached, refused our credentials, or failed TLS."""


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def _proxy_for(hostname: str, tls: bool) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment names for hostname, or None.

    HTTPS_PROXY (or HTTP_PROXY for plain http) and NO_PROXY, upper or lower case, as
    Go programs read them; loopback never goes through a proxy (Go does the same).
    """
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


class RegistryClient:
    """HEAD/GET against one registry's /v2/ API, safe to share between threads.

    label names the registry in messages ("the mirror", "upstream ghcr.io"); hint is
    the resolution for credential/TLS problems (which plan field or flag to fix).
    """

    def __init__(
        self,
        host: str,
        *,
        tls: bool = True,
        ca_pem: str | None = None,
        insecure: bool = False,
        credentials: tuple[str, str] | None = None,
        label: str | None = None,
        credentials_hint: str = "",
        ca_hint: str = "",
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
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

    # connection handling

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            hostname, port = self.host, ""
            if ":" in self.host and not self.host.endswith("]"):
                hostname, _, port = self.host.rpartition(":")
            hostname = hostname.strip("[]")
            port_n = int(port) if port else (443 if self.tls else 80)
            proxy = _proxy_for(hostname, self.tls)
            if proxy is not None:
                # A connected machine behind a proxy (HTTPS_PROXY/NO_PROXY, as regsync
                # and regctl honour them): tunnel with CONNECT, never a direct dial.
                conn = (http.client.HTTPSConnection(proxy[0], proxy[1], context=self._ssl,
                                                    timeout=self._timeout)
                        if self.tls else
                        http.client.HTTPConnection(proxy[0], proxy[1], timeout=self._timeout))
                conn.set_tunnel(hostname, port_n)
            elif self.tls:
                conn = http.client.HTTPSConnection(hostname, port_n, context=self._ssl,
                                                   timeout=self._timeout)
            else:
                conn = http.client.HTTPConnection(hostname, port_n, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _send(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, headers=headers)
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
            resolution=f"Start {self.label} (or fix its address) and run the command again.",
        )

    # auth

    def request(self, method: str, path: str, *, scope: str = "",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        hdrs = dict(headers or {})
        auth = self._auth.get(scope) or (self._basic() if self._basic_ok else None)
        if auth:
            hdrs["Authorization"] = auth
        status, rh, body = self._send(method, path, hdrs)
        if status != 401:
            return status, rh, body
        challenge = rh.get("www-authenticate", "")
        auth = self._answer(challenge, scope)
        hdrs["Authorization"] = auth
        status, rh, body = self._send(method, path, hdrs)
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
            )
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        realm = params.get("realm")
        if not realm:
            raise RegistryAccessError(f"{self.label} ({self.url}): bearer challenge without realm")
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
            raise RegistryAccessError(
                f"{self.label}: token service {realm} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RegistryAccessError(
                f"{self.label}: token service {realm} failed: {exc}") from None
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryAccessError(f"{self.label}: token service {realm} returned no token")
        value = f"Bearer {token}"
        with self._lock:
            self._auth[scope] = value
        return value

    # API

    def ping(self) -> None:
        """Reach /v2/ once: surfaces connection, TLS and credential problems up front."""
        status, _, body = self.request("GET", "/v2/")
        if status >= 400:
            raise RegistryAccessError(
                f"{self.label} ({self.url}) answered HTTP {status} on /v2/: {body[:200]!r}")

    def head_manifest(self, repo: str, reference: str) -> ManifestInfo | None:
        """The digest the registry serves for repo:reference; None when it has none."""
        status, rh, body = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
            headers={"Accept": ACCEPT})
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
            headers={"Accept": ACCEPT})
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

    def _check(self, status: int, what: str, body: bytes) -> None:
        if status == 403:
            raise RegistryAccessError(
                f"{self.label} ({self.url}) denied access to {what} (HTTP 403)",
                resolution=self._credentials_hint or None)
        if status >= 400:
            raise RegistryAccessError(
                f"{self.label} ({self.url}): HTTP {status} for {what}: {body[:200]!r}")

    def close(self) -> None:
        self._drop()


class ManifestNotFound(Exception):
    pass


def _split(ref: ImageRef) -> tuple[str, str]:
    """(repository, reference) for the /v2/ API: the digest when pinned, else the tag."""
    return ref.repository, ref.digest or ref.tag or "latest"


def _is_index(info: ManifestInfo, data: dict[str, Any] | None = None) -> bool:
    if info.media_type in INDEX_TYPES:
        return True
    return data is not None and "manifests" in data and "layers" not in data


# --------------------------------------------------------------------------------------
# Results


class Status(str, Enum):
    synced = "synced"
    present = "already present"
    missing = "missing"
    mismatch = "digest mismatch"
    missing_upstream = "missing upstream"
    incomplete = "incomplete"

    @property
    def ok(self) -> bool:
        return self in (Status.synced, Status.present)


@dataclass
class ImageResult:
    ref: ImageRef
    target: str
    expected: str | None = None
    found: str | None = None
    status: Status = Status.missing
    bytes_copied: int = 0
    blobs_copied: int = 0
    platforms: int = 1
    detail: str = ""


@dataclass
class MirrorReport:
    mirror: str
    images: list[ImageResult]
    regsync_ran: bool = False
    regsync_error: str | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    config_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.regsync_error is None and all(i.status.ok for i in self.images)

    @property
    def bytes_copied(self) -> int:
        return sum(i.bytes_copied for i in self.images)

    @property
    def blobs_copied(self) -> int:
        return sum(i.blobs_copied for i in self.images)

    def count(self, status: Status) -> int:
        return sum(1 for i in self.images if i.status is status)


class MirrorError(AirgapError):
    """The mirror is not complete; carries the report so the table can still be shown."""

    def __init__(self, brief: str, report: MirrorReport, *, details: str | None = None,
                 resolution: str | None = None) -> None:
        super().__init__(brief, details=details, resolution=resolution)
        self.report = report


# --------------------------------------------------------------------------------------
# The job


@dataclass
class _Work:
    result: ImageResult
    source: ImageRef            # what regsync copies (pinned to the lock digest if any)
    repo: str                   # repository in the mirror
    reference: str              # tag (or digest) in the mirror
    index_children: list[str] = field(default_factory=list)
    missing_blobs: dict[str, int] = field(default_factory=dict)  # digest -> size, before sync
    mounted: set[str] = field(default_factory=set)  # blobs mounted from another repo


class _Progress:
    """rich progress when given one, silence otherwise."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self._tasks: dict[str, TaskID] = {}

    def start(self, key: str, text: str, total: int) -> None:
        if self.progress is not None:
            self._tasks[key] = self.progress.add_task(text, total=total)

    def advance(self, key: str, n: int = 1) -> None:
        if self.progress is not None and key in self._tasks:
            self.progress.advance(self._tasks[key], n)

    def done(self, key: str) -> None:
        if self.progress is not None and key in self._tasks:
            task = self._tasks[key]
            total = self.progress.tasks[[t.id for t in self.progress.tasks].index(task)].total
            self.progress.update(task, completed=total)


def upstream_access_for(registry: str, upstreams: Sequence[RegistryAccess]) -> RegistryAccess:
    for access in upstreams:
        if access.host == registry:
            return access
    return RegistryAccess(registry)


def upstream_accesses(
    images: Iterable[ImageRef],
    *,
    insecure: Iterable[str] = (),
    ca_file: Path | None = None,
) -> list[RegistryAccess]:
    """How to reach the upstreams that are not plain public TLS (lab and test upstreams).

    ``insecure``: HOST:PORT served over http (--insecure-upstream); ``ca_file``: a PEM CA
    trusted for every other upstream (--upstream-ca).
    """
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.read_text()
        except FileNotFoundError:
            raise AirgapError(f"--upstream-ca {ca_file}: CA file not found",
                              resolution="Pass the PEM file of the CA that signed the "
                              "upstream registry's certificate.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AirgapError(f"--upstream-ca {ca_file}: cannot read the CA file ({exc})",
                              resolution="Pass a readable PEM CA certificate file.") from None
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise AirgapError(f"--upstream-ca {ca_file}: not a PEM certificate",
                              resolution="Pass the CA certificate in PEM form "
                              "(-----BEGIN CERTIFICATE-----).")
    plain = set(insecure)
    return [
        RegistryAccess(host, tls="disabled") if host in plain
        else RegistryAccess(host, ca_pem=ca_pem)
        for host in sorted({r.registry for r in images})
        if host in plain or ca_pem
    ]


def mirror_client(plan: Plan) -> RegistryClient:
    """A client for the plan's mirror with its CA and the credentials the plan names."""
    if plan.mirror is None:
        raise PlanError(f"{plan.source}: no mirror: section",
                        resolution="Add mirror: url: http(s)://HOST:PORT to the plan.")
    m = plan.mirror
    ca = mirror_ca_pem(plan)
    creds = mirror_credentials(plan)
    cred_hint = (
        f"Set {m.username_env} and {m.password_env} to a user the mirror accepts "
        "(they are read from the environment only)."
        if m.username_env else
        "The mirror requires a login: set mirror.username_env and mirror.password_env in "
        "the plan to the NAMES of environment variables holding the credentials."
    )
    ca_hint = (
        f"mirror.ca_file ({m.ca_file}) is not the CA that signed the mirror's certificate: "
        "point it at the right CA (PEM)."
        if m.ca_file else
        "The mirror's certificate is from a private CA: set mirror.ca_file to that CA (PEM)."
    )
    return RegistryClient(
        m.host, tls=m.scheme == "https", ca_pem=ca.decode() if ca else None,
        credentials=creds, label="the mirror", credentials_hint=cred_hint, ca_hint=ca_hint,
    )


def _client_for_upstream(access: RegistryAccess) -> RegistryClient:
    return RegistryClient(
        access.host, tls=access.tls != "disabled", ca_pem=access.ca_pem,
        insecure=access.tls == "insecure", label=f"upstream {access.host}",
        ca_hint=f"Give the CA of {access.host} (--upstream-ca).",
    )


def mirror_images(
    plan: Plan,
    images: Iterable[ImageRef],
    *,
    lock: ImageLock | None = None,
    upstreams: Sequence[RegistryAccess] = (),
    config_out: Path | None = None,
    parallel: int = DEFAULT_PARALLEL,
    progress: Progress | None = None,
    regsync_timeout: float | None = None,
    regsync_env: dict[str, str] | None = None,
) -> MirrorReport:
    """Sync images into the plan's mirror and verify each one by digest.

    Raises MirrorError (with the report) when anything is missing or wrong, and
    RegistryAccessError when the mirror cannot be used at all (down, wrong
    credentials, untrusted certificate) before anything is copied.
    """
    start = time.monotonic()
    if plan.mirror is None:
        raise PlanError(f"{plan.source}: mirror mode needs a mirror: section",
                        resolution="Add mirror: url: http(s)://HOST:PORT to the plan.")
    refs = _unique(images)
    check_mirror_paths(plan, refs)
    if not refs:
        raise AirgapError("no images to mirror",
                          resolution="Give an images.lock (--lock) or an image list (--images).")
    ca = mirror_ca_pem(plan)
    mirror = mirror_client(plan)
    ups = {r.registry: _client_for_upstream(upstream_access_for(r.registry, upstreams))
           for r in refs}
    pb = _Progress(progress)
    phases: dict[str, float] = {}

    # The full file, for the user to read and run by hand (same as `invoke render`).
    full = sync_config(plan, refs, ca_pem=ca.decode() if ca else None, upstreams=upstreams,
                       parallel=parallel)
    if config_out is not None:
        write_atomic(config_out, dump_sync_config(full, config_out.name))

    mirror.ping()
    work = []
    for ref in refs:
        locked = lock.find(ref) if lock is not None else None
        expected = locked.digest if locked else ref.digest
        source = ref.with_digest(expected) if expected else ref
        path = mirror_path(plan, ref)
        repo, _, reference = _split_path(path)
        result = ImageResult(ref=ref, target=f"{plan.mirror.host}/{path}", expected=expected)
        work.append(_Work(result=result, source=source, repo=repo, reference=reference))

    # 1. What is already there (and, without a lock, what the upstream serves now).
    t = time.monotonic()
    pb.start("check", "checking mirror", len(work))

    def check(w: _Work) -> None:
        try:
            if w.result.expected is None:
                up = ups[w.source.registry].head_manifest(*_split(w.source))
                if up is None:
                    w.result.status = Status.missing_upstream
                    w.result.detail = f"{w.source} not found upstream"
                    return
                w.result.expected = up.digest
            _verify(mirror, w, before=True)
        finally:
            pb.advance("check")

    _run_all(check, work)
    phases["check"] = time.monotonic() - t
    pending = [w for w in work if w.result.status is Status.missing
               or w.result.status is Status.mismatch or w.result.status is Status.incomplete]

    # 2. What each missing image will cost: its blobs missing from the mirror repo.
    t = time.monotonic()
    if pending:
        pb.start("plan", "counting blobs to copy", len(pending))
        seen: set[tuple[str, str]] = set()
        seen_lock = threading.Lock()

        def count(w: _Work) -> None:
            try:
                _missing_blobs(ups[w.source.registry], mirror, w, seen, seen_lock)
            except ManifestNotFound as exc:
                w.result.status = Status.missing_upstream
                w.result.detail = f"{exc} not found upstream"
            finally:
                pb.advance("plan")

        _run_all(count, pending)
        pending = [w for w in pending if w.result.status is not Status.missing_upstream]
    phases["plan"] = time.monotonic() - t

    # 3. regsync, with only what is missing.
    report = MirrorReport(mirror=plan.mirror.url, images=[w.result for w in work],
                          config_file=config_out, phases=phases)
    t = time.monotonic()
    if pending:
        report.regsync_ran = True
        pem = ca.decode() if ca else None
        seeds, rest, shared = _seed_split(pending)
        stages = [(seeds, "regsync: shared layers"), (rest, "regsync")] if seeds and rest \
            else [(pending, "regsync")]
        for n, (batch, label) in enumerate(stages):
            if n == 1:
                _mount_shared(mirror, seeds, rest, shared)
            subset = sync_config(plan, [w.source for w in batch], ca_pem=pem,
                                 upstreams=upstreams, parallel=parallel)
            report.regsync_error = _run_regsync(
                plan, subset, batch, mirror, pb, label=f"{label}: {len(batch)} image(s)",
                timeout=regsync_timeout, extra_env=regsync_env)
            if report.regsync_error:
                break
    phases["sync"] = time.monotonic() - t

    # 4. Verify what was copied; count what really moved.
    t = time.monotonic()
    if pending:
        pb.start("verify", "verifying by digest", len(pending))

        def after(w: _Work) -> None:
            try:
                _verify(mirror, w, before=False)
                moved = {d: s for d, s in w.missing_blobs.items()
                         if d not in w.mounted and mirror.has_blob(w.repo, d)}
                w.result.blobs_copied = len(moved)
                w.result.bytes_copied = sum(moved.values())
            finally:
                pb.advance("verify")

        try:
            _run_all(after, pending)
        except RegistryAccessError as exc:
            report.seconds = time.monotonic() - start
            raise MirrorError(
                f"the mirror stopped answering during the sync: {exc.brief}", report,
                details=report.regsync_error,
                resolution="Bring the mirror back and run `invoke mirror` again: images and "
                "blobs already copied are found and not sent again.",
            ) from None
    phases["verify"] = time.monotonic() - t
    mirror.close()
    for c in ups.values():
        c.close()
    report.seconds = time.monotonic() - start
    _raise_unless_complete(report)
    return report


def _split_path(path: str) -> tuple[str, str, str]:
    if "@" in path:
        repo, _, digest = path.partition("@")
        return repo, "@", digest
    repo, _, tag = path.rpartition(":")
    return repo, ":", tag


def _unique(images: Iterable[ImageRef]) -> list[ImageRef]:
    seen: dict[str, ImageRef] = {}
    for ref in images:
        seen.setdefault(ref.name if ref.tag else str(ref), ref)
    return sorted(seen.values(), key=str)


def _run_all(fn: Callable[[_Work], None], work: Sequence[_Work]) -> None:
    """fn over work in a thread pool; the first error is raised after all finish."""
    if not work:
        return
    with ThreadPoolExecutor(max_workers=min(CHECK_WORKERS, len(work))) as pool:
        futures = [pool.submit(fn, w) for w in work]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err


def _verify(mirror: RegistryClient, w: _Work, *, before: bool) -> None:
    """Set w's status from the mirror: the tag's digest, and for an index every child."""
    info = mirror.head_manifest(w.repo, w.reference)
    r = w.result
    if info is None:
        r.found = None
        r.status = Status.missing
        r.detail = "not in the mirror"
        return
    r.found = info.digest
    if r.expected and info.digest != r.expected:
        r.status = Status.mismatch
        r.detail = f"mirror has {info.digest}, expected {r.expected}"
        return
    if _is_index(info):
        _, data = mirror.get_manifest(w.repo, info.digest)
        children = [str(m["digest"]) for m in data.get("manifests", [])]
        r.platforms = len(children)
        absent = [c for c in children if mirror.head_manifest(w.repo, c) is None]
        if absent:
            r.status = Status.incomplete
            r.detail = f"{len(absent)} of {len(children)} platform manifests missing"
            return
    r.status = Status.present if before else Status.synced
    r.detail = ""


def _missing_blobs(up: RegistryClient, mirror: RegistryClient, w: _Work,
                   seen: set[tuple[str, str]], seen_lock: threading.Lock) -> None:
    """Record the blobs (and platform manifests) of w the mirror repo lacks, with sizes."""
    repo, ref = _split(w.source)
    info, data = up.get_manifest(repo, ref)
    if w.result.expected is None:
        w.result.expected = info.digest
    items: list[Blob] = []
    manifests: list[dict[str, Any]] = []
    if _is_index(info, data):
        children = data.get("manifests", [])
        w.result.platforms = len(children)
        for child in children:
            digest = str(child["digest"])
            items.append(Blob(digest, int(child.get("size", 0))))
            _, sub = up.get_manifest(repo, digest)
            manifests.append(sub)
    else:
        manifests.append(data)
    for m in manifests:
        config = m.get("config")
        if isinstance(config, dict) and "digest" in config:
            items.append(Blob(str(config["digest"]), int(config.get("size", 0))))
        for layer in m.get("layers", []):
            items.append(Blob(str(layer["digest"]), int(layer.get("size", 0))))
    for item in items:
        key = (w.repo, item.digest)
        with seen_lock:
            if key in seen:
                continue
            seen.add(key)
        is_manifest = any(item.digest == str(c.get("digest")) for c in data.get("manifests", []))
        present = (mirror.head_manifest(w.repo, item.digest) is not None if is_manifest
                   else mirror.has_blob(w.repo, item.digest))
        if not present:
            w.missing_blobs[item.digest] = item.size


_LOG_ERROR = re.compile(r"level=(ERROR|WARN)\b.*")
# Distribution reports ENOSPC as {"Op":"write",...,"Err":28} inside a 500 response.
_NO_SPACE = re.compile(r'no space left on device|disk quota|insufficient storage|HTTP 507'
                       r'|\\?"Err\\?":\s*28\b', re.IGNORECASE)


def _shorten(line: str, limit: int = 400) -> str:
    line = re.sub(r"^time=\S+ ", "", line)
    return line if len(line) <= limit else line[:limit] + " ..."


def _seed_split(pending: Sequence[_Work]) -> tuple[list[_Work], list[_Work], dict[str, int]]:
    """Split pending images so that layers shared between repositories travel once.

    regclient copies a blob into every repository that lacks it (it mounts only within
    one registry), so N images on one base layer send that layer N times. Instead: a
    first regsync run copies a few "seed" images that together hold every shared blob;
    those blobs are then mounted server-side into the other repositories; the second
    run finds them there and copies only what is unique. Returns (seeds, rest, shared).
    """
    users: dict[str, set[str]] = {}
    for w in pending:
        for digest in w.missing_blobs:
            users.setdefault(digest, set()).add(w.repo)
    shared = {d: 0 for d, repos in users.items() if len(repos) > 1}
    for w in pending:
        for d in shared:
            if d in w.missing_blobs:
                shared[d] = w.missing_blobs[d]
    if not shared:
        return [], list(pending), {}
    seeds: list[_Work] = []
    covered: set[str] = set()
    for w in sorted(pending, key=lambda w: -sum(s for d, s in w.missing_blobs.items()
                                                if d in shared)):
        new = {d for d in w.missing_blobs if d in shared} - covered
        if new:
            seeds.append(w)
            covered |= new
        if covered == set(shared):
            break
    seed_ids = {id(w) for w in seeds}
    return seeds, [w for w in pending if id(w) not in seed_ids], shared


def _mount_shared(mirror: RegistryClient, seeds: Sequence[_Work], rest: Sequence[_Work],
                  shared: dict[str, int]) -> None:
    """Mount the shared blobs the seeds brought into every other repository needing them."""
    where: dict[str, str] = {}
    for w in seeds:
        for d in w.missing_blobs:
            if d in shared:
                where.setdefault(d, w.repo)

    def mount(w: _Work) -> None:
        for d in w.missing_blobs:
            source = where.get(d)
            if source and source != w.repo:
                try:
                    if mirror.mount_blob(w.repo, d, source):
                        w.mounted.add(d)
                except RegistryAccessError:
                    return  # regsync will copy it; a real outage surfaces there

    _run_all(mount, rest)


def _run_regsync(plan: Plan, config: dict[str, Any], pending: Sequence[_Work],
                 mirror: RegistryClient, pb: _Progress, *, label: str, timeout: float | None,
                 extra_env: dict[str, str] | None) -> str | None:
    """Run regsync once over config; returns None on success, else the error text.

    While it runs, the mirror is polled for the images still pending: progress moves
    as images land (regsync says nothing when an image is done), and a mirror that
    stops answering for MIRROR_DOWN_GRACE seconds stops regsync at once, instead of
    regclient's back-off retrying for minutes.
    """
    assert plan.mirror is not None
    env = dict(extra_env or {})
    env[MIRROR_ENV] = plan.mirror.host
    creds = mirror_credentials(plan)
    if creds is not None:
        env[USERNAME_ENV], env[PASSWORD_ENV] = creds
    pb.start("sync", label, len(pending))
    regsync = tools.find_tool("regsync")
    down_since: float | None = None
    mirror_down = False
    with tempfile.TemporaryDirectory(prefix="airgap-regsync-") as tmp:
        cfg = Path(tmp) / SYNC_FILE
        write_atomic(cfg, dump_sync_config(config), 0o600)
        argv = [str(regsync), "once", "-c", str(cfg), "-v", "warn"]
        with open(Path(tmp) / "stderr", "w+b") as err_file:
            proc = process.popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
            started = time.monotonic()
            waiting = {id(w): w for w in pending}
            try:
                while True:
                    try:
                        proc.wait(POLL_INTERVAL)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if timeout is not None and time.monotonic() - started > timeout:
                        proc.terminate()
                        proc.wait(10)
                        raise AirgapError(f"regsync did not finish within {timeout:.0f} s",
                                          resolution="Run `invoke mirror` again; what is "
                                          "already in the mirror is not copied again.")
                    try:
                        for key, w in list(waiting.items()):
                            info = mirror.head_manifest(w.repo, w.reference)
                            if info is not None and info.digest == w.result.expected:
                                del waiting[key]
                                pb.advance("sync")
                        down_since = None
                    except RegistryAccessError:
                        now = time.monotonic()
                        down_since = down_since or now
                        if now - down_since > MIRROR_DOWN_GRACE:
                            mirror_down = True
                            proc.terminate()
                            proc.wait(10)
                            break
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err_file.seek(0)
            stderr = err_file.read().decode(errors="replace")
    pb.done("sync")
    if mirror_down:
        raise RegistryAccessError(
            f"the mirror ({plan.mirror.url}) stopped answering during the sync; "
            "regsync was stopped",
            details=_regsync_errors(stderr) or None,
            resolution="Bring the mirror back and run `invoke mirror` again: images and "
            "blobs already copied are found and not sent again.",
        )
    if proc.returncode == 0:
        return None
    text = _regsync_errors(stderr)
    if _NO_SPACE.search(stderr):
        text = "the mirror ran out of disk space (no space left on device)\n" + text
    return f"regsync exited {proc.returncode}:\n{text}"


def _regsync_errors(stderr: str) -> str:
    errors = [m.group(0) for m in _LOG_ERROR.finditer(stderr)]
    lines = [e for e in errors if 'msg="Failed to sync"' in e] or errors or \
        stderr.strip().splitlines()
    return "\n".join(_shorten(line) for line in lines[-10:])


def _raise_unless_complete(report: MirrorReport) -> None:
    bad = [i for i in report.images if not i.status.ok]
    if not bad and report.regsync_error is None:
        return
    upstream = [i for i in bad if i.status is Status.missing_upstream]
    others = [i for i in bad if i.status is not Status.missing_upstream]
    parts = []
    if others:
        parts.append(f"{len(others)} image(s) not complete in the mirror "
                     f"({', '.join(str(i.ref) for i in others[:3])}"
                     f"{', ...' if len(others) > 3 else ''})")
    if upstream:
        parts.append(f"{len(upstream)} image(s) missing upstream "
                     f"({', '.join(str(i.ref) for i in upstream[:3])}"
                     f"{', ...' if len(upstream) > 3 else ''})")
    if not parts:
        parts.append("regsync failed")
    err = report.regsync_error or ""
    if "disk space" in err:
        resolution = ("Free or grow the mirror's storage, then run `invoke mirror` again "
                      "(blobs already copied are not sent again).")
    elif upstream and not others:
        resolution = ("Check the image names and tags (or the upstream registry); remove "
                      "images that do not exist from the list, or re-run `invoke prepare`.")
    else:
        resolution = ("Fix the cause shown above and run `invoke mirror` again: what is "
                      "already in the mirror is not copied again.")
    raise MirrorError("mirror incomplete: " + "; ".join(parts), report,
                      details=err or None, resolution=resolution)


# --------------------------------------------------------------------------------------
# Presentation


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


_STYLE = {
    Status.synced: "green", Status.present: "cyan", Status.missing: "red",
    Status.mismatch: "red", Status.missing_upstream: "red", Status.incomplete: "red",
}


def report_table(report: MirrorReport) -> Table:
    table = Table(title=f"Mirror {report.mirror}", show_lines=False)
    table.add_column("image")
    table.add_column("digest")
    table.add_column("status")
    table.add_column("bytes copied", justify="right")
    for r in report.images:
        digest = (r.found or r.expected or "-")
        short = digest.split(":", 1)[-1][:12] if digest != "-" else "-"
        plats = f" ({r.platforms} platforms)" if r.platforms > 1 else ""
        status = f"[{_STYLE[r.status]}]{r.status.value}[/]"
        if r.detail and not r.status.ok and r.status is not Status.missing_upstream:
            status += f": {r.detail}"
        table.add_row(str(r.ref) + plats, short, status, human_bytes(r.bytes_copied))
    return table


def summary_line(report: MirrorReport) -> str:
    n = len(report.images)
    synced, present = report.count(Status.synced), report.count(Status.present)
    bad = n - synced - present
    ran = "regsync ran" if report.regsync_ran else "regsync not needed"
    return (f"{n} image(s): {synced} synced, {present} already present, {bad} failed; "
            f"{human_bytes(report.bytes_copied)} in {report.blobs_copied} blob(s) copied; "
            f"{ran}; {report.seconds:.2f} s")


__all__ = [
    "ImageResult",
    "MirrorError",
    "MirrorReport",
    "RegistryAccessError",
    "RegistryClient",
    "Status",
    "mirror_client",
    "mirror_images",
    "report_table",
    "summary_line",
]
