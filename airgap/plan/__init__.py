"""The plan and what it implies: airgap.yaml, the image references, images.lock.

``settings`` (the plan's sections and the node paths), ``model`` (Plan), ``load``
(strict reading, ``invoke init``'s starter), ``access`` (mirror paths, credentials, CA),
``images`` (references and lists), ``lock`` (images.lock), ``defaults`` (the default
channel and its images), ``sources`` (which images a plan implies, from where).
"""

from airgap.plan.access import (
    check_mirror_paths,
    mirror_ca_pem,
    mirror_credentials,
    mirror_prefix,
)
from airgap.plan.load import load_plan, parse_plan, starter_plan
from airgap.plan.model import Plan, workload_images
from airgap.plan.settings import (
    CLASSIC_HOSTS_DIR,
    CONTAINERD_UNIT,
    DEFAULT_PLATFORM,
    DEFAULT_POD_CIDR,
    DEFAULT_SERVICE_CIDR,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    PROXY_DROPIN,
    SIDELOAD_DIR,
    ImageSettings,
    K8sSettings,
    LXDSettings,
    MirrorSettings,
    Mode,
    NetworkSettings,
    Node,
    ProxySettings,
    Role,
    RoutePersistence,
    SSHSettings,
    Transport,
)

__all__ = [
    "CLASSIC_HOSTS_DIR", "CONTAINERD_UNIT", "DEFAULT_PLATFORM", "DEFAULT_POD_CIDR",
    "DEFAULT_SERVICE_CIDR", "MAX_PLAN_BYTES", "MAX_PLAN_DEPTH", "PROXY_DROPIN",
    "SIDELOAD_DIR", "ImageSettings", "K8sSettings", "LXDSettings", "MirrorSettings", "Mode",
    "NetworkSettings", "Node", "Plan", "ProxySettings", "Role", "RoutePersistence",
    "SSHSettings", "Transport", "check_mirror_paths", "load_plan", "mirror_ca_pem",
    "mirror_credentials", "mirror_prefix", "parse_plan", "starter_plan", "workload_images",
]
