"""The failure catalogue's causes: how each is induced in the lab, which check must
catch it (run as a user types it), and how it is undone (lab/proof/catalogue.py runs
them). Clock skew is simulated at the check's input: an LXD container shares the
host's clock."""


from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airgap.bundle import Bundle, read_manifest, verify_bundle, write_manifest
from airgap.bundle.signing import sign_manifest
from airgap.bundle.verify import SignerPolicy
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.nodes import Node
from airgap.nodes import build as nodeset
from airgap.plan import Plan, load_plan
from airgap.plan.lock import read_lock
from airgap.preflight import preflight
from airgap.preflight.report import CheckStatus, PreflightReport
from airgap.render.route import render_route
from lab.lxd import TRANSPORTS, LXDNode
from lab.roles.proxy import squid_conf
from lab.topology import LabSpec

SEED_HOSTS_TOML = """server = https://10.10.10.10:5050/v2/my/own/ghcr.io
[host."https://10.10.10.10:5050/v2/my/own/ghcr.io"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt"
override_path = true
"""  # the upstream procedure's nested-path example, verbatim: `server` unquoted
SKEW = 600.0  # seconds, simulated at the clock check's input
NODE_SKEW = 300.0  # seconds between the nodes' clocks, simulated at the check's input
REJECT = "iptables {op} INPUT -p tcp --dport 10250 -j REJECT --reject-with tcp-reset"
VXLAN_DROP = "iptables {op} INPUT -p udp --dport 8472 -j DROP"


@dataclass
class Lab:
    """What the cases act on."""

    spec: LabSpec
    plan: Plan
    plan_file: Path
    nodes: dict[str, Node]
    lxd: dict[str, LXDNode]
    bundle: Path
    trusted_root: Path
    signers: SignerPolicy
    work: Path
    keys: Any
    other_ca: str  # a CA that did not sign the mirror's certificate


@dataclass
class Outcome:
    exit_code: int
    message: str
    fix: str
    failed: bool  # the expected check failed


def _invoke(*args: str, timeout: float = 300) -> tuple[int, str]:
    """A task as a user types it: its exit code, and its last "Error:" line (else its
    last line of output)."""
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[2])
    lines = (proc.stderr + proc.stdout).strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    return proc.returncode, (errors or lines or [""])[-1]


def preflight_case(lab: Lab, check: str, node: str, *, plan_file: Path | None = None,
                   also: tuple[str, ...] = (), clock: Callable[[], float] | None = None,
                   skew: Mapping[str, float] | None = None) -> Callable[[], Outcome]:
    """Run preflight on ``node`` (and ``also``: the ports and the clocks between nodes
    need both ends in the run); ``check``: the prefix of the check on ``node`` that must
    fail. ``clock``/``skew``: simulated at the check's input (the task cannot take them:
    the exit code is then the one the task returns for such a report)."""
    def run() -> Outcome:
        pfile = plan_file or lab.plan_file
        plan = load_plan(pfile)
        names = [node, *also]
        nodes = nodeset.build_nodes(plan, names, transports=TRANSPORTS)
        report = preflight(plan, nodes, bundle=lab.bundle, clock=clock or time.time,
                           clock_skew=skew)
        bad = [c for c in report.node(node).checks
               if c.status is CheckStatus.fail and c.name.startswith(check)]
        if clock is not None or skew is not None:
            code = 1 if _failed(report) else 0
        else:
            code, _ = _invoke("preflight", "--plan", str(pfile), *(
                a for n in names for a in ("--node", n)), "--bundle", str(lab.bundle),
                "--allowed-signers", str(lab.keys.allowed))
        first = bad[0] if bad else None
        return Outcome(code, f"{first.name}: {first.detail}" if first else "-",
                       first.fix if first else "-", bool(bad))
    return run


def _failed(report: PreflightReport) -> bool:
    return any(n.failed for n in report.nodes)


def verify_case(lab: Lab, must: str, bundle: Path) -> Callable[[], Outcome]:
    def run() -> Outcome:
        code, line = _invoke("verify", "--bundle", str(bundle), "--trusted-root",
                             str(lab.trusted_root), "--allowed-signers", str(lab.keys.allowed))
        try:
            verify_bundle(bundle, trusted_root=lab.trusted_root, signers=lab.signers)
            return Outcome(code, line or "-", "-", False)
        except AirgapError as exc:
            rows = getattr(getattr(exc, "report", None), "failures", [])
            detail = "; ".join(f"{r.path}: {r.detail}" for r in rows) or exc.brief
            return Outcome(code, detail, exc.resolution or "-", must in f"{detail} {exc}")
    return run


@dataclass(frozen=True)
class Cause:
    cause: str
    check: str
    induce: Callable[[Lab], str]
    undo: Callable[[Lab], object]
    run: Callable[[Lab], Callable[[], Outcome]]
    note: str = ""
    # The check once the cause is undone, where it differs from ``run`` (a cause made at
    # the check's input: the plan's copy, the simulated clock).
    rerun: Callable[[Lab], Callable[[], Outcome]] | None = None


def _sh(lab: Lab, node: str, script: str) -> str:
    """Run script on the node; what was done, for the report."""
    lab.nodes[node].run(["sh", "-c", script], timeout=60)
    return f"`{script}` on {node}"


def _write(lab: Lab, node: str, path: str, text: str) -> str:
    lab.nodes[node].write(path, text.encode())
    return f"wrote {path} on {node}"


def causes() -> list[Cause]:
    hosts = "/etc/containerd/hosts.d/ghcr.io/hosts.toml"
    return [
        Cause("a broken hosts.toml on a node (the upstream procedure's unquoted server)",
              "invoke preflight --node node-1",
              lambda lab: _write(lab, "node-1", hosts, SEED_HOSTS_TOML)
              + " (the procedure's nested-path example)",
              lambda lab: _sh(lab, "node-1", f"rm -f {hosts}"),
              lambda lab: preflight_case(lab, "hosts.toml", "node-1")),
        Cause("no default route on a node", "invoke preflight --node node-2",
              lambda lab: _sh(lab, "node-2", "ip route del default"),
              lambda lab: placeholder_route(lab, "node-2"),
              lambda lab: preflight_case(lab, "default route", "node-2")),
        Cause("the proxy refuses CONNECT to a registry", "invoke preflight --node node-1",
              lambda lab: _squid_without(lab, "ghcr.io"),
              lambda lab: _squid_restore(lab),
              lambda lab: preflight_case(lab, "proxy -> ghcr.io", "node-1")),
        Cause("the plan names the wrong mirror CA", "invoke preflight --node node-1",
              lambda lab: _wrong_ca_plan(lab),
              lambda lab: None,
              lambda lab: preflight_case(lab, "mirror", "node-1",
                                         plan_file=lab.plan_file.parent
                                         / "airgap-wrong-ca.yaml"),
              rerun=lambda lab: preflight_case(lab, "mirror", "node-1")),
        Cause("a k8s port dropped by a firewall (DROP)", "invoke preflight --node node-1",
              lambda lab: _sh(lab, "node-2", "iptables -I INPUT -p tcp --dport 10250 -j DROP"),
              lambda lab: _sh(lab, "node-2", "iptables -D INPUT -p tcp --dport 10250 -j DROP"),
              lambda lab: preflight_case(lab, "ports -> node-2", "node-1", also=("node-2",))),
        Cause("the node's clock off by 10 minutes", "invoke preflight --node node-1",
              lambda lab: f"simulated at the check's input: this machine's clock read {SKEW:.0f} s "
                          "ahead (an LXD container shares the host's clock)",
              lambda lab: None,
              lambda lab: preflight_case(lab, "clock", "node-1",
                                         clock=lambda: time.time() + SKEW),
              note="simulated at the check's input",
              rerun=lambda lab: preflight_case(lab, "clock", "node-1")),
        Cause("a k8s port rejected with a TCP reset (REJECT)",
              "invoke preflight --node node-1 --node node-2",
              lambda lab: _sh(lab, "node-2", REJECT.format(op="-I")),
              lambda lab: _sh(lab, "node-2", REJECT.format(op="-D")),
              lambda lab: preflight_case(lab, "ports -> node-2", "node-1", also=("node-2",))),
        Cause("8472/udp (VXLAN) dropped between the nodes",
              "invoke preflight --node node-1 --node node-2",
              lambda lab: _sh(lab, "node-2", VXLAN_DROP.format(op="-I")),
              lambda lab: _sh(lab, "node-2", VXLAN_DROP.format(op="-D")),
              lambda lab: preflight_case(lab, "8472/udp -> node-2", "node-1",
                                         also=("node-2",))),
        Cause("an image of images.lock missing from the mirror",
              "invoke preflight --node node-1 --bundle B",
              lambda lab: _partial_mirror(lab),
              lambda lab: None,
              lambda lab: preflight_case(lab, "mirror images", "node-1",
                                         plan_file=lab.plan_file.parent / "airgap-partial.yaml"),
              rerun=lambda lab: preflight_case(lab, "mirror images", "node-1")),
        Cause("a node whose plan address is not its own (a typo)",
              "invoke preflight --node node-2",
              lambda lab: _typo_plan(lab),
              lambda lab: None,
              lambda lab: preflight_case(lab, "plan address", "node-2",
                                         plan_file=lab.plan_file.parent / "airgap-typo.yaml"),
              rerun=lambda lab: preflight_case(lab, "plan address", "node-2")),
        Cause("the nodes' clocks 5 minutes apart", "invoke preflight --node node-1 --node node-2",
              lambda lab: f"simulated at the check's input: node-2's time read {NODE_SKEW:.0f} s "
                          "ahead (LXD containers share the host's clock)",
              lambda lab: None,
              lambda lab: preflight_case(lab, "clock between nodes", "node-1", also=("node-2",),
                                         skew={"node-2": NODE_SKEW}),
              note="simulated at the check's input",
              rerun=lambda lab: preflight_case(lab, "clock between nodes", "node-1",
                                               also=("node-2",))),
        Cause("a small separate filesystem for /var/snap", "invoke preflight --node node-1",
              lambda lab: _sh(lab, "node-1", "mkdir -p /var/snap && "
                              "mount -t tmpfs -o size=1m tmpfs /var/snap"),
              lambda lab: _sh(lab, "node-1", "umount /var/snap"),
              lambda lab: preflight_case(lab, "disk /var/snap", "node-1")),
        Cause("a compressed archive (.tar.gz) beside the side-load archives", "invoke verify",
              lambda lab: _with_tar_gz(lab),
              lambda lab: None,
              lambda lab: verify_case(lab, ".tar.gz", lab.work / "bundle-tar-gz")),
        Cause("the bundle's manifest omits snapd", "invoke verify",
              lambda lab: _without_snapd(lab),
              lambda lab: None,
              lambda lab: verify_case(lab, "snapd", lab.work / "bundle-no-snapd")),
    ]


def placeholder_route(lab: Lab, name: str) -> None:
    """What deploy's route step does (and preflight's fix says): the gateway-less
    default route, now and in its persistent file."""
    spec = lab.plan.node(name)
    rf = render_route(lab.plan, spec)
    node = lab.nodes[name]
    if not node.run(rf.check, check=False).stdout.strip():
        node.run(rf.command)
    for f in rf.files:
        node.write(f.path, f.content, f.mode)


def _squid_without(lab: Lab, registry: str) -> str:
    proxy = LXDNode("proxy", project=lab.spec.project)
    conf = squid_conf(lab.spec)
    lines = [(" ".join(w for w in line.split() if w != registry)
              if line.startswith("acl upstream_registries") else line)
             for line in conf.splitlines()]
    proxy.write("/etc/squid/squid.conf", ("\n".join(lines) + "\n").encode())
    proxy.run(["squid", "-k", "reconfigure"], timeout=60)
    time.sleep(2)
    return f"squid's allow-list without {registry} (squid -k reconfigure)"


def _squid_restore(lab: Lab) -> None:
    proxy = LXDNode("proxy", project=lab.spec.project)
    proxy.write("/etc/squid/squid.conf", squid_conf(lab.spec).encode())
    proxy.run(["squid", "-k", "reconfigure"], timeout=60)
    time.sleep(2)


def _wrong_ca_plan(lab: Lab) -> str:
    """A copy of the plan whose mirror CA is another CA of the lab (the simulated public
    one): the mirror's certificate does not chain to it."""
    doc = yaml.safe_load(lab.plan_file.read_text())
    doc["mirror"]["ca_file"] = lab.other_ca
    # Beside the plan: its relative paths (images.files) resolve the same.
    write_atomic(lab.plan_file.parent / "airgap-wrong-ca.yaml",
                 yaml.safe_dump(doc, sort_keys=False))
    return f"a copy of the plan with mirror.ca_file: {lab.other_ca} (the lab's other CA)"


def _plan_copy(lab: Lab, name: str, change: Callable[[dict[str, Any]], str]) -> str:
    """A copy of the plan, beside it (its relative paths resolve the same), changed."""
    doc = yaml.safe_load(lab.plan_file.read_text())
    what = change(doc)
    write_atomic(lab.plan_file.parent / name, yaml.safe_dump(doc, sort_keys=False))
    return f"a copy of the plan with {what}"


def _partial_mirror(lab: Lab) -> str:
    """The bundle's images but one pushed under another path of the mirror, and a plan
    copy whose mirror is that path."""
    from airgap.mirror.from_bundle import push_bundle
    from airgap.plan.lock import ImageLock

    lock = read_lock(Bundle(lab.bundle).lock)
    left_out = lock.images[-1]
    plan = _plan_copy(lab, "airgap-partial.yaml",
                      lambda d: (d["mirror"].__setitem__("path_prefix", "partial"),
                                 "mirror.path_prefix: partial")[1])
    partial = load_plan(lab.plan_file.parent / "airgap-partial.yaml")
    push_bundle(partial, lab.bundle, ImageLock(lock.platforms, lock.images[:-1]))
    return f"{plan}, where `mirror --from-bundle` pushed every image but {left_out.ref}"


def _typo_plan(lab: Lab) -> str:
    def change(doc: dict[str, Any]) -> str:
        node = next(n for n in doc["nodes"] if n["name"] == "node-2")
        head, _, _ = node["address"].rpartition(".")
        node["address"] = f"{head}.99"  # in the node subnet, no machine has it
        return f"node-2's address {node['address']} (a typo)"
    return _plan_copy(lab, "airgap-typo.yaml", change)


def _with_tar_gz(lab: Lab) -> str:
    """A copy of the bundle with a gzip'd archive beside the archives, listed in the
    manifest and signed again: only the runtime's rule can refuse it."""
    import gzip
    from dataclasses import replace

    from airgap.snaps import hash_file

    bad = lab.work / "bundle-tar-gz"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(lab.bundle, bad, symlinks=True)
    layout = Bundle(bad)
    layout.images_dir.mkdir(exist_ok=True)
    first = sorted(layout.images_dir.glob("*.tar"))
    data = first[0].read_bytes() if first else b"not an archive"
    target = layout.images_dir / "extra.tar.gz"
    target.write_bytes(gzip.compress(data))
    m = read_manifest(bad)
    write_manifest(bad, replace(m, files={**m.files, layout.rel(target): hash_file(target)}))
    sign_manifest(bad, lab.keys.key)
    return f"{layout.rel(target)} added to a copy of the bundle, listed and signed again"


def _without_snapd(lab: Lab) -> str:
    bad = lab.work / "bundle-no-snapd"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(lab.bundle, bad, symlinks=True)
    m = read_manifest(bad)
    snapd = next(s for s in m.snaps if s.name == "snapd")
    files = {p: d for p, d in m.files.items() if p not in (snapd.file, snapd.assertion)}
    for rel in (snapd.file, snapd.assertion):
        (bad / rel).unlink()
    from dataclasses import replace

    write_manifest(bad, replace(m, files=files, snaps=[s for s in m.snaps if s is not snapd]))
    sign_manifest(bad, lab.keys.key)
    return "a copy of the bundle without snapd in its manifest, signed again by the site key"


