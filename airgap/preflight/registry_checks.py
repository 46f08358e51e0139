"""What a pull reaches beyond a registry's /v2/, asked from the node before install.

A proxy that allows the registry's own name but not the other hosts a pull reaches
passes a /v2/ probe and fails at the first pull: the token realm the registry's 401
names (docker.io: auth.docker.io) and the host its blobs redirect to (docker.io:
production.cloudflare.docker.com). The realm comes from the /v2/ answer's
WWW-Authenticate; one blob of one locked image is asked for, and its redirect followed,
through the proxy, in one script run per node. The mirror's half (every locked manifest
by digest) is airgap.preflight.access.check_mirror_images; the helpers both use are here.
Parsers are pure and unit-tested with what real curl printed; a registry token stays on
the node, in a file curl reads, never in argv, logs or a Check.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap.bundle import Bundle
from airgap.mediatypes import MANIFEST_ACCEPT
from airgap.nodes import Node
from airgap.plan import Plan
from airgap.plan.images import ImageRef, upstream_server
from airgap.plan.lock import ImageLock, LockedImage, read_lock
from airgap.platforms import parse_platform, platform_matches
from airgap.preflight.report import Check, CheckStatus

TRANSFER_TIMEOUT = 20  # seconds, each curl transfer on the node
TLS_CODES = frozenset({35, 51, 58, 60, 77, 83, 90, 91})  # curl: TLS or certificate failed
REDIRECTS = frozenset({"301", "302", "303", "307", "308"})


# -- WWW-Authenticate and Location ---------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate header (RFC 9110 11.6.1): a scheme, then
    either auth-params (names lowercased) or a token68."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _skip(text: str, i: int, chars: str = " \t") -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int]:
    """A quoted-string starting at text[i] == '"': its value (quoted-pairs undone) and
    the index after the closing quote (or the end, when it is never closed)."""
    out, i = [], i + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def _param_at(text: str, i: int) -> tuple[str, str, int] | None:
    """An auth-param (token BWS "=" BWS (token / quoted-string)) at i, else None."""
    m = _TOKEN.match(text, i)
    if not m:
        return None
    j = _skip(text, m.end())
    if j >= len(text) or text[j] != "=":
        return None
    k = _skip(text, j + 1)
    if k < len(text) and text[k] == '"':
        value, end = _quoted(text, k)
        return m.group().lower(), value, end
    v = _TOKEN.match(text, k)
    if not v:
        return None  # "abc==": a token68, not a parameter
    return m.group().lower(), v.group(), v.end()


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a WWW-Authenticate value (several headers joined with ", ").

    Commas separate both challenges and their parameters; what follows a comma is a
    parameter when it reads ``name=value``, else the next challenge's scheme. Values
    may be quoted strings holding commas and escaped quotes (RFC 9110 5.6.4), which is
    why a regex over ``name="value"`` pairs is not enough.
    """
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    token68 = ""
    i = 0

    def close() -> None:
        if scheme is not None:
            out.append(Challenge(scheme, dict(params), token68))

    while i < len(header):
        i = _skip(header, i, " \t,")
        if i >= len(header):
            break
        param = _param_at(header, i) if scheme is not None else None
        if param is not None:
            name, value, i = param
            params.setdefault(name, value)
            continue
        m = _TOKEN.match(header, i)
        if not m:
            i += 1  # not HTTP: skip the character rather than give up on the rest
            continue
        close()
        scheme, params, token68 = m.group(), {}, ""
        i = _skip(header, m.end())
        t = _TOKEN68.match(header, i)
        if t and _param_at(header, i) is None:
            after = _skip(header, t.end())
            if after >= len(header) or header[after] == ",":
                token68, i = t.group(), after
    close()
    return out


def bearer_challenge(header: str) -> Challenge | None:
    """The Bearer challenge with a realm, the one a registry's token service answers."""
    for c in parse_challenges(header):
        if c.scheme.lower() == "bearer" and c.params.get("realm"):
            return c
    return None


def response_headers(dump: str) -> dict[str, list[str]]:
    """The headers of the last response in a ``curl -D -`` dump (names lowercased).

    Through a proxy the dump starts with the CONNECT answer ("HTTP/1.1 200 Connection
    established"), so only the last block is the registry's.
    """
    blocks: list[list[str]] = []
    for line in dump.replace("\r\n", "\n").split("\n"):
        if line.startswith("HTTP/"):
            blocks.append([])
        elif blocks and line.strip():
            blocks[-1].append(line)
    out: dict[str, list[str]] = {}
    for line in blocks[-1] if blocks else []:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), []).append(value.strip())
    return out


def url_host(url: str) -> str:
    """host[:port] of an absolute URL (a Location, a realm), '' when it has none. The
    path and query (a CDN's signed redirect) are never shown."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not host or parts.scheme not in ("http", "https"):
        return ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def token_url(challenge: Challenge, scope: str) -> str:
    """The anonymous token request a client makes for ``scope`` (the distribution token
    protocol: realm?service=...&scope=...)."""
    realm = challenge.params["realm"]
    query = {"service": challenge.params["service"]} if challenge.params.get("service") else {}
    query["scope"] = scope
    return realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)


def bundle_lock(bundle: Path | None) -> ImageLock | None:
    """The bundle's images.lock, None without a bundle or lock (checks then skip)."""
    if bundle is None or not Bundle(bundle).lock.is_file():
        return None
    return read_lock(Bundle(bundle).lock)


def platform_digest(image: LockedImage, wanted: str) -> str | None:
    """The locked platform manifest a node of platform ``wanted`` pulls (containerd's
    matching: arm64 is arm64/v8), None when the lock has none for it."""
    want = parse_platform(wanted)
    for name, digest in sorted(image.platforms.items()):
        try:
            if platform_matches(parse_platform(name), want):
                return digest
        except ValueError:
            continue
    return None


def curl_quote(value: str) -> str:
    """A curl config file's quoted string: backslash escapes for \\, " and controls."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


# -- the hosts a pull reaches through the proxy ---------------------------------------------

# Run as `sh -c PULL_HOSTS_SCRIPT sh PROXY ACCEPT MAX_TIME [REGISTRY TOKEN_URL|- REPO_URL
# MANIFEST|-]...`.
# For each registry: the anonymous token from its realm (kept on the node, in a file
# curl reads with -K), the platform manifest by digest, the config blob it names without
# following the redirect, then one byte of the redirect's target. One line per request:
#   <step> <registry> <curl exit> <http_code> <CONNECT code> [<redirect URL>]
# then, when curl printed an error, "! <step> <registry> <curl's message>".
PULL_HOSTS_SCRIPT = r"""
proxy=$1 accept=$2 limit=$3; shift 3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
ask() { # step registry curl-args...: one line of codes, then curl's error if any
  step=$1 reg=$2; shift 2
  out=$(curl -sS --proxy "$proxy" --max-time "$limit" -K "$tmp/auth" \
    -w '%{http_code} %{http_connect} %{redirect_url}' "$@" 2>"$tmp/err")
  rc=$?
  echo "$step $reg $rc $out"
  err=$(grep '^curl: (' "$tmp/err" | tail -n 1)
  [ -z "$err" ] || echo "! $step $reg $err"
  return 0
}
while [ $# -ge 4 ]; do
  reg=$1 tok=$2 repo=$3 manifest=$4; shift 4
  : > "$tmp/auth"; : > "$tmp/body"
  if [ "$tok" != - ]; then
    ask token "$reg" -o "$tmp/body" "$tok"
    t=$(tr -d ' \t\r\n' < "$tmp/body" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$t" ] || t=$(tr -d ' \t\r\n' < "$tmp/body" |
      sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [ -z "$t" ] || printf 'header = "Authorization: Bearer %s"\n' "$t" > "$tmp/auth"
  fi
  [ "$manifest" != - ] || continue
  : > "$tmp/body"
  ask manifest "$reg" -H "Accept: $accept" -o "$tmp/body" "$repo/manifests/$manifest"
  cfg=$(tr -d ' \t\r\n' < "$tmp/body" |
    sed -n 's/.*"config":{[^}]*"digest":"\(sha256:[0-9a-f]\{64\}\)".*/\1/p')
  [ -n "$cfg" ] || continue
  line=$(ask blob "$reg" -o /dev/null "$repo/blobs/$cfg")
  echo "$line"
  loc=$(echo "$line" | sed -n '1s/^blob [^ ]* [0-9]* [0-9]* [0-9]* //p')
  [ -n "$loc" ] || continue
  : > "$tmp/auth"
  ask redirect "$reg" -r 0-0 -o /dev/null "$loc"
done
"""


@dataclass
class Step:
    """One request of the script: curl's exit code, the HTTP and CONNECT codes, the
    redirect target (when not followed) and curl's error."""

    rc: int
    http: str
    connect: str
    redirect: str = ""
    error: str = ""


def parse_pull_hosts(stdout: str) -> dict[tuple[str, str], Step]:
    """The script's lines -> {(registry, step): Step}. Unknown lines are ignored."""
    out: dict[tuple[str, str], Step] = {}
    for line in stdout.splitlines():
        words = line.split(" ", 5)
        if words[0] == "!" and len(words) >= 4:
            key = (words[2], words[1])
            if key in out:
                out[key].error = line.split(" ", 3)[3]
            continue
        if len(words) < 5 or words[0] not in ("token", "manifest", "blob", "redirect"):
            continue
        if not (words[2].isdigit() and words[3].isdigit() and words[4].isdigit()):
            continue
        redirect = words[5].strip() if len(words) > 5 else ""
        out[(words[1], words[0])] = Step(int(words[2]), words[3], words[4], redirect)
    return out


@dataclass(frozen=True)
class RegistryProbe:
    """What a registry's /v2/ through the proxy answered: enough to go on."""

    registry: str
    server: str  # https://registry-1.docker.io
    www_authenticate: str = ""


@dataclass(frozen=True)
class PullTarget:
    """The requests the script makes for one registry."""

    registry: str
    server: str
    image: ImageRef
    challenge: Challenge | None
    manifest: str | None  # the platform manifest digest whose config blob is asked for

    @property
    def repo_url(self) -> str:
        return f"{self.server}/v2/{self.image.repository}"

    def argv(self) -> list[str]:
        tok = (token_url(self.challenge, f"repository:{self.image.repository}:pull")
               if self.challenge else "-")
        return [self.registry, tok, self.repo_url, self.manifest or "-"]


def pull_targets(plan: Plan, probes: Sequence[RegistryProbe], images: Sequence[ImageRef],
                 lock: ImageLock | None) -> list[PullTarget]:
    """Per registry whose /v2/ answered: its first image (sorted) and, with a lock, the
    manifest a node of the plan's first platform pulls (a blob's redirect is the same
    for every blob of a registry, so one is enough)."""
    out = []
    for probe in probes:
        challenge = bearer_challenge(probe.www_authenticate)
        locked = sorted((i for i in (lock.images if lock else []) if i.ref.registry ==
                         probe.registry), key=lambda i: str(i.ref))
        refs = sorted((r for r in images if r.registry == probe.registry), key=str)
        if locked:
            img = locked[0]
            manifest = platform_digest(img, plan.platforms[0]) if img.platforms else img.digest
            out.append(PullTarget(probe.registry, probe.server, img.ref, challenge, manifest))
        elif refs:
            out.append(PullTarget(probe.registry, probe.server, refs[0], challenge, None))
    return out


def _through_proxy(name: str, what: str, host: str, step: Step, proxy: str) -> Check:
    """A request through the proxy judged by its tunnel: any HTTP answer at the far end
    proves the proxy lets the node reach the host."""
    if step.connect not in ("000", "200"):
        return Check(name, CheckStatus.fail,
                     f"the proxy refused CONNECT to {host} ({step.connect}), {what}",
                     f"allow CONNECT to {host}:443 on the proxy (squid: add {host} to the "
                     "allow-list acl, e.g. `acl registries dstdomain " + host + "`, and 443 "
                     "to SSL_ports)")
    if step.rc in TLS_CODES:
        return Check(name, CheckStatus.fail, f"tunnel to {host} works but TLS fails: "
                     f"{step.error}",
                     "install the CA that signed the (TLS-inspecting proxy's) certificate in "
                     "the node's trust store")
    if step.rc != 0 or step.http == "000":
        return Check(name, CheckStatus.fail,
                     f"{host} not reached through {proxy} (curl exit {step.rc}): {step.error}",
                     f"from the node: https_proxy={proxy} curl -v https://{host}/")
    return Check(name, CheckStatus.ok, f"CONNECT {step.connect}, {host} answered {step.http}")


def judge_pull_hosts(target: PullTarget, steps: Mapping[tuple[str, str], Step], proxy: str,
                     has_lock: bool) -> list[Check]:
    """The token realm's host and the blob redirect's host, each through the proxy."""
    reg = target.registry
    out: list[Check] = []
    if target.challenge is not None:
        realm = target.challenge.params["realm"]
        host = url_host(realm) or realm
        name = f"proxy -> {host} (token for {reg})"
        tok = steps.get((reg, "token"))
        if tok is None:
            out.append(Check(name, CheckStatus.fail, "no answer from the check on the node",
                             f"from the node: https_proxy={proxy} curl -v '{realm}'"))
            return out
        check = _through_proxy(name, f"the token realm {reg} names in its 401", host, tok,
                               proxy)
        if check.status is CheckStatus.ok and tok.http != "200":
            check = Check(name, CheckStatus.warn,
                          f"CONNECT {tok.connect}, but the token service answered {tok.http} "
                          f"for an anonymous pull of {target.image.repository}",
                          "the image may need a login: give containerd credentials for "
                          f"{reg}, or use a public image")
        out.append(check)
        if check.status is CheckStatus.fail:
            return out
    if target.manifest is None:
        why = ("no images.lock: run with --bundle DIR to follow a blob's redirect"
               if not has_lock else "images.lock has no manifest for the plan's platform")
        out.append(Check(f"proxy -> blob host ({reg})", CheckStatus.skip, why))
        return out
    man = steps.get((reg, "manifest"))
    blob = steps.get((reg, "blob"))
    name = f"proxy -> blob host ({reg})"
    if man is not None and man.http in REDIRECTS and url_host(man.redirect):
        host = url_host(man.redirect)
        out.append(Check(name, CheckStatus.warn,
                         f"{reg} redirects manifests to {host} (HTTP {man.http}); this check "
                         "does not follow it", f"allow CONNECT to {host}:443 on the proxy too"))
        return out
    if man is None or man.http != "200" or blob is None:
        got = f"HTTP {man.http}" if man else "no answer"
        out.append(Check(name, CheckStatus.warn,
                         f"{target.image.name}@{target.manifest}: manifest {got}, no blob to "
                         "follow", f"from the node: https_proxy={proxy} curl -v "
                         f"{target.repo_url}/manifests/{target.manifest}"))
        return out
    if blob.http not in REDIRECTS or not url_host(blob.redirect):
        check = _through_proxy(name, "", url_host(target.server), blob, proxy)
        if check.status is CheckStatus.ok:
            check.detail = f"{reg} serves blobs itself (HTTP {blob.http}, no redirect)"
        out.append(check)
        return out
    host = url_host(blob.redirect)
    name = f"proxy -> {host} (blobs of {reg})"
    redirect = steps.get((reg, "redirect"))
    if redirect is None:
        out.append(Check(name, CheckStatus.fail, "no answer from the check on the node",
                         f"from the node: https_proxy={proxy} curl -v https://{host}/"))
        return out
    out.append(_through_proxy(name, f"where {reg} redirects its blobs (HTTP {blob.http})",
                              host, redirect, proxy))
    return out


def check_pull_hosts(node: Node, plan: Plan, proxy: str, probes: Sequence[RegistryProbe],
                     images: Sequence[ImageRef], lock: ImageLock | None) -> list[Check]:
    """Token realms and blob hosts of every registry, through the proxy, in one run."""
    targets = pull_targets(plan, probes, images, lock)
    if not targets:
        return []
    argv = [a for t in targets for a in t.argv()]
    if not any(t.challenge or t.manifest for t in targets):
        return [c for t in targets for c in judge_pull_hosts(t, {}, proxy, lock is not None)]
    res = node.run(["sh", "-c", PULL_HOSTS_SCRIPT, "sh", proxy, MANIFEST_ACCEPT,
                    str(TRANSFER_TIMEOUT), *argv],
                   check=False, timeout=30 + 4 * TRANSFER_TIMEOUT * len(targets))
    steps = parse_pull_hosts(res.stdout)
    return [c for t in targets for c in judge_pull_hosts(t, steps, proxy, lock is not None)]


def probes_from(registry_dumps: Iterable[tuple[str, str]]) -> list[RegistryProbe]:
    """(registry, `curl -D -` dump of its /v2/) -> probes, WWW-Authenticate joined."""
    out = []
    for registry, dump in registry_dumps:
        challenge = ", ".join(response_headers(dump).get("www-authenticate", []))
        out.append(RegistryProbe(registry, upstream_server(registry), challenge))
    return out
