"""The plan: one validated description of an air-gapped install (airgap.yaml).

Every field is checked when the plan is loaded, so that later steps can trust it. A
bad plan gives one line that names the file and the field, and nothing is touched.
Relative paths in the plan are resolved against the plan file's directory.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from airgap.errors import PlanError
from airgap.plan.images import ImageRef, merge_images, parse_image_ref, read_image_list
from airgap.plan.settings import (
    _PLATFORM_RE,
    DEFAULT_PLATFORM,
    ImageSettings,
    K8sSettings,
    MirrorSettings,
    Mode,
    NetworkSettings,
    Node,
    Platform,
    ProxySettings,
    Role,
    _Model,
)


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


def workload_images(plan: Plan) -> list[ImageRef]:
    """The plan's own images: every file in images.files plus images.extra, merged."""
    lists = [read_image_list(plan.resolve(f)) for f in plan.images.files]
    lists.append([parse_image_ref(e) for e in plan.images.extra])
    return merge_images(*lists)
