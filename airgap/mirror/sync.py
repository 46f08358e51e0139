"""regsync, run once over only what is missing, and watched while it runs.

MIRROR/USERNAME/PASSWORD go in its environment (never on its command line, never in the
file). regsync says nothing when an image is done, so the mirror is polled for the
pending images: progress moves as images land, and a mirror that stops answering for
MIRROR_DOWN_GRACE seconds stops regsync at once instead of regclient's back-off
retrying for minutes.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airgap import process, tools
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.mirror.model import MirrorProgress, Work
from airgap.plan import Plan, mirror_credentials
from airgap.registry import RegistryAccessError, RegistryClient
from airgap.render.sync import MIRROR_ENV, PASSWORD_ENV, SYNC_FILE, USERNAME_ENV, dump_sync_config
from airgap.wait import poll

POLL_INTERVAL = 0.5
MIRROR_DOWN_GRACE = 10.0
STOP_TIMEOUT = 10.0
RETRY_RESOLUTION = ("Bring the mirror back and run `invoke mirror` again: images and blobs "
                    "already copied are found and not sent again.")

_LOG_ERROR = re.compile(r"level=(ERROR|WARN)\b.*")
# Distribution reports ENOSPC as {"Op":"write",...,"Err":28} inside a 500 response.
_NO_SPACE = re.compile(r'no space left on device|disk quota|insufficient storage|HTTP 507'
                       r'|\\?"Err\\?":\s*28\b', re.IGNORECASE)
_STORE_FAILED = re.compile(r"failed to send blob.*\[http (5\d\d|404)\]")


class _Watch:
    """A running regsync and the images it still owes the mirror."""

    def __init__(self, proc: subprocess.Popen[bytes], mirror: RegistryClient,
                 pending: Sequence[Work], progress: MirrorProgress) -> None:
        self.proc = proc
        self.mirror = mirror
        self.progress = progress
        self.waiting = {id(w): w for w in pending}
        self.down_since: float | None = None
        self.mirror_down = False

    def look(self) -> bool:
        """One look: True once regsync has exited or the mirror has been down too long."""
        if self.proc.poll() is not None:
            return True
        try:
            for key, w in list(self.waiting.items()):
                info = self.mirror.head_manifest(w.repo, w.reference)
                if info is not None and info.digest == w.result.expected:
                    del self.waiting[key]
                    self.progress.advance("sync")
            self.down_since = None
        except RegistryAccessError:
            now = time.monotonic()
            self.down_since = self.down_since or now
            if now - self.down_since > MIRROR_DOWN_GRACE:
                self.mirror_down = True
        return self.mirror_down

    def nap(self, seconds: float) -> None:
        """Sleep between looks, waking as soon as regsync exits."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(seconds)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(STOP_TIMEOUT)


def regsync_env(plan: Plan, extra_env: dict[str, str] | None) -> dict[str, str]:
    """regsync's environment: the mirror's host and, when the plan names them, credentials."""
    assert plan.mirror is not None
    env = dict(extra_env or {})
    env[MIRROR_ENV] = plan.mirror.host
    creds = mirror_credentials(plan)
    if creds is not None:
        env[USERNAME_ENV], env[PASSWORD_ENV] = creds
    return env


def run_regsync(plan: Plan, config: dict[str, Any], pending: Sequence[Work],
                mirror: RegistryClient, progress: MirrorProgress, *, label: str,
                timeout: float | None, extra_env: dict[str, str] | None) -> str | None:
    """Run regsync once over config; returns None on success, else the error text."""
    assert plan.mirror is not None
    env = regsync_env(plan, extra_env)
    progress.start("sync", label, len(pending))
    regsync = tools.find_tool("regsync")
    with tempfile.TemporaryDirectory(prefix="airgap-regsync-") as tmp:
        cfg = Path(tmp) / SYNC_FILE
        write_atomic(cfg, dump_sync_config(config), 0o600)
        argv = [str(regsync), "once", "-c", str(cfg), "-v", "warn"]
        with open(Path(tmp) / "stderr", "w+b") as err_file:
            proc = process.popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
            watch = _Watch(proc, mirror, pending, progress)
            try:
                _, finished = poll(watch.look, bool, interval=POLL_INTERVAL, sleep=watch.nap,
                                   timeout=math.inf if timeout is None else timeout)
                if not finished:
                    watch.stop()
                    raise AirgapError(f"regsync did not finish within {timeout:.0f} s",
                                      resolution="Run `invoke mirror` again; what is "
                                      "already in the mirror is not copied again.")
                if watch.mirror_down:
                    watch.stop()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err_file.seek(0)
            stderr = err_file.read().decode(errors="replace")
    progress.done("sync")
    if watch.mirror_down:
        raise RegistryAccessError(
            f"the mirror ({plan.mirror.url}) stopped answering during the sync; "
            "regsync was stopped",
            details=regsync_errors(stderr) or None, resolution=RETRY_RESOLUTION)
    if proc.returncode == 0:
        return None
    text = regsync_errors(stderr)
    if _NO_SPACE.search(stderr):
        text = "the mirror ran out of disk space (no space left on device)\n" + text
    elif _STORE_FAILED.search(stderr):
        # A full disk does not always say so: Distribution may answer a blob upload with
        # a bare 500, or lose the upload and answer 404 (seen with a full test disk).
        text = ("the mirror failed to store blobs (HTTP 500, or an upload it lost): check "
                "its storage first (disk space), then its log\n" + text)
    return f"regsync exited {proc.returncode}:\n{text}"


def _shorten(line: str, limit: int = 400) -> str:
    line = re.sub(r"^time=\S+ ", "", line)
    return line if len(line) <= limit else line[:limit] + " ..."


def regsync_errors(stderr: str) -> str:
    """The lines of regsync's log that say what failed (at most the last ten)."""
    errors = [m.group(0) for m in _LOG_ERROR.finditer(stderr)]
    lines = [e for e in errors if 'msg="Failed to sync"' in e] or errors or \
        stderr.strip().splitlines()
    return "\n".join(_shorten(line) for line in lines[-10:])
