"""One node's steps up to (not including) bootstrap and join: inspect, transfer,
snaps, route, runtime. Each observes the node first and acts only when the step is not
done, so a re-run after success changes nothing."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Sequence

from airgap.deploy.context import DELIVERED, PENDING, Context, remote_path
from airgap.deploy.members import in_cluster
from airgap.deploy.report import NodeReport, StepStatus
from airgap.deploy.snapstep import (
    HOLD_RENEW_DAYS,
    NOT_TRUSTED,
    SnapRow,
    ack,
    hold_refreshes,
    hold_state,
    installed_sha3,
    k8s_decision,
    snap_row,
)
from airgap.errors import AirgapError, CommandError
from airgap.nodes import Node, has_command, read_text
from airgap.plan import CONTAINERD_UNIT, Mode
from airgap.plan import Node as PlanNode
from airgap.render import RenderedFile
from airgap.render.proxy import proxy_environment
from airgap.render.route import render_route

SNAP_INSTALL_TIMEOUT = 900.0


def ensure_file(node: Node, f: RenderedFile) -> bool:
    """Write f unless the node already has exactly that content; True if written."""
    current = read_text(node, f.path)
    if current is not None and current.encode() == f.content:
        return False
    node.write(f.path, f.content, f.mode)
    return True


def ensure_files(node: Node, files: Iterable[RenderedFile]) -> list[str]:
    return [f.path for f in files if ensure_file(node, f)]


def running_cluster_refusal(node: str, change: str) -> AirgapError:
    """deploy never changes the revision of a cluster member: a refresh that is not
    planned would restart every node's runtime at once, before the new revision's images
    are in place."""
    return AirgapError(
        f"{node}: is a member of a running cluster, and the bundle would change its k8s "
        f"({change}); deploy does not change a running cluster's revision",
        resolution="Upgrade with `invoke upgrade --plan PLAN --bundle BUNDLE` (new images "
        "in place first, then one node at a time), or deploy the bundle the cluster runs "
        "(`invoke status --plan PLAN` names it).",
    )


def short_error(exc: AirgapError) -> str:
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


class NodeDeploy:
    """The per-node steps up to (not including) bootstrap and join."""

    def __init__(self, ctx: Context, spec: PlanNode, node: Node) -> None:
        self.ctx = ctx
        self.spec = spec
        self.node = node
        self.report = NodeReport(spec.name, spec.role.value)
        self.sideload_pending = False

    def run_step(self, name: str, fn: Callable[[], tuple[StepStatus, str]]) -> bool:
        try:
            status, detail = fn()
        except AirgapError as exc:
            self.report.add(name, StepStatus.failed, short_error(exc))
            self.report.errors.append(exc)
            return False
        self.report.add(name, status, detail)
        return True

    def prepare(self) -> bool:
        steps: list[tuple[str, Callable[[], tuple[StepStatus, str]]]] = [
            ("inspect", self.inspect),
            ("transfer", self.transfer),
            ("snaps", self.snaps),
            ("hold", self.hold),
            ("route", self.route),
            ("runtime", self.runtime),
        ]
        for n, (name, fn) in enumerate(steps):
            if not self.run_step(name, fn):
                for later, _ in steps[n + 1 :]:
                    self.report.add(later, StepStatus.not_run, f"{name} failed")
                return False
        return True

    def inspect(self) -> tuple[StepStatus, str]:
        if not has_command(self.node, "snap"):
            raise AirgapError(
                f"{self.spec.name}: snapd is not installed (no `snap` command)",
                resolution="Install snapd from the distribution's media (e.g. the snapd .deb) "
                "and run deploy again.",
            )
        if not self.ctx.bundle.snaps:
            raise AirgapError(
                f"{self.ctx.bundle.root}: the bundle has no snaps to install",
                resolution="Run `invoke prepare --bundle DIR` on the connected side "
                "(it downloads k8s, its base and snapd with their assertions).",
            )
        return StepStatus.done, "snapd present"

    def transfer(self) -> tuple[StepStatus, str]:
        files = self.ctx.bundle.files_to_transfer()
        remote = {f: remote_path(self.ctx.bundle, f) for f in files}
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
        installed: list[str] = []
        kept: list[str] = []
        for s in self.ctx.bundle.snaps:
            row = snap_row(self.node, s.name)
            action = "install" if row is None else "keep"
            what = f"{s.name}={row.rev}" if row else f"{s.name}={s.revision or '?'}"
            if s.name == "k8s":
                # snapd and the base: any installed revision will do (installing the
                # bundle's could downgrade the host); k8s: the bundle's, never older.
                d = k8s_decision(self.spec.name, row, s, self._sha3_of(row), s.version)
                action, what = d.action, d.detail
                if (action == "refresh" and not self.ctx.refresh
                        and in_cluster(self.node, self.spec.name)):
                    raise running_cluster_refusal(self.spec.name, d.detail)
            if action == "keep":
                kept.append(what)
                continue
            trusted = ack(self.spec.name, self._try, remote_path(self.ctx.bundle, s.assertion),
                          s.name, self.ctx.dangerous)
            argv = ["snap", "install", remote_path(self.ctx.bundle, s.snap)]
            argv += ["--classic"] if s.classic else []
            argv += [] if trusted else ["--dangerous"]
            self.node.run(argv, timeout=SNAP_INSTALL_TIMEOUT)
            now = snap_row(self.node, s.name)
            rev = now.rev if now else "?"
            if not trusted:
                self.report.dangerous.append(s.name)
            note = "" if trusted else f" ({NOT_TRUSTED})"
            verb = "refreshed" if action == "refresh" else "installed"
            installed.append(f"{s.name}={rev} {verb}{note}" if s.name != "k8s" or
                             action == "install" else f"{what}: {verb}, now {rev}{note}")
        if not installed:
            return StepStatus.done, "installed: " + ", ".join(kept)
        return StepStatus.changed, "; ".join(installed)

    def _sha3_of(self, row: SnapRow | None) -> Callable[[], str]:
        return lambda: installed_sha3(self.node, row) if row else ""

    def _try(self, argv: list[str]) -> tuple[bool, str]:
        res = self.node.run(argv, check=False)
        return res.ok, res.stderr or res.stdout

    def hold(self) -> tuple[StepStatus, str]:
        """Automatic refreshes held: the store is unreachable, and a refresh must be an
        operator's decision (FACTS: snapd retries and logs; an upgrade is planned)."""
        held, how = hold_state(self.node, renew_within=HOLD_RENEW_DAYS)
        if held:
            return StepStatus.done, how
        return StepStatus.changed, hold_refreshes(self.node, self.spec.name)

    def route(self) -> tuple[StepStatus, str]:
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
            # try-restart: a running containerd (the installed snap's) picks
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
