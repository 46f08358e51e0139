"""The sections of the plan (airgap.yaml), each validated when the plan is loaded:
nodes, mirror, proxy, network, k8s, images; and the node paths the product writes to."""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from airgap.plan.defaults import DEFAULT_CHANNEL
from airgap.plan.images import (
    parse_image_ref,
)

DEFAULT_POD_CIDR = "10.1.0.0/16"


DEFAULT_SERVICE_CIDR = "10.152.183.0/24"


DEFAULT_PLATFORM = "linux/amd64"


CLASSIC_HOSTS_DIR = "/etc/containerd/hosts.d"


SIDELOAD_DIR = "/var/snap/k8s/common/images"


PROXY_DROPIN = "/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf"


CONTAINERD_UNIT = "snap.k8s.containerd"


MAX_PLAN_BYTES = 1024 * 1024


MAX_PLAN_DEPTH = 32


_CA_RESOLUTION = (
    "Point mirror.ca_file at the PEM file of the CA that signed the mirror's certificate."
)


_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_PLATFORM_RE = re.compile(r"^linux/(amd64|arm64|arm|ppc64le|s390x|riscv64|386)(/v[5-8])?$")


_IFACE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(str, Enum):
    proxy = "proxy"
    mirror = "mirror"
    sideload = "sideload"


class Role(str, Enum):
    control_plane = "control-plane"
    worker = "worker"


class Transport(str, Enum):
    local = "local"
    ssh = "ssh"
    lxd = "lxd"


class SSHSettings(_Model):
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_file: Path | None = None
    strict_host_key_checking: bool = True


class LXDSettings(_Model):
    instance: str | None = None
    project: str = "default"


class Node(_Model):
    name: str
    address: str
    role: Role = Role.control_plane
    transport: Transport = Transport.ssh
    ssh: SSHSettings = SSHSettings()
    lxd: LXDSettings = LXDSettings()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                "must be a lowercase host name (letters, digits, '-'), e.g. node-1"
            )
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(
                f"{v!r} is not an IP address (the node's address on the cluster network)"
            ) from None


class MirrorSettings(_Model):
    url: str
    ca_file: Path | None = None
    path_prefix: str = ""
    fallback: bool = False
    username_env: str | None = None
    password_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if "@" in parts.netloc:
            # checked first, and the value never echoed: it holds a secret
            raise ValueError(
                "credentials in the mirror URL are not accepted: they would be written in "
                "clear into hosts.toml on every node; write scheme://host[:port] and put the "
                "NAMES of two environment variables in mirror.username_env and "
                "mirror.password_env"
            )
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"{v!r} needs a scheme: write http://HOST:PORT or https://HOST:PORT"
            )
        if not parts.hostname:
            raise ValueError(f"{v!r} has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"{v!r} must be scheme://host[:port] only; put a nested path in mirror.path_prefix"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{v!r} has an invalid port") from None
        return v.rstrip("/")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if v and not re.match(r"^[a-z0-9{}._/-]+$", v):
            raise ValueError(
                f"{v!r} may hold only lowercase letters, digits, '.', '_', '-', '/' "
                "and {registry}"
            )
        if "{" in v.replace("{registry}", ""):
            raise ValueError(f"{v!r}: the only placeholder allowed is {{registry}}")
        return v

    @field_validator("username_env", "password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_RE.match(v):
            raise ValueError(
                f"{v!r} must be the NAME of an environment variable "
                "(credentials are never written in the plan)"
            )
        return v

    @model_validator(mode="after")
    def _creds_pair(self) -> MirrorSettings:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("set both username_env and password_env, or neither")
        if self.ca_file is not None and self.scheme == "http":
            raise ValueError(
                "ca_file is set but the mirror url is http://; use https:// or drop ca_file"
            )
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """host[:port] as registries and containerd name it."""
        return urlsplit(self.url).netloc

    @property
    def hostname(self) -> str:
        return urlsplit(self.url).hostname or ""

    def prefix_for(self, registry: str) -> str:
        """The nested path below the mirror that holds images of ``registry``."""
        return self.path_prefix.replace("{registry}", registry)


class ProxySettings(_Model):
    http: str | None = None
    https: str | None = None
    no_proxy: list[str] = Field(default_factory=list)

    @field_validator("http", "https")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} must be a URL such as http://squid.internal:3128")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials in the proxy URL are not supported: they would be written in "
                "clear into a file on every node; let the proxy allow the nodes by address"
            )
        if any(c.isspace() or c in "\"'%$\\" for c in v):
            raise ValueError(f"{v!r} contains a space, quote, '%', '$' or backslash")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{v!r} has an invalid port") from None
        return v

    @field_validator("no_proxy")
    @classmethod
    def _no_proxy(cls, v: list[str]) -> list[str]:
        for item in v:
            if not item or any(c.isspace() for c in item) or "," in item:
                raise ValueError(f"{item!r} is not a host, domain or CIDR (one per list item)")
        return v

    @model_validator(mode="after")
    def _one(self) -> ProxySettings:
        if not self.http and not self.https:
            raise ValueError("set proxy.http and/or proxy.https")
        return self


class RoutePersistence(str, Enum):
    """How the placeholder default route survives a reboot (see airgap/render/route.py)."""

    networkd = "networkd"
    netplan = "netplan"
    none = "none"


class NetworkSettings(_Model):
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    default_route_interface: str = "eth0"
    # netplan: /etc/netplan/90-airgap-default-route.yaml (Ubuntu servers);
    # networkd: a drop-in for the .network file named by networkd_file;
    # none: no persistent file (the nodes already have a default route).
    route_persistence: RoutePersistence = RoutePersistence.netplan
    networkd_file: str | None = None

    @field_validator("networkd_file")
    @classmethod
    def _networkd_file(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._@-]*\.network$", v):
            raise ValueError(
                f"{v!r} must be the file name (no directory) of the .network unit that "
                "configures the interface, e.g. 10-netplan-eth0.network"
            )
        return v

    @model_validator(mode="after")
    def _persistence(self) -> NetworkSettings:
        if self.route_persistence is RoutePersistence.networkd and self.networkd_file is None:
            raise ValueError(
                "route_persistence is networkd: set networkd_file to the .network file that "
                "configures the interface (`networkctl status IFACE` shows it as 'Network File')"
            )
        return self

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError(
                f"{v!r} has no prefix length (it would be read as a single address, /32): "
                "write it as a network, e.g. 10.1.0.0/16"
            )
        try:
            return str(ipaddress.ip_network(v, strict=True))
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a network in CIDR form ({exc})") from None

    @field_validator("default_route_interface")
    @classmethod
    def _iface(cls, v: str) -> str:
        if not _IFACE_RE.match(v):
            raise ValueError(f"{v!r} is not a network interface name")
        return v


    @model_validator(mode="after")
    def _disjoint(self) -> NetworkSettings:
        pods = ipaddress.ip_network(self.pod_cidr)
        services = ipaddress.ip_network(self.service_cidr)
        if pods.version == services.version and pods.overlaps(services):
            raise ValueError(
                f"service_cidr {services} overlaps pod_cidr {pods}: Kubernetes needs them "
                "apart; pick a service CIDR outside the pod CIDR (defaults "
                f"{DEFAULT_POD_CIDR} and {DEFAULT_SERVICE_CIDR})"
            )
        return self


class K8sSettings(_Model):
    channel: str = DEFAULT_CHANNEL
    containerd_base_dir: str | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,2}$", v):
            raise ValueError(f"{v!r} is not a snap channel such as 1.36-classic/stable")
        return v

    @field_validator("containerd_base_dir")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must be an absolute path")
        return v.rstrip("/") if v else v

    @property
    def hosts_dir(self) -> str:
        """Where containerd in the snap reads hosts.toml (FACTS: moves with containerd-base-dir)."""
        if self.containerd_base_dir:
            return f"{self.containerd_base_dir}/etc/containerd/hosts.d"
        return CLASSIC_HOSTS_DIR


class ImageSettings(_Model):
    files: list[Path] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)

    @field_validator("extra")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for n, item in enumerate(v):
            try:
                parse_image_ref(item)
            except ValueError as exc:
                raise ValueError(f"item {n}: invalid image reference: {exc}") from None
        return v


Platform = Annotated[str, Field()]
