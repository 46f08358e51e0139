"""A real Distribution registry (Debian's docker-registry) and a throwaway CA.

Each registry gets its own config, data directory and log under the test's work
directory; stop() and start() keep the data, so tests can stop a mirror mid-sync and
bring it back. The hostname clients use may differ from the bind address (a name only
a proxy resolves, or an address inside a network namespace). An IPv6 bind address
(``bind="::1"``) works too: addresses and URLs then carry it in brackets.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from airgap import process
from tests.support import can_connect, free_port, spawn, terminate, wait_until

REGISTRY_BIN = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_ipv6(name: str) -> bool:
    return _is_ip(name) and ":" in name


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets ([::1]:5000)."""
    return f"[{host}]:{port}" if _is_ipv6(host) else f"{host}:{port}"


def _free_port_v6(host: str) -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class TestCA:
    """A private CA made with openssl; issue() signs server certs with SANs."""

    __test__ = False  # not a pytest test class

    directory: Path
    ca_cert: Path
    ca_key: Path
    _serial: int = 1

    @classmethod
    def create(cls, directory: Path, common_name: str = "airgap test CA") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "ca.crt", directory / "ca.key"
        process.run([
            "openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", cert,
            "-days", "30", "-subj", f"/CN={common_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        return cls(directory, cert, key)

    @property
    def pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def issue(self, names: Sequence[str], *, stem: str | None = None) -> tuple[Path, Path]:
        """A leaf cert and key for DNS names and IP addresses (SANs); returns (cert, key)."""
        if not names:
            raise ValueError("issue() needs at least one name")
        stem = stem or f"leaf{self._serial}"
        self._serial += 1
        cert, key, csr = (self.directory / f"{stem}{ext}" for ext in (".crt", ".key", ".csr"))
        sans = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in dict.fromkeys(names))
        ext = self.directory / f"{stem}.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={sans}\n"
        )
        process.run([
            "openssl", "req", "-new", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", csr,
            "-subj", f"/CN={names[0]}",
        ])
        process.run([
            "openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", ext,
        ])
        return cert, key


@dataclass
class Registry:
    """A running docker-registry. `address` (host:port) is what clients and hosts.toml use."""

    host: str
    port: int
    bind: str
    scheme: str
    data_dir: Path
    config_file: Path
    log_file: Path
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    netns: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def probe_host(self) -> str:
        """Where this machine connects to reach it (the bind address, loopback for 0.0.0.0)."""
        if self.bind == "::":
            return "::1"
        return "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind

    def start(self) -> None:
        """Start (or restart) the daemon on the same port with the same data."""
        if self.running:
            return
        self._proc = spawn(
            [REGISTRY_BIN, "serve", str(self.config_file)], self.log_file, netns=self.netns
        )
        wait_until(
            f"docker-registry on {self.bind}:{self.port}",
            lambda: can_connect(self.probe_host, self.port, self.netns),
            timeout=START_TIMEOUT, proc=self._proc, log_file=self.log_file,
        )

    def stop(self) -> None:
        terminate(self._proc)
        self._proc = None

    # Small HTTP helpers for assertions (root namespace only).

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to the registry API (auth and CA applied); returns status, headers, body."""
        hdrs = dict(headers or {})
        if auth and self.username is not None and self.password is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        conn: http.client.HTTPConnection
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            conn = http.client.HTTPSConnection(self.probe_host, self.port, context=ctx, timeout=10)
        else:
            conn = http.client.HTTPConnection(self.probe_host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def catalog(self) -> list[str]:
        status, _, body = self.request("GET", "/v2/_catalog")
        assert status == 200, f"catalog: HTTP {status} {body[:200]!r}"
        return list(json.loads(body).get("repositories") or [])

    def tags(self, repo: str) -> list[str]:
        status, _, body = self.request("GET", f"/v2/{repo}/tags/list")
        if status == 404:
            return []
        assert status == 200, f"tags {repo}: HTTP {status} {body[:200]!r}"
        return list(json.loads(body).get("tags") or [])

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest the registry serves for repo:reference, None when absent."""
        accept = ", ".join([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])
        status, headers, _ = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
        )
        if status == 404:
            return None
        assert status == 200, f"manifest {repo}:{reference}: HTTP {status}"
        return headers.get("docker-content-digest")

    def put_blob(self, repo: str, data: bytes) -> str:
        """Upload one blob (POST, then a single PUT); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202, f"blob upload to {repo}: HTTP {status} {body[:200]!r}"
        location = urllib.parse.urlsplit(headers["location"])
        sep = "&" if location.query else ""
        path = f"{location.path}?{location.query}{sep}digest={digest}"
        status, _, body = self.request(
            "PUT", path, body=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert status == 201, f"blob upload to {repo}: HTTP {status} {body[:200]!r}"
        return digest

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status == 200


def write_htpasswd(path: Path, username: str, password: str) -> None:
    """A bcrypt htpasswd file; the password goes through stdin, never argv."""
    out = process.run(["htpasswd", "-niB", username], input=password.encode())
    path.write_text(out.stdout.strip() + "\n")
    path.chmod(0o600)


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    ca: TestCA | None = None,
    htpasswd: tuple[str, str] | None = None,
    bind: str = "127.0.0.1",
    port: int = 0,
    hostname: str | None = None,
    data_dir: Path | None = None,
    netns: str | None = None,
    cert: tuple[Path, Path] | None = None,
) -> Registry:
    """Start docker-registry with its own config in workdir and wait until it listens.

    hostname defaults to the bind address (loopback for 0.0.0.0 or ::). With tls and no ca, a
    CA is created in workdir/ca; the server cert covers hostname and the bind address
    unless cert=(crt, key) is given. netns runs the daemon inside that namespace.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    host = hostname or ("127.0.0.1" if bind in ("0.0.0.0", "") else bind)
    if host == "::":
        host = "::1"
    if port == 0 and _is_ipv6(bind) and netns is None:
        port = _free_port_v6(bind)
    elif port == 0:
        port = free_port("0.0.0.0" if bind in ("0.0.0.0", "") else bind, netns)
    data = data_dir or workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(data)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": host_port(bind, port), "secret": secrets.token_hex(16)},
    }
    http_cfg = config["http"]
    assert isinstance(http_cfg, dict)
    ca_file: Path | None = None
    if tls:
        if cert is None:
            if ca is None:
                ca = TestCA.create(workdir / "ca")
            loopback = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
            names = [host, loopback.get(bind, bind)]
            cert = ca.issue(names, stem=f"registry-{port}")
        if ca is not None:
            ca_file = ca.ca_cert
        http_cfg["tls"] = {"certificate": str(cert[0]), "key": str(cert[1])}
    username = password = None
    if htpasswd is not None:
        username, password = htpasswd
        hfile = workdir / "htpasswd"
        write_htpasswd(hfile, username, password)
        config["auth"] = {"htpasswd": {"realm": "airgap-test", "path": str(hfile)}}
    config_file = workdir / "config.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    reg = Registry(
        host=host, port=port, bind=bind, scheme="https" if tls else "http",
        data_dir=data, config_file=config_file, log_file=workdir / "registry.log",
        ca_file=ca_file, username=username, password=password, netns=netns,
    )
    reg.start()
    return reg
