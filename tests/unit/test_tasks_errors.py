"""Bad input to the tasks, run as a user runs them: a clean `Error:`, never a traceback.

Every case here fails before any network use (the plan's mirror and nodes are on a
loopback port no case connects to); the cases that must try the network first are in
tests/integration/test_tasks_errors_network.py.

Not covered: a non-number for an int flag (`--parallel abc`, `--timeout x`). invoke
casts those while parsing argv, before any task code runs, and prints its own
ValueError traceback; no task can catch it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.taskrun import assert_clean_error, bad_input_workdir, run_task

PORT = 9  # never connected to by these cases


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return bad_input_workdir(tmp_path, PORT)


# (id, argv with {w} for the work dir, text stderr must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    ("render-missing-plan", ["render", "--plan", "{w}/nope.yaml", "--out", "{w}/out"],
     ["nope.yaml"]),
    ("render-missing-image-list",
     ["render", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--images", "{w}/nope.txt"],
     ["nope.txt: image list not found", "Resolution:"]),
    ("mirror-no-plan-flag", ["mirror"], ["--plan FILE is required"]),
    ("mirror-missing-plan", ["mirror", "--plan", "{w}/nope.yaml"], ["nope.yaml"]),
    ("mirror-missing-bundle", ["mirror", "--plan", "{w}/plan.yaml", "--bundle", "{w}/nobundle"],
     ["nobundle: bundle directory not found", "Resolution:"]),
    ("mirror-missing-lock", ["mirror", "--plan", "{w}/plan.yaml", "--lock", "{w}/images.lock"],
     ["images.lock: images.lock not found", "Resolution:"]),
    ("mirror-missing-ca", ["mirror", "--plan", "{w}/plan.yaml", "--upstream-ca", "{w}/nope.pem"],
     ["--upstream-ca", "nope.pem: CA file not found", "Resolution:"]),
    ("mirror-ca-not-pem",
     ["mirror", "--plan", "{w}/plan.yaml", "--upstream-ca", "{w}/not-a-ca.pem"],
     ["--upstream-ca", "not-a-ca.pem: not a PEM certificate"]),
    ("mirror-parallel-0", ["mirror", "--plan", "{w}/plan.yaml", "--parallel", "0"],
     ["--parallel 0", "Resolution:"]),
    ("sideload-no-out", ["sideload", "--plan", "{w}/plan.yaml"], ["--out DIR"]),
    ("sideload-bad-platform",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--platform", "amd64"],
     ["--platform"]),
    ("sideload-bad-source",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--source", "ftp://x"],
     ["--source 'ftp://x': not a registry URL"]),
    ("sideload-no-export-missing-out",
     ["sideload", "--plan", "{w}/plan.yaml", "--no-export", "--out", "{w}/missing"],
     ["missing: directory not found", "Resolution:"]),
    ("sideload-no-export-empty-out",
     ["sideload", "--plan", "{w}/plan.yaml", "--no-export", "--out", "{w}/empty"],
     ["empty: no *.tar archives", "Resolution:"]),
    ("sideload-missing-lock",
     ["sideload", "--plan", "{w}/plan.yaml", "--out", "{w}/out", "--lock", "{w}/x.lock"],
     ["x.lock: images.lock not found"]),
    ("verify-missing-bundle", ["verify", "--bundle", "{w}/nobundle"], ["nobundle"]),
    ("verify-malformed-manifest", ["verify", "--bundle", "{w}/bad-bundle"],
     ["manifest.json: images[0]: expected {\"ref\"", "Resolution:"]),
    ("prepare-missing-plan", ["prepare", "--plan", "{w}/nope.yaml", "--bundle", "{w}/b"],
     ["nope.yaml"]),
    ("preflight-missing-plan", ["preflight", "--plan", "{w}/nope.yaml"], ["nope.yaml"]),
    ("deploy-missing-bundle", ["deploy", "--plan", "{w}/nope.yaml", "--bundle", "{w}/b"],
     ["nope.yaml"]),
    ("init-bad-mode", ["init", "--out", "{w}/a.yaml", "--mode", "mirorr"], ["--mode 'mirorr'"]),
]


@pytest.mark.parametrize(("argv", "wanted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clean_error(work: Path, argv: list[str], wanted: list[str]) -> None:
    args = [a.replace("{w}", str(work)) for a in argv]
    assert_clean_error(run_task(*args), wanted)
    assert not (work / "out").exists(), "a failed task wrote its output"
