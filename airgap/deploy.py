"""Deploy: from a verified bundle to a joined cluster.

The seed procedure is a page of commands typed on every node in the right order. Here
every step first observes the node (``snap list``, the file's current content,
``k8s local-node-status``, the cluster's node list) and acts only when the observation says the
step is not done, so a re-run after success issues no install or join, and a re-run
after a failure on one node continues from where that node stopped. There is no
state file to go stale: the nodes are the state.

Order per node: bundle transferred and verified on arrival -> snapd, the base snap
and k8s (``--classic``) acknowledged and installed -> placeholder default route, now
and persistent -> containerd configuration for the plan's modes (hosts.d with CA,
proxy drop-in + daemon-reload, side-loaded archives), containerd restarted only when
something changed -> ``k8s bootstrap --name`` on the first control-plane node -> a join
token per other node, joins with ``--name`` (workers in parallel, control planes one at a
time) -> wait until every node is Ready -> on nodes whose side-loaded archives arrived
before containerd ran (the real snap starts it at bootstrap/join), confirm the images.
Nodes are prepared in parallel.

Where the bundle has no snaps or the node has no ``snap`` command and the node runs
the lab's runtime stand-in, the snap, bootstrap, join and Ready steps say that they
were skipped and why; the runtime configuration still runs for real.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from airgap.bundle import Bundle as Layout
from airgap.bundle import read_manifest, verify_bundle
from airgap.config import (
    CONTAINERD_UNIT,
    SIDELOAD_DIR,
    Mode,
    Plan,
    Role,
    check_mirror_paths,
    mirror_ca_pem,
)
from airgap.config import Node as PlanNode
from airgap.errors import AirgapError, CommandError
from airgap.images import ImageRef, registries
from airgap.nodes import Node, has_command, is_stand_in, read_text
from airgap.render import RenderedFile

STATE_DIR = "/var/lib/k8s-airgap"
REMOTE_BUNDLE = f"{STATE_DIR}/bundle"
BOOTSTRAP_CONFIG = f"{STATE_DIR}/bootstrap.yaml"
JOIN_CONFIG = f"{STATE_DIR}/join.yaml"
STAND_IN_REASON = "runtime stand-in, the k8s snap is not available here"

SNAP_INSTALL_TIMEOUT = 900.0
BOOTSTRAP_TIMEOUT = 900.0
JOIN_TIMEOUT = 900.0
READY_TIMEOUT = 900.0
READY_POLL = 5.0
TOKEN_PLACEHOLDER = "<token>"

# k8s join-cluster takes the token as an argument; reading it from stdin keeps it out
# of our argv, our logs and error messages.
JOIN_SCRIPT = 'exec k8s join-cluster "$(cat)" "$@"'


class StepStatus(str, Enum):
    done = "done"  # observed in place; nothing issued
    changed = "changed"  # applied now
    skipped = "skipped"  # deliberately not run; the detail says why
    failed = "failed"
    not_run = "not run"  # an earlier failure on this node (or the cluster) prevents it


@dataclass
class StepResult:
    step: str
    status: StepStatus
    detail: str = ""


@dataclass
class NodeReport:
    name: str
    role: str
    steps: list[StepResult] = field(default_factory=list)
    errors: list[AirgapError] = field(default_factory=list)
    stand_in: bool = False

    def add(self, step: str, status: StepStatus, detail: str = "") -> None:
        self.steps.append(StepResult(step, status, detail))

    @property
    def failed(self) -> bool:
        return any(s.status is StepStatus.failed for s in self.steps)

    def status_of(self, step: str) -> StepStatus | None:
        for s in self.steps:
            if s.step == step:
                return s.status
        return None


@dataclass
class DeployReport:
    nodes: list[NodeReport]

    @property
    def ok(self) -> bool:
        return not any(n.failed for n in self.nodes)

    def node(self, name: str) -> NodeReport:
        return next(n for n in self.nodes if n.name == name)


# --- the bundle, as deploy needs it -------------------------------------------------


@dataclass(frozen=True)
class BundleSnap:
    name: str
    snap: Path
    assertion: Path
    revision: str | None

    @property
    def classic(self) -> bool:
        return self.name == "k8s"


@dataclass(frozen=True)
class Bundle:
    root: Path
    snaps: list[BundleSnap]
    archives: list[Path]
    images: list[ImageRef]

    def files_to_transfer(self) -> list[Path]:
        out: list[Path] = []
        for s in self.snaps:
            out += [s.assertion, s.snap]
        manifest = Layout(self.root).manifest
        if manifest.is_file():
            out.append(manifest)
        return out


_REVISION_RE = re.compile(r"^snap-revision: *(\d+) *$", re.M)


def _snap_order(name: str) -> tuple[int, str]:
    return (0 if name == "snapd" else 2 if name == "k8s" else 1, name)


def read_bundle(root: Path) -> Bundle:
    """The snaps (install order: snapd, base(s), k8s), archives and images of a bundle."""
    if not root.is_dir():
        raise AirgapError(
            f"{root}: bundle directory not found",
            resolution="Pass --bundle DIR, the directory `invoke prepare --bundle DIR` wrote.",
        )
    snaps = _manifest_snaps(root)
    if not snaps:
        for snap in Layout(root).snap_files():
            assertion = Layout.assertion_of(snap)
            if not assertion.is_file():
                raise AirgapError(
                    f"{snap}: no {assertion.name} next to it",
                    resolution="Snaps cannot be installed offline without their assertions; "
                    "download both with `invoke prepare` (snap download writes them).",
                )
            m = _REVISION_RE.search(assertion.read_text(errors="replace"))
            snaps.append(BundleSnap(snap.stem, snap, assertion, m.group(1) if m else None))
    snaps.sort(key=lambda s: _snap_order(s.name))
    archives = Layout(root).archives()
    images: list[ImageRef] = []
    lock = Layout(root).lock
    if lock.is_file():
        from airgap.lock import read_lock

        images = read_lock(lock).refs()
    return Bundle(root, snaps, archives, images)


def _manifest_snaps(root: Path) -> list[BundleSnap]:
    """The snaps manifest.json names: a stale snaps/*.snap left by an earlier prepare
    (an old base, say) is verified by nobody and must never be installed."""
    if not Layout(root).manifest.is_file():
        return []
    out = []
    for entry in read_manifest(root).snaps:
        snap, assertion = root / entry.file, root / entry.assertion
        for f in (snap, assertion):
            if not f.is_file():
                raise AirgapError(
                    f"{f}: named in {Layout(root).manifest} but missing",
                    resolution="Copy the whole bundle again, or re-run `invoke prepare`.",
                )
        out.append(BundleSnap(entry.name, snap, assertion, entry.revision or None))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()




@functools.lru_cache(maxsize=4)
def _archive_images(archives: tuple[Path, ...], platform: str) -> dict[str, str | None]:
    from airgap import sideload

    reports = sideload.validate_archives(list(archives), None, platform)
    return {img.name: img.digest for rep in reports for img in rep.images}


# What the side-load hook did on a node.
PRESENT = "present"  # every archived image already in the runtime; nothing sent
DELIVERED = "delivered"  # archives copied, containerd restarted, images confirmed
PENDING = "pending"  # archives copied; containerd is not running yet (real snap before
# bootstrap/join): the snap imports them when bootstrap or join starts it


def _default_deliver(plan: Plan, node: Node, archives: Sequence[Path]) -> str:
    """Side-load unless every archived image is already in the runtime with its digest."""
    from airgap import sideload

    want = _archive_images(tuple(archives), sideload.plan_platform(plan, None))
    ctr = sideload.ctr_command(node)
    res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
    found = sideload.parse_ctr_images(res.stdout) if res.ok else {}
    if want and all(n in found and d in (None, found[n]) for n, d in want.items()):
        return PRESENT
    [result] = sideload.deliver(plan, [node], archives)
    if result.pending:
        return PENDING
    if not result.ok:
        bad = [f"{r.image}: {r.status}" for r in result.rows if not r.ok]
        raise AirgapError(
            f"{node.name}: side-loading failed: {result.error or ', '.join(bad[:3])}",
            resolution="Check the archives with `invoke verify --bundle DIR` (it validates them "
            "against the runtime's rules), then run deploy again.",
        )
    return DELIVERED


def _default_confirm(
    plan: Plan,
    node: Node,
    archives: Sequence[Path],
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> tuple[StepStatus, str]:
    """After bootstrap/join started containerd: did it import every side-loaded image?"""
    from airgap import sideload

    want = _archive_images(tuple(archives), sideload.plan_platform(plan, None))
    rows = sideload.confirm_images(node, want, timeout=timeout, sleep=sleep, clock=clock)
    bad = [f"{r.image}: {r.status}" for r in rows if not r.ok]
    if bad:
        raise AirgapError(
            f"{node.name}: side-loaded images not in the runtime after {timeout:.0f} s: "
            + ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""),
            resolution=f"On {node.name}: `ls {SIDELOAD_DIR}` (imported archives are "
            "renamed *.tar.loaded) and `journalctl -u snap.k8s.containerd`; check the archives "
            "with `invoke verify --bundle DIR`, then run deploy again.",
        )
    return StepStatus.done, f"{len(rows)} image(s) imported into k8s.io, digests checked"


# --- one node's preparation ---------------------------------------------------------


def ensure_file(node: Node, f: RenderedFile) -> bool:
    """Write f unless the node already has exactly that content; True if written."""
    current = read_text(node, f.path)
    if current is not None and current.encode() == f.content:
        return False
    node.write(f.path, f.content, f.mode)
    return True


def ensure_files(node: Node, files: Iterable[RenderedFile]) -> list[str]:
    return [f.path for f in files if ensure_file(node, f)]


def _short(exc: AirgapError) -> str:
    if isinstance(exc, CommandError):
        last = (exc.stderr.strip() or exc.stdout.strip()).splitlines()[-1:]
        return f"{exc.brief}: {last[0]}" if last else exc.brief
    return exc.brief


def _remote_sums(node: Node, paths: Sequence[str]) -> dict[str, str]:
    if not paths:
        return {}
    res = node.run(["sha256sum", "--", *paths], check=False)
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            out[parts[1].lstrip("*")] = parts[0]
    return out


@dataclass
class _Context:
    plan: Plan
    bundle: Bundle
    local_sums: dict[Path, str]
    hosts_files: list[RenderedFile]
    proxy_files: list[RenderedFile]
    deliver: Callable[[Plan, Node, Sequence[Path]], str]


def _remote_path(bundle: Bundle, local: Path) -> str:
    return posixpath.join(REMOTE_BUNDLE, local.relative_to(bundle.root).as_posix())


class _NodeDeploy:
    """The per-node steps up to (not including) bootstrap and join."""

    def __init__(self, ctx: _Context, spec: PlanNode, node: Node) -> None:
        self.ctx = ctx
        self.spec = spec
        self.node = node
        self.report = NodeReport(spec.name, spec.role.value)
        self.snap_possible = False
        self.skip_reason = ""
        self.sideload_pending = False

    def _run(self, name: str, fn: Callable[[], tuple[StepStatus, str]]) -> bool:
        try:
            status, detail = fn()
        except AirgapError as exc:
            self.report.add(name, StepStatus.failed, _short(exc))
            self.report.errors.append(exc)
            return False
        self.report.add(name, status, detail)
        return True

    def prepare(self) -> bool:
        steps: list[tuple[str, Callable[[], tuple[StepStatus, str]]]] = [
            ("inspect", self.inspect),
            ("transfer", self.transfer),
            ("snaps", self.snaps),
            ("route", self.route),
            ("runtime", self.runtime),
        ]
        for n, (name, fn) in enumerate(steps):
            if not self._run(name, fn):
                for later, _ in steps[n + 1 :]:
                    self.report.add(later, StepStatus.not_run, f"{name} failed")
                return False
        return True

    def inspect(self) -> tuple[StepStatus, str]:
        self.report.stand_in = is_stand_in(self.node)
        has_snap = has_command(self.node, "snap")
        if self.ctx.bundle.snaps and has_snap:
            self.snap_possible = True
            return StepStatus.done, "snapd present" + (
                " (runtime stand-in marker present too)" if self.report.stand_in else ""
            )
        why = "the bundle has no snaps" if not self.ctx.bundle.snaps else "no snap command"
        if self.report.stand_in:
            self.skip_reason = f"{STAND_IN_REASON} ({why})"
            return StepStatus.done, f"runtime stand-in; {why}"
        if not has_snap:
            raise AirgapError(
                f"{self.spec.name}: snapd is not installed (no `snap` command)",
                resolution="Install snapd from the distribution's media (e.g. the snapd .deb) "
                "and run deploy again.",
            )
        raise AirgapError(
            f"{self.ctx.bundle.root}: the bundle has no snaps to install",
            resolution="Run `invoke prepare --bundle DIR` on the connected side "
            "(it downloads k8s, its base and snapd with their assertions).",
        )

    def transfer(self) -> tuple[StepStatus, str]:
        if not self.snap_possible:
            return StepStatus.skipped, self.skip_reason
        files = self.ctx.bundle.files_to_transfer()
        remote = {f: _remote_path(self.ctx.bundle, f) for f in files}
        have = _remote_sums(self.node, list(remote.values()))
        sent = []
        for f in files:
            if have.get(remote[f]) != self.ctx.local_sums[f]:
                self.node.put(f, remote[f], 0o600)
                sent.append(f)
        if not sent:
            return StepStatus.done, f"{len(files)} files already there, sha256 checked"
        arrived = _remote_sums(self.node, [remote[f] for f in sent])
        bad = [f.name for f in sent if arrived.get(remote[f]) != self.ctx.local_sums[f]]
        if bad:
            raise AirgapError(
                f"{self.spec.name}: {', '.join(bad)} arrived corrupted (sha256 differs)",
                resolution="Check free disk space on the node and run deploy again; "
                "the transfer is repeated for files that do not match.",
            )
        return StepStatus.changed, f"sent {len(sent)} of {len(files)} files, sha256 verified"

    def snaps(self) -> tuple[StepStatus, str]:
        if not self.snap_possible:
            return StepStatus.skipped, self.skip_reason
        installed: list[str] = []
        kept: list[str] = []
        for s in self.ctx.bundle.snaps:
            res = self.node.run(["snap", "list", s.name], check=False)
            rev = _snap_list_revision(res.stdout, s.name) if res.ok else None
            # snapd and the base snap: any installed revision will do (installing the
            # bundle's could downgrade the host); k8s: exactly the bundle's revision.
            if rev is not None and (s.name != "k8s" or s.revision in (None, rev)):
                kept.append(f"{s.name}={rev}")
                continue
            if s.name == "k8s" and rev is not None and s.revision is not None \
                    and rev.isdigit() and s.revision.isdigit() and int(rev) > int(s.revision):
                raise AirgapError(
                    f"{self.spec.name}: the node runs k8s revision {rev}, newer than the "
                    f"bundle's {s.revision}; refusing to downgrade",
                    resolution="Prepare a bundle from the channel the node runs (`invoke "
                    "prepare`), or, to downgrade on purpose, remove k8s from the node first "
                    "(`snap remove k8s`, which removes its cluster state) and deploy again.",
                )
            snap = _remote_path(self.ctx.bundle, s.snap)
            self.node.run(["snap", "ack", _remote_path(self.ctx.bundle, s.assertion)])
            argv = ["snap", "install", snap] + (["--classic"] if s.classic else [])
            self.node.run(argv, timeout=SNAP_INSTALL_TIMEOUT)
            installed.append(f"{s.name}={s.revision or '?'}")
        if not installed:
            return StepStatus.done, "installed: " + ", ".join(kept)
        return StepStatus.changed, "installed now: " + ", ".join(installed)

    def route(self) -> tuple[StepStatus, str]:
        from airgap.render.route import render_route

        rf = render_route(self.ctx.plan, self.spec)
        current = self.node.run(rf.check, check=False).stdout.strip()
        if " via " in f" {current} ":
            return StepStatus.skipped, f"a real default route exists ({current}); no placeholder"
        actions = []
        if not current:
            self.node.run(rf.command)
            actions.append(shlex.join(rf.command))
        written = ensure_files(self.node, rf.files)
        actions += [f"wrote {p}" for p in written]
        if not actions:
            return StepStatus.done, f"present ({current}) and persistent"
        return StepStatus.changed, "; ".join(actions)

    def runtime(self) -> tuple[StepStatus, str]:
        changes: list[str] = []
        written = ensure_files(self.node, self.ctx.hosts_files)
        if written:
            changes.append(f"hosts.d: {len(written)} file(s)")
        dropin = ensure_files(self.node, self.ctx.proxy_files)
        stale = "" if dropin or not self.ctx.proxy_files else self._dropin_not_applied()
        if dropin or stale:
            self.node.run(["systemctl", "daemon-reload"])
            changes.append(f"proxy drop-in{stale}")
        archives = self.ctx.bundle.archives
        outcome = (
            self.ctx.deliver(self.ctx.plan, self.node, archives)
            if self.ctx.plan.has(Mode.sideload) and archives
            else None
        )
        if outcome == DELIVERED:
            # deliver restarts the runtime itself (archives are imported only at start).
            changes.append(f"side-loaded {len(archives)} archive(s); containerd restarted")
        elif outcome == PENDING:
            self.sideload_pending = True
            changes.append(
                f"side-loaded {len(archives)} archive(s), pending: containerd is not running "
                "yet; it imports them when bootstrap/join starts it"
            )
        if (written or dropin or stale) and outcome != DELIVERED:
            # try-restart: a running containerd (stand-in, or an installed snap) picks
            # the change up now; one that is not running yet reads it when it starts.
            self.node.run(["systemctl", "try-restart", f"{CONTAINERD_UNIT}.service"])
            changes.append("containerd restarted")
        note = ""
        if self.ctx.plan.has(Mode.sideload) and not archives:
            others = ", ".join(m.value for m in self.ctx.plan.access if m is not Mode.sideload)
            note = ("; nothing side-loaded (the bundle has no images/*.tar; "
                    f"images come by {others})")
        if not changes:
            return StepStatus.done, "configuration unchanged; containerd not restarted" + note
        return StepStatus.changed, ", ".join(changes) + note

    def _dropin_not_applied(self) -> str:
        """Why an unchanged drop-in still needs daemon-reload + restart ("" if it does
        not): a run that wrote it and stopped before the reload or the restart leaves
        identical content behind."""
        unit = f"{CONTAINERD_UNIT}.service"
        res = self.node.run(["systemctl", "show", "-p", "NeedDaemonReload", unit], check=False)
        if _show_value(res.stdout, "NeedDaemonReload") == "yes":
            return " (written earlier, systemd not reloaded)"
        from airgap.render.proxy import proxy_environment

        res = self.node.run(["systemctl", "show", "-p", "Environment", unit], check=False)
        env = _show_value(res.stdout, "Environment")
        missing = [k for k, _ in proxy_environment(self.ctx.plan)
                   if not re.search(rf'(^|[\s"]){re.escape(k)}=', env)]
        if missing:
            return f" (written earlier, not in the unit's environment: {missing[0]})"
        return ""


def _show_value(stdout: str, key: str) -> str:
    """The value of KEY=VALUE in `systemctl show -p KEY` output."""
    for line in stdout.splitlines():
        if line.startswith(f"{key}="):
            return line[len(key) + 1 :].strip()
    return ""


def _snap_list_revision(stdout: str, name: str) -> str | None:
    """The Rev column of `snap list NAME` (header: Name Version Rev Tracking ...)."""
    for line in stdout.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[0] == name:
            return cols[2]
    return None


# --- the cluster: bootstrap, join, Ready --------------------------------------------


def _yaml(data: Mapping[str, object]) -> bytes:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=True).encode()


# `k8s bootstrap --file` starts from an empty config: only the no-file path turns these
# on, and k8sd's defaults leave network and dns off (no CNI: no node ever gets Ready).
BOOTSTRAP_FEATURES = ("network", "dns", "gateway", "local-storage")


def bootstrap_config(plan: Plan) -> RenderedFile:
    data: dict[str, object] = {
        "pod-cidr": plan.network.pod_cidr,
        "service-cidr": plan.network.service_cidr,
        "cluster-config": {f: {"enabled": True} for f in BOOTSTRAP_FEATURES},
    }
    if plan.k8s.containerd_base_dir:
        data["containerd-base-dir"] = plan.k8s.containerd_base_dir
    return RenderedFile(BOOTSTRAP_CONFIG, _yaml(data), 0o600)


def join_config(plan: Plan) -> RenderedFile | None:
    if not plan.k8s.containerd_base_dir:
        return None
    data = {"containerd-base-dir": plan.k8s.containerd_base_dir}
    return RenderedFile(JOIN_CONFIG, _yaml(data), 0o600)


@dataclass(frozen=True)
class ClusterNode:
    name: str
    addresses: frozenset[str]
    ready: bool
    version: str = ""  # kubelet's version
    images: tuple[tuple[str, ...], ...] = ()  # status.images[].names, as kubelet reports them


def parse_nodes(text: str) -> list[ClusterNode]:
    """`kubectl get node -o json` -> names, addresses, Ready, kubelet version, images."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return []
    out = []
    for item in doc.get("items", []):
        status = item.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        addrs = frozenset(a.get("address", "") for a in status.get("addresses", []))
        out.append(ClusterNode(
            item.get("metadata", {}).get("name", ""), addrs, ready,
            status.get("nodeInfo", {}).get("kubeletVersion", ""),
            tuple(tuple(i.get("names", [])) for i in status.get("images", [])),
        ))
    return out


def cluster_member(spec: PlanNode, members: Sequence[ClusterNode]) -> ClusterNode | None:
    """The cluster's node for a plan node: by name, else by its address (hostnames may differ)."""
    for m in members:
        if m.name == spec.name:
            return m
    for m in members:
        if spec.address in m.addresses:
            return m
    return None


def _cluster_nodes(node: Node) -> list[ClusterNode]:
    res = node.run(["k8s", "kubectl", "get", "node", "-o", "json"], check=False, timeout=60)
    return parse_nodes(res.stdout) if res.ok else []


def deploy(
    plan: Plan,
    nodes: Mapping[str, Node],
    bundle_dir: Path,
    *,
    verify: Callable[[Path], object] | None = None,
    trusted_root: Path | None = None,
    check_signatures: bool = True,
    deliver: Callable[[Plan, Node, Sequence[Path]], str] | None = None,
    confirm_timeout: float = 300.0,
    ready_timeout: float = READY_TIMEOUT,
    poll: float = READY_POLL,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    parallel: int = 8,
    on_progress: Callable[[str, str], None] | None = None,
) -> DeployReport:
    """Deploy the plan's nodes from ``bundle_dir``. Failures are in the report, not raised.

    Only input errors (bad bundle, bundle verification, unknown node) raise AirgapError,
    before any node is touched. The bundle is verified first, with ``trusted_root`` and
    ``check_signatures`` as `invoke verify` takes them (``verify`` replaces that check).
    """
    progress = on_progress or (lambda _node, _msg: None)
    if verify is not None:
        verify(bundle_dir)
    else:
        verify_bundle(bundle_dir, trusted_root, check_signatures)
    bundle = read_bundle(bundle_dir)
    specs = [n for n in plan.nodes if n.name in nodes]
    missing = [n for n in nodes if n not in {s.name for s in plan.nodes}]
    if missing:
        raise AirgapError(f"{plan.source}: no node named {missing[0]!r}")

    hosts_files: list[RenderedFile] = []
    if plan.has(Mode.mirror):
        from airgap.render.hosts import render_hosts_files

        if not bundle.images:
            raise AirgapError(
                f"{bundle_dir}: images.lock is missing or empty; mirror mode needs the list "
                "of upstream registries to write hosts.toml for",
                resolution="Run `invoke prepare --bundle DIR` to write images.lock.",
            )
        check_mirror_paths(plan, list(bundle.images))
        hosts_files = render_hosts_files(plan, registries(bundle.images), mirror_ca_pem(plan))
    if plan.has(Mode.sideload) and not bundle.archives and len(plan.access) == 1:
        # With proxy or mirror access too, images still arrive; the runtime step says
        # that nothing was side-loaded. With sideload alone, no image would.
        raise AirgapError(
            f"{bundle_dir}: no images/*.tar; the plan's only access mode is sideload, so "
            "no image would reach the nodes",
            resolution="Export the archives into the bundle with `invoke sideload --bundle "
            f"{bundle_dir}` (they go to {Layout(bundle_dir).images_dir}), or remove sideload from "
            "the plan's access.",
        )
    proxy_files: list[RenderedFile] = []
    if plan.has(Mode.proxy):
        from airgap.render.proxy import render_proxy_dropin

        proxy_files = [render_proxy_dropin(plan)]

    ctx = _Context(
        plan=plan,
        bundle=bundle,
        local_sums={f: _sha256(f) for f in bundle.files_to_transfer()},
        hosts_files=hosts_files,
        proxy_files=proxy_files,
        deliver=deliver or _default_deliver,
    )
    runs = {s.name: _NodeDeploy(ctx, s, nodes[s.name]) for s in specs}

    def prepare(run: _NodeDeploy) -> bool:
        progress(run.spec.name, "preparing")
        ok = run.prepare()
        progress(run.spec.name, "prepared" if ok else "failed")
        return ok

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(runs)))) as pool:
        prepared = dict(zip(runs, pool.map(prepare, runs.values()), strict=True))

    _cluster(plan, runs, prepared, ready_timeout, poll, sleep, clock, parallel, progress)
    for run in runs.values():
        if not prepared[run.spec.name]:
            step = "bootstrap" if run.spec.name == plan.control_plane.name else "join"
            run.report.add(step, StepStatus.not_run, "an earlier step on this node failed")
            run.report.add("ready", StepStatus.not_run, "an earlier step on this node failed")
    _confirm_sideloaded(ctx, runs, plan, confirm_timeout, sleep, clock, parallel, progress)
    return DeployReport([r.report for r in runs.values()])


SIDELOAD_STEP = "side-loaded images"


def _confirm_sideloaded(
    ctx: _Context,
    runs: Mapping[str, _NodeDeploy],
    plan: Plan,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    parallel: int,
    progress: Callable[[str, str], None],
) -> None:
    """Nodes whose archives were delivered before containerd ran (the real snap before
    bootstrap/join): bootstrap or join started it, so the images must be there now."""
    todo = []
    for run in runs.values():
        if not run.sideload_pending:
            continue
        step = "bootstrap" if run.spec.name == plan.control_plane.name else "join"
        if run.report.status_of(step) in (StepStatus.done, StepStatus.changed):
            todo.append(run)
        else:
            run.report.add(SIDELOAD_STEP, StepStatus.not_run, f"{step} did not complete")

    def one(run: _NodeDeploy) -> None:
        progress(run.spec.name, "confirming side-loaded images")
        run._run(SIDELOAD_STEP, lambda: _default_confirm(
            plan, run.node, ctx.bundle.archives, timeout, sleep, clock))

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo)))) as pool:
            list(pool.map(one, todo))


NOT_A_MEMBER = re.compile(r"not (part of|a member of) (a |any |the )?(kubernetes )?cluster"
                          r"|not bootstrapped", re.I)


def in_cluster(node: Node, name: str) -> bool:
    """Ask the node itself: `k8s status` also fails on a member whose API is not ready,
    and a joined node whose kubelet has not registered is missing from `get node`.
    Only a clear "not part of a cluster" means not done; anything else is an error."""
    res = node.run(["k8s", "local-node-status"], check=False, timeout=60)
    if res.ok:
        return True
    said = f"{res.stdout}\n{res.stderr}"
    if NOT_A_MEMBER.search(said):
        return False
    last = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["no output"]
    raise AirgapError(
        f"{name}: cannot tell whether the node is in a cluster "
        f"(`k8s local-node-status` exited {res.returncode}: {last[0]})",
        resolution=f"On {name}: `snap services k8s` (k8sd must be running) and "
        "`k8s local-node-status`; then run deploy again.",
    )


def _cluster(
    plan: Plan,
    runs: Mapping[str, _NodeDeploy],
    prepared: Mapping[str, bool],
    ready_timeout: float,
    poll: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    parallel: int,
    progress: Callable[[str, str], None],
) -> None:
    first = next((s for s in plan.nodes if s.role is Role.control_plane and s.name in runs), None)
    if first is None or plan.control_plane.name != first.name:
        # Joining needs the bootstrap node; deploying a subset without it cannot join.
        boot_name = plan.control_plane.name
        for run in runs.values():
            if prepared[run.spec.name]:
                run.report.add(
                    "join", StepStatus.not_run, f"the bootstrap node {boot_name} is not deployed"
                )
        return
    boot = runs[first.name]
    others = [r for r in runs.values() if r.spec.name != first.name]

    def skip_all(reason: str, status: StepStatus = StepStatus.skipped) -> None:
        for run in runs.values():
            if not prepared[run.spec.name]:
                continue
            step = "bootstrap" if run is boot else "join"
            if run.report.status_of(step) is None:
                run.report.add(step, status, reason)
            run.report.add("ready", status, reason)

    if not prepared[first.name]:
        skip_all(f"the bootstrap node {first.name} failed", StepStatus.not_run)
        return
    if boot.skip_reason:
        skip_all(boot.skip_reason)
        return

    # Bootstrap.
    def do_bootstrap() -> tuple[StepStatus, str]:
        if in_cluster(boot.node, first.name):
            return StepStatus.done, "already bootstrapped"
        cfg = bootstrap_config(plan)
        ensure_file(boot.node, cfg)
        progress(first.name, "bootstrapping")
        # --name: the Kubernetes node name is the plan's, not whatever the hostname is.
        boot.node.run(
            ["k8s", "bootstrap", "--name", first.name, "--address", first.address,
             "--file", cfg.path],
            timeout=BOOTSTRAP_TIMEOUT,
        )
        return StepStatus.changed, f"bootstrapped at {first.address}"

    if not boot._run("bootstrap", do_bootstrap):
        skip_all(f"bootstrap on {first.name} failed", StepStatus.not_run)
        return

    joinable: list[_NodeDeploy] = []
    for run in others:
        if not prepared[run.spec.name]:
            continue
        if run.skip_reason:
            run.report.add("join", StepStatus.skipped, run.skip_reason)
            continue
        try:
            member = in_cluster(run.node, run.spec.name)
        except AirgapError as exc:
            run.report.add("join", StepStatus.failed, _short(exc))
            run.report.errors.append(exc)
            continue
        if member:
            run.report.add("join", StepStatus.done, "already a cluster member")
            continue
        joinable.append(run)

    # Tokens first, one at a time on the bootstrap node; then joins: workers in
    # parallel, control planes one at a time (each changes the datastore membership).
    tokens: dict[str, str] = {}
    for run in joinable:
        def make_token(run: _NodeDeploy = run) -> tuple[StepStatus, str]:
            worker = run.spec.role is Role.worker
            argv = ["k8s", "get-join-token", run.spec.name] + (["--worker"] if worker else [])
            token = boot.node.run(argv, timeout=120).stdout.strip()
            if not token:
                raise AirgapError(f"{first.name}: `k8s get-join-token` printed no token")
            tokens[run.spec.name] = token
            return StepStatus.changed, f"made on {first.name}"

        run._run("join token", make_token)

    def do_join(run: _NodeDeploy) -> None:
        def step() -> tuple[StepStatus, str]:
            # --name: the token is made for the plan's name; without --name join-cluster
            # sends the hostname, and k8sd rejects a token made for another name.
            args = ["--name", run.spec.name, "--address", run.spec.address]
            jcfg = join_config(plan)
            if jcfg is not None:
                ensure_file(run.node, jcfg)
                args += ["--file", jcfg.path]
            progress(run.spec.name, "joining")
            run.node.run(
                ["sh", "-c", JOIN_SCRIPT, "k8s-join", *args],
                input=tokens[run.spec.name].encode(),
                timeout=JOIN_TIMEOUT,
            )
            worker = run.spec.role is Role.worker
            return StepStatus.changed, "joined as " + ("worker" if worker else "control plane")

        run._run("join", step)

    with_token = [r for r in joinable if r.spec.name in tokens]
    for run in joinable:
        if run.spec.name not in tokens:
            run.report.add("join", StepStatus.not_run, "no join token")
    for run in [r for r in with_token if r.spec.role is Role.control_plane]:
        do_join(run)
    workers = [r for r in with_token if r.spec.role is Role.worker]
    if workers:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(workers)))) as pool:
            list(pool.map(do_join, workers))

    # Ready.
    waiting = [
        r
        for r in runs.values()
        if prepared[r.spec.name]
        and not r.skip_reason
        and r.report.status_of("join" if r is not boot else "bootstrap")
        in (StepStatus.done, StepStatus.changed)
    ]
    for r in runs.values():
        if prepared[r.spec.name] and r not in waiting and r.report.status_of("ready") is None:
            reason = r.skip_reason or "not a cluster member"
            status = StepStatus.skipped if r.skip_reason else StepStatus.not_run
            r.report.add("ready", status, reason)
    _wait_ready(boot.node, waiting, ready_timeout, poll, sleep, clock, progress)


def _wait_ready(
    boot: Node,
    waiting: Sequence[_NodeDeploy],
    timeout: float,
    poll: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    progress: Callable[[str, str], None],
) -> None:
    if not waiting:
        return
    deadline = clock() + timeout
    start = clock()
    pending = {r.spec.name: r for r in waiting}
    last: list[ClusterNode] = []
    while True:
        last = _cluster_nodes(boot)
        for name, run in list(pending.items()):
            m = cluster_member(run.spec, last)
            if m is not None and m.ready:
                run.report.add("ready", StepStatus.done, f"Ready after {clock() - start:.0f} s")
                del pending[name]
        if not pending or clock() >= deadline:
            break
        for name in pending:
            progress(name, "waiting for Ready")
        sleep(poll)
    for run in pending.values():
        m = cluster_member(run.spec, last)
        seen = "listed, not Ready" if m is not None else "not listed"
        exc = AirgapError(
            f"{run.spec.name}: not Ready after {timeout:.0f} s ({seen})",
            resolution=f"On {run.spec.name}: `k8s status` and `journalctl -u snap.k8s.*`; "
            "then run deploy again (finished steps are skipped).",
        )
        run.report.add("ready", StepStatus.failed, exc.brief)
        run.report.errors.append(exc)


# --- output -------------------------------------------------------------------------

_STYLE = {
    StepStatus.done: "green",
    StepStatus.changed: "cyan",
    StepStatus.skipped: "yellow",
    StepStatus.failed: "bold red",
    StepStatus.not_run: "dim",
}


def report_tables(report: DeployReport) -> list[Any]:
    """One rich Table per node."""
    from rich.table import Table

    tables = []
    for n in report.nodes:
        title = f"{n.name} ({n.role}{', runtime stand-in' if n.stand_in else ''})"
        t = Table(title=title, title_justify="left")
        t.add_column("step")
        t.add_column("result")
        t.add_column("detail", overflow="fold")
        for s in n.steps:
            t.add_row(s.step, f"[{_STYLE[s.status]}]{s.status.value}[/]", s.detail)
        tables.append(t)
    return tables
