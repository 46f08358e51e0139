"""The fourth mode, offline-mirror: the full air gap, where nothing on the inside reaches
any upstream and everything crosses on media.

The bundle is signed on the connected side (an SSH key made for the run) and packed into
parts. The inside admin host is a network namespace on this machine whose only link is a
port on the lab's air-gapped bridge: it reaches the lab registry and nothing else (no
default route, no proxy in its environment, and squid stopped for this mode). It gets
the parts by file copy, and runs the product's own tasks as a site would type them:
`invoke unpack` (every part checked, then the bundle verified against its signature),
`invoke mirror --from-bundle` into the lab registry under a path of its own, so that
only this mode can have filled it. Then every node is configured for that mirror by
`deploy` and pulls every image of images.lock through the CRI.

Five negative cases, each refused before anything is pushed or installed (the
negative prefix of the registry stays empty): one flipped byte in one blob, a bundle
signed by a key that is not allowed, an unsigned bundle, a missing part, a damaged part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from airgap import process
from airgap.errors import AirgapError
from airgap.nodes import LocalNode, Node
from lab.network import inside_links, inside_netns, remove_inside_host
from lab.proof.evidence import CURL_NO_CONNECTION, _evidence, isolation_checks
from lab.proof.steps import Steps
from lab.report import ClusterNodeRecord, IsolationRecord, NegativeRecord, PullRecord, Report
from lab.topology import PROXY_PORT, LabSpec

MODE = "offline-mirror"
PREFIX = "offline"
NEGATIVE_PREFIX = "negative"
PART_SIZE = "1M"
ROOT = Path(__file__).resolve().parents[2]  # where tasks.py is: the tasks run as typed
PRINCIPAL = "bundle-signer@k8s-airgap-lab"


@contextlib.contextmanager
def inside_host(spec: LabSpec) -> Iterator[LocalNode]:
    """A namespace with one port on the air-gapped bridge, an address of the lab's, and
    no default route; removed afterwards (lab.down removes a leftover too)."""
    ns = inside_netns(spec)
    host_end, ns_end = inside_links(spec)
    addr = f"{spec.airgap_subnet.network_address + 250}/{spec.airgap_subnet.prefixlen}"
    remove_inside_host(spec)
    steps = [["ip", "netns", "add", ns],
             ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end],
             ["ip", "link", "set", ns_end, "netns", ns],
             ["ip", "link", "set", host_end, "master", spec.airgap_bridge],
             ["ip", "link", "set", host_end, "up"],
             ["ip", "-n", ns, "addr", "add", addr, "dev", ns_end],
             ["ip", "-n", ns, "link", "set", ns_end, "up"],
             ["ip", "-n", ns, "link", "set", "lo", "up"]]
    try:
        for argv in steps:
            process.run(argv, timeout=30)
        # No proxy in its environment either (the connected side's is not inherited).
        no_proxy = dict.fromkeys(("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                  "NO_PROXY", "no_proxy"), "")
        yield LocalNode(name="inside-admin", netns=ns, extra_env=no_proxy)
    finally:
        remove_inside_host(spec)


def inside_isolation(node: LocalNode, spec: LabSpec) -> list[IsolationRecord]:
    """No name, no route, no direct connection to the upstream, and no proxy either."""
    rows = [r for r in isolation_checks(node, spec, f"{MODE}, inside admin host")
            if "through the proxy" not in r.check]
    prx = spec.member("proxy").airgap
    r = node.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", "--proxy",
                  f"http://{prx}:{PROXY_PORT}", "https://ghcr.io/v2/"], check=False, timeout=30)
    rows.append(_evidence(
        node.name, f"{MODE}, inside admin host: no proxy either (squid stopped)", r,
        r.returncode in CURL_NO_CONNECTION,
        f"curl --proxy {prx}:{PROXY_PORT} https://ghcr.io/v2/: exit {r.returncode}: "
        + (r.stderr.strip().splitlines() or [""])[-1]))
    return rows


@dataclass(frozen=True)
class Keys:
    key: Path
    allowed: Path
    other: Path  # a key nobody allowed


def make_keys(work: Path) -> Keys:
    """An ed25519 signing key for the run, its allowed-signers file, and a stranger's key."""
    keys = work / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("site", "stranger"):
        (keys / name).unlink(missing_ok=True)
        (keys / f"{name}.pub").unlink(missing_ok=True)
        process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                     "-f", str(keys / name)], timeout=30)
    pub = (keys / "site.pub").read_text().split()
    allowed = keys / "allowed_signers"
    allowed.write_text(f'{PRINCIPAL} namespaces="k8s-airgap" {pub[0]} {pub[1]}\n')
    return Keys(keys / "site", allowed, keys / "stranger")


def invoke(node: LocalNode, *args: str, timeout: float = 600) -> tuple[int, str]:
    """A task run on the inside host as a site would type it: (exit code, its output)."""
    r = node.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args], check=False,
                 timeout=timeout)
    return r.returncode, (r.stdout + "\n" + r.stderr).strip()


def error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    return lines[0] if lines else (output.splitlines() or ["(no output)"])[-1]


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def negative(case: str, code: int, output: str, must: str, pushed: list[str],
             seconds: float) -> NegativeRecord:
    said = error_line(output)
    ok = code != 0 and must in output and not pushed
    note = (" [nothing pushed]" if not pushed else f" [PUSHED: {', '.join(pushed[:3])}]")
    return NegativeRecord(MODE, case, ok, said + note, round(seconds, 2))


def timed() -> float:
    return time.monotonic()


@dataclass
class OfflineRun:
    """What the offline-mirror mode needs from the proof (lab/proof/standin_proof.py)."""

    spec: LabSpec
    work: Path
    bundle: Path  # the connected side's, prepared with its image store
    plan_file: Path  # offline plan (mirror under PREFIX/)
    negative_plan_file: Path  # the same under NEGATIVE_PREFIX/
    ca_file: str
    registry: str  # host:port of the lab registry on the air-gapped bridge


def catalog(node: LocalNode, run: OfflineRun, prefix: str) -> list[str]:
    """The lab registry's repositories under prefix/, asked from the inside host."""
    import json

    r = node.run(["curl", "-sS", "--max-time", "10", "--cacert", run.ca_file,
                  f"https://{run.registry}/v2/_catalog?n=1000"], check=False, timeout=30)
    try:
        repos = json.loads(r.stdout).get("repositories") or []
    except ValueError:
        return [f"(catalog unreadable: exit {r.returncode})"]
    return [str(x) for x in repos if str(x).startswith(f"{prefix}/")]


def carry(run: OfflineRun, keys: Keys, say_row: dict[str, object]) -> tuple[Path, Path]:
    """Sign, pack, and copy the parts to the inside (a plain file copy: the media)."""
    from airgap.bundle.pack import pack, parse_size
    from airgap.bundle.signing import sign_manifest

    sign_manifest(run.bundle, keys.key)
    packed = run.work / "media-out"
    shutil.rmtree(packed, ignore_errors=True)
    rep = pack(run.bundle, packed, parse_size(PART_SIZE))
    media = copy_tree(packed, run.work / "inside" / "media")
    say_row["detail"] = (f"signed ({PRINCIPAL}), packed into {len(rep.parts)} parts of at most "
                         f"{PART_SIZE} (ratio {rep.ratio:.3f}), copied to the inside")
    return media, run.work / "inside" / "bundle"


def negatives(node: LocalNode, run: OfflineRun, keys: Keys, media: Path,
              inside_bundle: Path) -> list[NegativeRecord]:
    """Each refused before anything is pushed under NEGATIVE_PREFIX/ or unpacked."""
    out: list[NegativeRecord] = []
    signers = ["--allowed-signers", str(keys.allowed)]
    neg = run.work / "inside" / "negative"
    push = ["mirror", "--plan", str(run.negative_plan_file), "--from-bundle"]

    def case(name: str, args: list[str], must: str) -> None:
        t = timed()
        code, said = invoke(node, *args)
        out.append(negative(name, code, said, must, catalog(node, run, NEGATIVE_PREFIX),
                            timed() - t))

    b = copy_tree(inside_bundle, neg / "flipped")
    blob = max((b / "oci" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    flip_byte(blob)
    case(f"one flipped byte in blob {blob.name[:12]}", [*push, str(b), *signers], blob.name)
    b = copy_tree(inside_bundle, neg / "stranger")
    from airgap.bundle.signing import sign_manifest

    sign_manifest(b, keys.other)
    case("signed by a key that is not allowed", [*push, str(b), *signers], "not in")
    b = copy_tree(inside_bundle, neg / "unsigned")
    (b / "manifest.json.sig").unlink()
    case("an unsigned bundle", [*push, str(b), *signers], "not signed")
    parts = sorted(p for p in media.iterdir() if ".part-" in p.name)
    m = copy_tree(media, neg / "missing-part")
    (m / parts[1].name).unlink()
    case(f"a missing part ({parts[1].name})",
         ["unpack", "--parts", str(m), "--out", str(neg / "out-missing"), *signers],
         parts[1].name)
    m = copy_tree(media, neg / "damaged-part")
    flip_byte(m / parts[0].name)
    case(f"a damaged part ({parts[0].name})",
         ["unpack", "--parts", str(m), "--out", str(neg / "out-damaged"), *signers],
         parts[0].name)
    for d in (neg / "out-missing", neg / "out-damaged"):
        if d.exists() and any(d.iterdir()):
            out.append(NegativeRecord(MODE, f"{d.name}: nothing written", False,
                                      f"{d} holds files after a refused unpack"))
    return out


def prove_offline(run: OfflineRun, report: Report, steps: Steps, nodes: Mapping[str, Node],
                  trusted_root: Path, hooks: Hooks) -> None:
    """The offline-mirror mode, end to end (see the module's docstring)."""
    from airgap import deploy as deploy_mod
    from airgap.bundle import verify_bundle
    from airgap.bundle.verify import SignerPolicy
    from airgap.plan import load_plan
    from lab.lxd import LXDNode

    report.modes.append(MODE)
    with steps.step(f"{MODE}: sign, pack, copy the parts to the inside") as row:
        keys = make_keys(run.work)
        media, inside_bundle = carry(run, keys, row)
    signers = ["--allowed-signers", str(keys.allowed)]
    squid = LXDNode("proxy", project=run.spec.project)
    squid.run(["systemctl", "stop", "squid"], timeout=60)
    try:
        with inside_host(run.spec) as inside:
            with steps.step(f"{MODE}: isolation of the inside admin host (squid stopped)"):
                report.isolation += inside_isolation(inside, run.spec)
            with steps.step(f"{MODE}: invoke unpack (every part, then the signed bundle)") as row:
                _must(row, *invoke(inside, "unpack", "--parts", str(media), "--out",
                                   str(inside_bundle), "--trusted-root", str(trusted_root),
                                   *signers), "unpack", "unpacked ")
            with steps.step(f"{MODE}: invoke mirror --from-bundle (no upstream)") as row:
                _must(row, *invoke(inside, "mirror", "--plan", str(run.plan_file),
                                   "--from-bundle", str(inside_bundle), *signers),
                      "mirror --from-bundle", "no upstream asked")
                row["detail"] = (f"{len(catalog(inside, run, PREFIX))} repositories under "
                                 f"{PREFIX}/; " + str(row["detail"]))
            with steps.step(f"{MODE}: negative cases"):
                report.negatives += negatives(inside, run, keys, media, inside_bundle)
    finally:
        squid.run(["systemctl", "start", "squid"], timeout=60)
    plan = load_plan(run.plan_file)
    with steps.step(f"{MODE}: clean runtime on every node"):
        for n in nodes:
            hooks.reset(n)
    with steps.step(f"{MODE}: deploy from the unpacked bundle") as row:
        dep = deploy_mod.deploy(
            plan, nodes, inside_bundle, dangerous=True,
            verify=lambda b: verify_bundle(b, trusted_root=trusted_root,
                                           signers=SignerPolicy(keys.allowed)))
        row["detail"] = "; ".join(f"{nr.name}: " + ", ".join(
            f"{s.step}={s.status.value}" for s in nr.steps) for nr in dep.nodes)
        if not dep.ok:
            raise AirgapError(f"{MODE}: deploy failed: {row['detail']}",
                              resolution="Rerun with --keep and inspect the nodes.")
    report.cluster += [ClusterNodeRecord(MODE, c.name, c.ready, c.version,
                                         "k8s stand-in CLI: kubectl get node")
                       for c in deploy_mod.cluster_nodes(next(iter(nodes.values())))]
    with steps.step(f"{MODE}: every image on every node through the CRI") as row:
        for n in nodes:
            report.pulls += [dataclasses.replace(p, mode=MODE) for p in hooks.pull(n)]
        pulled = [p for p in report.pulls if p.mode == MODE]
        row["detail"] = f"{sum(p.ok for p in pulled)}/{len(pulled)} ok"


@dataclass(frozen=True)
class Hooks:
    """The proof's own steps the mode reuses: reset a node's runtime (and wait for its
    CRI), and pull every image on a node through its CRI (as the mirror mode does)."""

    reset: Callable[[str], None]
    pull: Callable[[str], list[PullRecord]]


def _must(row: dict[str, object], code: int, output: str, what: str, keyword: str) -> None:
    said = [ln for ln in output.splitlines() if keyword in ln]
    row["detail"] = error_line(output) if code else " ".join(said) or output[-300:]
    if code:
        raise AirgapError(f"{MODE}: invoke {what} failed on the inside host: {error_line(output)}",
                          resolution="Rerun the proof with --keep and repeat the command by "
                          "hand in the namespace (nsenter --net=/run/netns/kag-NAME-in).")
