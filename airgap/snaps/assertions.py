"""Snap assertions (`*.assert`) parsed without snapd.

`snap download` writes a stream of assertions next to each snap; on the air-gapped
side nothing else says whether a `.snap` file is the one the store published, so the
stream is parsed here exactly as snapd's decoder reads it:

    HEADERS            key: value lines; a value that spans lines is introduced by
                       `key:` alone and indented (4 spaces for text, `  - ` for list
                       items, `  key: value` for maps)
    <blank line>
    BODY               body-length bytes, only when body-length > 0, then a blank line
    SIGNATURE          base64 (line-wrapped), ended by a blank line or the end of file

The signed content is everything before the blank line that precedes the signature.
Parsing is strict (canonical base64, no repeated headers, exact body length) so that
any altered byte makes a stream fail to parse or fail its signature check, never
silently pass.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airgap.errors import AirgapError

HeaderValue = str | list["HeaderValue"] | dict[str, "HeaderValue"]

MAX_STREAM_BYTES = 4 * 1024 * 1024
_NAME_RE = re.compile(r"^[a-z](?:-?[a-z0-9])*$")
_INT_RE = re.compile(r"^(0|[1-9][0-9]*)$")
_B64_RE = re.compile(rb"^[A-Za-z0-9+/\n]*={0,2}\n?$")
_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class AssertionError_(AirgapError):
    """An assertion stream that cannot be parsed, or lacks what a check needs."""

    default_resolution = ("Download the .assert again with the snap (`snap download` writes "
                          "both; `invoke prepare` does it); copy it unchanged, as a binary file.")


@dataclass(frozen=True)
class Assertion:
    """One parsed assertion; ``content`` is exactly the bytes its signature covers."""

    headers: Mapping[str, HeaderValue]
    body: bytes
    content: bytes
    signature: bytes
    source: str = "<assertions>"
    index: int = 1
    raw: bytes = field(default=b"", repr=False)

    @property
    def type(self) -> str:
        return self.header("type")

    def header(self, name: str) -> str:
        """A required single-line header; AssertionError_ names the assertion if absent."""
        value = self.headers.get(name)
        if value is None:
            raise AssertionError_(f"{self.where}: missing header {name!r}")
        if not isinstance(value, str):
            raise AssertionError_(f"{self.where}: header {name!r} must be a single value")
        return value

    def get(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    def time(self, name: str) -> datetime:
        return parse_time(self.header(name), f"{self.where}: header {name!r}")

    @property
    def label(self) -> str:
        """A short, human name: `snap-revision (snap-id ..., revision 29)`."""
        t = self.get("type") or "?"

        def h(name: str) -> str:
            return str(self.headers.get(name, "?"))

        if t == "account-key":
            return f"account-key {h('name')} ({h('public-key-sha3-384')[:12]}...)"
        if t == "snap-revision":
            return f"snap-revision (snap-id {h('snap-id')}, revision {h('snap-revision')})"
        if t == "snap-declaration":
            return f"snap-declaration ({h('snap-name')}, snap-id {h('snap-id')})"
        return t

    @property
    def where(self) -> str:
        return f"{self.source}: assertion {self.index} ({self.label})"


def parse_time(text: str, where: str = "time") -> datetime:
    """RFC 3339 as snapd writes it (fractions of any length, Z or offset), as UTC."""
    m = _TIME_RE.match(text)
    if not m:
        raise AssertionError_(f"{where}: {text!r} is not an RFC 3339 time")
    frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}").astimezone(timezone.utc)
    except ValueError as exc:
        raise AssertionError_(f"{where}: {text!r} is not a valid time ({exc})") from None


def b64url_nopad(data: bytes) -> str:
    """snapd's key and file ids: base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_b64_strict(text: bytes, what: str) -> bytes:
    """Base64 split over lines; only the canonical encoding of the bytes is accepted."""
    if not _B64_RE.match(text):
        raise AssertionError_(f"{what} is not base64")
    joined = text.replace(b"\n", b"")
    try:
        raw = base64.b64decode(joined, validate=True)
    except (binascii.Error, ValueError):
        raise AssertionError_(f"{what} is not valid base64") from None
    if base64.b64encode(raw) != joined:
        raise AssertionError_(f"{what} is not canonical base64")
    return raw


def parse_headers(text: bytes, where: str) -> dict[str, HeaderValue]:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise AssertionError_(f"{where}: headers are not UTF-8") from None
    lines = decoded.split("\n")
    headers: dict[str, HeaderValue] = {}
    i = 0
    while i < len(lines):
        name, value, i = _parse_entry(lines, i, "", where)
        if name in headers:
            raise AssertionError_(f"{where}: repeated header {name!r}")
        headers[name] = value
    return headers


def _parse_entry(lines: list[str], i: int, indent: str, where: str) -> tuple[str, HeaderValue, int]:
    line = lines[i]
    if not line.startswith(indent):
        raise AssertionError_(f"{where}: unexpected indentation in header line {line!r}")
    entry = line[len(indent) :]
    name, sep, rest = entry.partition(":")
    if not sep:
        raise AssertionError_(f"{where}: header line {line!r} has no ':'")
    if not _NAME_RE.match(name):
        raise AssertionError_(f"{where}: invalid header name {name!r}")
    if rest:
        if not rest.startswith(" ") or len(rest) == 1:
            raise AssertionError_(f"{where}: header {name!r}: expected ': value' in {line!r}")
        return name, rest[1:], i + 1
    value, nxt = _parse_nested(lines, i + 1, indent, where, name)
    return name, value, nxt


def _parse_nested(
    lines: list[str], i: int, indent: str, where: str, name: str
) -> tuple[HeaderValue, int]:
    inner = indent + "  "
    if i >= len(lines) or not lines[i].startswith(inner) or len(lines[i]) <= len(inner):
        raise AssertionError_(
            f"{where}: header {name!r} introduces a multi-line value but none follows"
        )
    mark = lines[i][len(inner)]
    if mark == " ":
        text_prefix = indent + "    "
        out: list[str] = []
        while i < len(lines) and lines[i].startswith(text_prefix):
            out.append(lines[i][len(text_prefix) :])
            i += 1
        return "\n".join(out), i
    if mark == "-":
        items: list[HeaderValue] = []
        while i < len(lines) and lines[i].startswith(inner + "-"):
            rest = lines[i][len(inner) + 1 :]
            if rest.startswith(" ") and len(rest) > 1:
                items.append(rest[1:])
                i += 1
            elif rest == "":
                value, i = _parse_nested(lines, i + 1, inner, where, name)
                items.append(value)
            else:
                raise AssertionError_(f"{where}: header {name!r}: bad list item {lines[i]!r}")
        return items, i
    mapping: dict[str, HeaderValue] = {}
    while (
        i < len(lines)
        and lines[i].startswith(inner)
        and lines[i][len(inner) : len(inner) + 1] not in (" ", "-", "")
    ):
        key, value, i = _parse_entry(lines, i, inner, where)
        if key in mapping:
            raise AssertionError_(f"{where}: header {name!r}: repeated key {key!r}")
        mapping[key] = value
    return mapping, i


def _int_header(headers: Mapping[str, HeaderValue], name: str, where: str) -> int:
    value = headers.get(name, "0")
    if not isinstance(value, str) or not _INT_RE.match(value):
        raise AssertionError_(
            f"{where}: header {name!r} must be a non-negative integer, got {value!r}"
        )
    return int(value)


def parse_stream(data: bytes, source: str = "<assertions>") -> list[Assertion]:
    """All assertions in a stream, in order. Raises AssertionError_ naming the assertion."""
    out: list[Assertion] = []
    pos = 0
    n = 0
    while pos < len(data):
        if not data[pos:].strip(b"\n"):
            break
        n += 1
        where = f"{source}: assertion {n}"
        start = pos
        first_line = data[pos:].split(b"\n", 1)[0]
        if first_line.endswith(b"\r") and first_line.startswith(b"type: "):
            raise AssertionError_(
                f"{where}: CRLF line endings (the file was converted to Windows line endings "
                "on the way); assertions use LF only, and a signature covers the exact bytes",
                resolution=f"Convert it back with `dos2unix {source}` (or `sed -i 's/\\r$//'`) "
                "and check it again; if it still fails, download the assertion again.",
            )
        head_end = data.find(b"\n\n", pos)
        if head_end < 0:
            raise AssertionError_(
                f"{where}: no blank line after the headers (truncated or not an assertion)"
            )
        try:
            headers = parse_headers(data[pos:head_end], where)
        except AssertionError_:
            first = data[pos:head_end].split(b"\n", 1)[0]
            if out and b":" not in first:
                raise AssertionError_(
                    f"{out[-1].where}: followed by data that is not an assertion "
                    "(its body-length is missing or wrong, or the file is damaged)"
                ) from None
            raise
        if "type" not in headers or not isinstance(headers["type"], str):
            raise AssertionError_(f"{where}: no 'type' header (not an assertion)")
        where = f"{source}: assertion {n} ({headers['type']})"
        length = _int_header(headers, "body-length", where)
        after = head_end + 2
        if length:
            body = data[after : after + length]
            if len(body) < length:
                raise AssertionError_(
                    f"{where}: body is shorter than body-length {length} (truncated)"
                )
            if data[after + length : after + length + 2] != b"\n\n":
                raise AssertionError_(
                    f"{where}: body of body-length {length} is not followed by a blank line"
                )
            content = data[start : after + length]
            sig_start = after + length + 2
        else:
            body = b""
            content = data[start:head_end]
            sig_start = after
        sig_end = data.find(b"\n\n", sig_start)
        nxt = len(data) if sig_end < 0 else sig_end + 2
        sig_text = data[sig_start : len(data) if sig_end < 0 else sig_end]
        if not sig_text.strip(b"\n"):
            raise AssertionError_(f"{where}: no signature")
        signature = decode_b64_strict(sig_text, f"{where}: signature")
        out.append(
            Assertion(
                headers=headers,
                body=body,
                content=content,
                signature=signature,
                source=source,
                index=n,
                raw=data[start:nxt],
            )
        )
        pos = nxt
    if not out:
        raise AssertionError_(f"{source}: no assertions (empty file)")
    return out


def read_stream(path: str | Path) -> list[Assertion]:
    """Parse an .assert file; the file is small, a size cap guards against a wrong path."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_STREAM_BYTES + 1)
    except FileNotFoundError:
        raise AssertionError_(
            f"{p}: assertion file not found",
            resolution="Keep each .assert next to its .snap (snap download writes both).",
        ) from None
    except OSError as exc:
        raise AssertionError_(f"{p}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_STREAM_BYTES:
        raise AssertionError_(f"{p}: larger than {MAX_STREAM_BYTES} bytes, not an assertion file")
    return parse_stream(data, source=str(p))


def find(assertions: Iterable[Assertion], type_: str, **headers: str) -> list[Assertion]:
    """Assertions of a type whose headers (dashes as underscores) equal the given values."""
    want = {k.replace("_", "-"): v for k, v in headers.items()}
    return [
        a
        for a in assertions
        if a.headers.get("type") == type_ and all(a.headers.get(k) == v for k, v in want.items())
    ]


def encode_headers(headers: Mapping[str, HeaderValue]) -> str:
    """The wire form of headers, as snapd writes them (used by tests to build assertions)."""
    out: list[str] = []
    for name, value in headers.items():
        _encode_entry(out, name, value, "")
    return "\n".join(out)


def _encode_entry(out: list[str], name: str, value: HeaderValue, indent: str) -> None:
    if isinstance(value, str):
        if "\n" in value:
            out.append(f"{indent}{name}:")
            out.extend(f"{indent}    {line}" for line in value.split("\n"))
        else:
            out.append(f"{indent}{name}: {value}")
        return
    out.append(f"{indent}{name}:")
    _encode_nested(out, value, indent + "  ")


def _encode_nested(out: list[str], value: HeaderValue, indent: str) -> None:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and "\n" not in item:
                out.append(f"{indent}- {item}")
            else:
                out.append(f"{indent}-")
                _encode_nested(out, item, indent + "  ")
    elif isinstance(value, dict):
        for k, v in value.items():
            _encode_entry(out, k, v, indent)
    else:
        out.extend(f"{indent}  {line}" for line in value.split("\n"))
