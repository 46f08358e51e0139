"""The plan: one validated description of an air-gapped install (airgap.yaml).

Every field is checked when the plan is loaded, so that later steps can trust it. A
bad plan gives one line that names the file and the field, and nothing is touched.
Relative paths in the plan are resolved against the plan file's directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from airgap.defaults import DEFAULT_CHANNEL
from airgap.errors import PlanError
from airgap.images import (
    ImageRef,
    is_repository_path,
    merge_images,
    parse_image_ref,
    read_image_list,
)
from airgap.templates import render_template

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


class Plan(_Model):
    """airgap.yaml."""

    k8s: K8sSettings = K8sSettings()
    access: list[Mode]
    nodes: list[Node]
    mirror: MirrorSettings | None = None
    proxy: ProxySettings | None = None
    network: NetworkSettings = NetworkSettings()
    images: ImageSettings = ImageSettings()
    platforms: list[Platform] = Field(default_factory=lambda: [DEFAULT_PLATFORM])
    # Set by load_plan: the directory relative paths are resolved against.
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: str = Field(default="<plan>", exclude=True)

    @field_validator("access", mode="before")
    @classmethod
    def _access(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        return v

    @field_validator("access")
    @classmethod
    def _access_unique(cls, v: list[Mode]) -> list[Mode]:
        if not v:
            raise ValueError("choose at least one of proxy, mirror, sideload")
        if len(set(v)) != len(v):
            raise ValueError("lists a mode twice")
        return v

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one platform, e.g. linux/amd64")
        for p in v:
            if not _PLATFORM_RE.match(p):
                raise ValueError(f"{p!r} is not a platform such as linux/amd64 or linux/arm64")
        if len(set(v)) != len(v):
            raise ValueError("lists a platform twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        if not self.nodes:
            raise ValueError("nodes: list at least one node")
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"nodes: duplicate node name {dup[0]!r}")
        addrs = [n.address for n in self.nodes]
        dupa = sorted({a for a in addrs if addrs.count(a) > 1})
        if dupa:
            raise ValueError(f"nodes: duplicate node address {dupa[0]!r}")
        for i, n in enumerate(self.nodes):
            addr = ipaddress.ip_address(n.address)
            for field, cidr in (("pod_cidr", self.network.pod_cidr),
                                ("service_cidr", self.network.service_cidr)):
                if addr in ipaddress.ip_network(cidr):
                    raise ValueError(
                        f"nodes[{i}].address {n.address} ({n.name}) is inside network.{field} "
                        f"{cidr}: pods or services would shadow the node; move network.{field} "
                        "to a range no node uses"
                    )
        if not any(n.role is Role.control_plane for n in self.nodes):
            raise ValueError("nodes: at least one node needs role control-plane")
        if Mode.mirror in self.access and self.mirror is None:
            raise ValueError("access includes mirror but there is no mirror: section")
        if Mode.proxy in self.access and self.proxy is None:
            raise ValueError("access includes proxy but there is no proxy: section")
        return self

    @property
    def control_plane(self) -> Node:
        return next(n for n in self.nodes if n.role is Role.control_plane)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise PlanError(
            f"{self.source}: no node named {name!r}",
            resolution=f"Use one of: {', '.join(n.name for n in self.nodes)}",
        )

    def resolve(self, path: Path) -> Path:
        """A plan-relative path made absolute."""
        return path if path.is_absolute() else (self.base_dir / path)

    def has(self, mode: Mode) -> bool:
        return mode in self.access


def _loc(err: Any) -> str:
    out = ""
    for part in err["loc"]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(err: Any) -> tuple[str, str]:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling; see examples/ or `invoke init`)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return _loc(err), msg


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every problem, a misspelt (unknown) field first: it usually explains the rest."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return [_describe(e) for e in errors]


def parse_plan(data: Any, *, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    if not isinstance(data, dict):
        raise PlanError(
            f"{source}: the plan must be a YAML mapping (keys such as access:, nodes:)",
            resolution="Start from `invoke init` or one of examples/*.yaml.",
        )
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        (loc, msg), *rest = _problems(exc)
        where = f"{source}: {loc}: " if loc else f"{source}: "
        also = "; ".join(f"{lo or '(plan)'}: {m}" for lo, m in rest[:3])
        if len(rest) > 3:
            also += f"; and {len(rest) - 3} more"
        raise PlanError(
            where + msg + (f" (also {also})" if also else ""),
            resolution="Fix that field in the plan and run the command again.",
        ) from None
    return plan.model_copy(update={"base_dir": base_dir or Path("."), "source": source})


class _PlanLoader(yaml.SafeLoader):
    """YAML as a plan may be: no key twice in one mapping, no absurd nesting.

    PyYAML keeps the last of two equal keys without a word (a second ``mirror:`` wins),
    and composes nested nodes recursively (a file nested thousands deep ends in a
    RecursionError of thousands of lines).
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_PLAN_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_PLAN_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {key!r} (first at line {first.line + 1}; YAML would "
                    "silently keep the last one)",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Load and validate airgap.yaml; PlanError names the file and the field."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_PLAN_BYTES:
            raise PlanError(
                f"{p}: {p.stat().st_size} bytes is far too large for a plan "
                f"(limit {MAX_PLAN_BYTES // 1024} KiB)",
                resolution="Pass the airgap.yaml itself; list images in separate files "
                "(images.files).",
            )
        text = p.read_text()
    except FileNotFoundError:
        raise PlanError(
            f"{p}: plan file not found",
            resolution="Pass --plan PATH, or write a starter plan with `invoke init`.",
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise PlanError(f"{p}: cannot read the plan ({exc})",
                        resolution="Pass a readable UTF-8 YAML file with --plan "
                        "(`invoke init` writes one).") from None
    try:
        data = yaml.load(text, Loader=_PlanLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanError(
            f"{p}:{where}: not valid YAML: {problem}",
            resolution="Fix the YAML syntax (indentation, quoting) and run again.",
        ) from None
    plan = parse_plan(data, source=str(p), base_dir=p.resolve().parent)
    for f in plan.images.files:
        if not plan.resolve(f).is_file():
            raise PlanError(
                f"{p}: images.files: {f} does not exist",
                resolution="Create the workload image list or remove it from images.files.",
            )
    if plan.mirror and plan.mirror.ca_file and not plan.resolve(plan.mirror.ca_file).is_file():
        raise PlanError(
            f"{p}: mirror.ca_file: {plan.mirror.ca_file} does not exist",
            resolution=_CA_RESOLUTION,
        )
    return plan


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


def starter_plan(mode: Mode, name: str = "airgap.yaml") -> str:
    """A commented plan that validates as written, for `invoke init` (a jinja2 template:
    airgap/templates/airgap.yaml.j2)."""
    return render_template("airgap.yaml.j2", name=name, mode=mode.value,
                           channel=DEFAULT_CHANNEL)


def workload_images(plan: Plan) -> list[ImageRef]:
    """The plan's own images: every file in images.files plus images.extra, merged."""
    lists = [read_image_list(plan.resolve(f)) for f in plan.images.files]
    lists.append([parse_image_ref(e) for e in plan.images.extra])
    return merge_images(*lists)
