"""Plan fuzz: seeded mutations of the example plans through `invoke render`.

Every mutation either renders, or fails with exactly one `Error:` line, exit 1, no
traceback and nothing written. 330 run in-process through the render task itself (the
same function and the same `user_errors` path as the command line; any other exception
is the traceback a user would see); a sample of 20 run as the real `invoke` process.
The counts per kind are printed (`pytest -s`, or in the report's captured output).
"""

from __future__ import annotations

import copy
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

import tasks
from airgap.cli import UserExit
from tests.support.taskrun import ROOT, run_task

EXAMPLES = ROOT / "examples"
PLANS = {name: (EXAMPLES / f"{name}.yaml").read_text() for name in ("proxy", "mirror", "sideload")}
IN_PROCESS = 330
SUBPROCESS = 20

Mutation = Callable[[random.Random, str], bytes]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    for part in path[:-1]:
        doc = doc[part]
    if delete:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def _structural(change: Callable[[random.Random, Any], None]) -> Mutation:
    def mutate(rng: random.Random, text: str) -> bytes:
        doc = copy.deepcopy(yaml.safe_load(text))
        change(rng, doc)
        return yaml.safe_dump(doc, sort_keys=False).encode()

    return mutate


def _delete(rng: random.Random, doc: Any) -> None:
    _set(doc, rng.choice(_paths(doc)), None, delete=True)


WRONG = [0, -1, 3.5, True, None, "", "x", [], {}, [1, 2], {"a": 1}, "10.0.0.0/33", "\x00"]


def _wrong_type(rng: random.Random, doc: Any) -> None:
    _set(doc, rng.choice(_paths(doc)), rng.choice(WRONG))


BAD_URLS = ["", "mirror:5000", "ftp://m:5000", "http://", "http://m:99999", "http://m:5000/v2/x",
            "https://u:pw@m:5443", "http:// m:5000", "http://m:5000?x=1", "http://[::1", 42]


def _bad_url(rng: random.Random, doc: Any) -> None:
    if "mirror" in doc and rng.random() < 0.5:
        doc["mirror"]["url"] = rng.choice(BAD_URLS)
    else:
        doc["proxy"] = {"https": rng.choice(BAD_URLS)}
        doc["access"] = ["proxy"]


BAD_CIDRS = ["10.1.0.0", "10.1.0.0/33", "10.1.0.1/16", "not-a-cidr", "", "10.152.183.0/24",
             "10.1.0.0/16", "::/0", "0.0.0.0/0", 16]


def _bad_cidr(rng: random.Random, doc: Any) -> None:
    net = doc.setdefault("network", {})
    net[rng.choice(["pod_cidr", "service_cidr"])] = rng.choice(BAD_CIDRS)
    if rng.random() < 0.3:
        doc["nodes"][0]["address"] = rng.choice(["10.1.2.3", "10.152.183.9", "300.1.1.1", "x"])


def _unknown(rng: random.Random, doc: Any) -> None:
    mappings = [p for p in _paths(doc) if isinstance(_get(doc, p), dict)]
    target = _get(doc, rng.choice(mappings)) if mappings and rng.random() < 0.6 else doc
    target[rng.choice(["mirorr", "nodes_", "acess", "x", "Proxy", "fallbak"])] = "y"


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _duplicate(rng: random.Random, text: str) -> bytes:
    key = rng.choice([k for k in yaml.safe_load(text)])
    return (text + f"\n{key}: {rng.choice(['[]', '{}', 'x', '1'])}\n").encode()


def _empty(rng: random.Random, text: str) -> bytes:
    return rng.choice([b"", b"\n", b"# nothing\n", b"---\n", b"null\n", b"[]\n", b"42\n"])


def _binary(rng: random.Random, text: str) -> bytes:
    data = rng.randbytes(rng.randrange(1, 4096))
    return data if rng.random() < 0.5 else text.encode()[: rng.randrange(len(text))] + data


def _huge(rng: random.Random, text: str) -> bytes:
    choice = rng.randrange(3)
    if choice == 0:
        return text.encode() + b"#" * (2 * 1024 * 1024)
    doc = yaml.safe_load(text)
    if choice == 1:
        doc["images"] = {"extra": [f"ghcr.io/x/{'a' * rng.randrange(200, 400)}:1"]}
    else:
        doc["nodes"][0]["name"] = "n" * rng.randrange(64, 100_000)
    return yaml.safe_dump(doc).encode()


def _deep(rng: random.Random, text: str) -> bytes:
    n = rng.choice([40, 500, 5000, 20000])
    nest = rng.choice([("[" * n) + ("]" * n), ("{a: " * n) + ("}" * n)])
    return (text + f"\nextra: {nest}\n").encode()


def _truncate(rng: random.Random, text: str) -> bytes:
    return text.encode()[: rng.randrange(len(text))]


KINDS: dict[str, Mutation] = {
    "deleted key": _structural(_delete),
    "wrong type": _structural(_wrong_type),
    "bad URL": _structural(_bad_url),
    "bad CIDR": _structural(_bad_cidr),
    "unknown key": _structural(_unknown),
    "duplicate key": _duplicate,
    "empty": _empty,
    "binary": _binary,
    "huge": _huge,
    "deep": _deep,
    "truncated": _truncate,
}


def mutation(seed: int) -> tuple[str, bytes]:
    rng = random.Random(seed)
    kind = list(KINDS)[seed % len(KINDS)]
    return kind, KINDS[kind](rng, PLANS[rng.choice(list(PLANS))])


def _site(tmp_path: Path, data: bytes) -> tuple[Path, Path]:
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES, site)
    (site / "airgap.yaml").write_bytes(data)
    return site / "airgap.yaml", site / "out"


def _outcome_in_process(plan: Path, out: Path) -> str:
    try:
        tasks.render(Context(), plan=str(plan), out=str(out))
    except UserExit as exc:
        message = str(exc.message)
        assert exc.status == 1 and exc.code == message, message
        lines = message.splitlines()
        assert lines[0].startswith("Error: ") and len(lines[0]) > 10, message[:500]
        assert sum(line.startswith("Error:") for line in lines) == 1, message[:500]
        assert len(message) < 4000, f"an error of {len(message)} characters"
        assert not out.exists(), "a failed render wrote its output"
        return "refused"
    assert (out / "nodes").is_dir()
    return "rendered"


def test_plan_fuzz_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    for seed in range(IN_PROCESS):
        kind, data = mutation(seed)
        case = tmp_path / str(seed)
        plan, out = _site(case, data)
        try:
            result = _outcome_in_process(plan, out)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} ({kind}): {exc}") from None
        except Exception as exc:
            raise AssertionError(
                f"seed {seed} ({kind}): a traceback instead of an Error: line: {exc!r}"
            ) from None
        counts[(kind, result)] += 1
        shutil.rmtree(case)
    with capsys.disabled():
        print(f"\nplan fuzz, {IN_PROCESS} in-process mutations of examples/*.yaml:")
        for kind in KINDS:
            print(f"  {kind:14} rendered {counts[(kind, 'rendered')]:3}  "
                  f"refused {counts[(kind, 'refused')]:3}")
        total = sum(n for (_, r), n in counts.items() if r == "refused")
        print(f"  total: {IN_PROCESS - total} rendered, {total} refused with one Error: line")
    assert sum(counts.values()) == IN_PROCESS
    assert total > IN_PROCESS // 2  # most mutations break the plan; each was refused cleanly


@pytest.mark.parametrize("seed", random.Random(18).sample(range(IN_PROCESS), SUBPROCESS))
def test_plan_fuzz_through_the_invoke_process(tmp_path: Path, seed: int) -> None:
    kind, data = mutation(seed)
    plan, out = _site(tmp_path, data)
    proc = run_task("render", "--plan", str(plan), "--out", str(out))
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, f"seed {seed} ({kind}): {text[:2000]}"
    if proc.returncode == 0:
        assert (out / "nodes").is_dir()
        return
    assert proc.returncode == 1, f"seed {seed} ({kind}): exit {proc.returncode}: {text[:2000]}"
    assert proc.stderr.startswith("Error: "), f"seed {seed} ({kind}): {proc.stderr[:2000]}"
    assert sum(line.startswith("Error:") for line in proc.stderr.splitlines()) == 1
    assert not out.exists(), f"seed {seed} ({kind}): a failed render wrote its output"
