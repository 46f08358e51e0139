"""mirror_images: check, count, sync, verify, each phase timed and fanned out.

1. Check. Every image's tag in the mirror is compared with its expected digest
   (images.lock when there is one, else what the upstream serves now); an image already
   there, whole, is not handed to regsync, so a no-change re-sync costs one HEAD per
   image on the mirror and never touches the upstream.
2. Count. The blobs each missing image lacks in the mirror (see plan.py).
3. Sync. regsync over only what is missing, seeds first (see sync.py and plan.py).
4. Verify. Every copied image by digest, and what really moved (see verify.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from airgap.errors import AirgapError, PlanError
from airgap.fanout import fan_out
from airgap.fileio import write_atomic
from airgap.mirror.model import (
    MirrorError,
    MirrorProgress,
    MirrorReport,
    SilentProgress,
    Status,
    Work,
)
from airgap.mirror.plan import (
    CHECK_WORKERS,
    SeenBlobs,
    missing_blobs,
    mount_shared,
    plan_work,
    seed_split,
    unique_images,
    upstream_access_for,
)
from airgap.mirror.sync import RETRY_RESOLUTION, run_regsync
from airgap.mirror.verify import count_copied, raise_unless_complete, verify_image
from airgap.plan import Plan, check_mirror_paths, mirror_ca_pem
from airgap.plan.images import ImageRef
from airgap.plan.lock import ImageLock
from airgap.registry import (
    ManifestNotFound,
    RegistryAccessError,
    RegistryClient,
    api_reference,
    mirror_client,
    upstream_client,
)
from airgap.render.sync import DEFAULT_PARALLEL, RegistryAccess, dump_sync_config, sync_config


class _MirrorRun:
    """One run: the plan, the registry clients, progress, and each phase's seconds."""

    def __init__(self, plan: Plan, refs: Sequence[ImageRef], *,
                 upstreams: Sequence[RegistryAccess], parallel: int,
                 progress: MirrorProgress) -> None:
        self.plan = plan
        self.upstreams = upstreams
        self.parallel = parallel
        self.progress = progress
        ca = mirror_ca_pem(plan)
        self.ca_pem = ca.decode() if ca else None
        self.mirror = mirror_client(plan)
        self.ups: dict[str, RegistryClient] = {
            r.registry: upstream_client(upstream_access_for(r.registry, upstreams))
            for r in refs}
        self.phases: dict[str, float] = {}
        self.seen = SeenBlobs()

    def sync_config(self, refs: Sequence[ImageRef]) -> dict[str, Any]:
        return sync_config(self.plan, refs, ca_pem=self.ca_pem, upstreams=self.upstreams,
                           parallel=self.parallel)

    def phase(self, key: str, text: str, fn: Callable[[Work], None],
              work: Sequence[Work]) -> None:
        """fn over work, fanned out, with a progress bar that moves as each one ends."""
        self.progress.start(key, text, len(work))
        fan_out(partial(self._advancing, key, fn), work, limit=CHECK_WORKERS,
                name=f"mirror-{key}")

    def _advancing(self, key: str, fn: Callable[[Work], None], w: Work) -> None:
        try:
            fn(w)
        finally:
            self.progress.advance(key)

    # the four steps, per image

    def check(self, w: Work) -> None:
        if w.result.expected is None:
            up = self.ups[w.source.registry].head_manifest(*api_reference(w.source))
            if up is None:
                w.result.status = Status.missing_upstream
                w.result.detail = f"{w.source} not found upstream"
                return
            w.result.expected = up.digest
        verify_image(self.mirror, w, before=True)

    def count(self, w: Work) -> None:
        try:
            missing_blobs(self.ups[w.source.registry], self.mirror, w, self.seen)
        except ManifestNotFound as exc:
            w.result.status = Status.missing_upstream
            w.result.detail = f"{exc} not found upstream"

    def sync(self, pending: Sequence[Work], report: MirrorReport, *,
             timeout: float | None, env: dict[str, str] | None) -> None:
        """regsync over pending: seeds (shared layers) first, mounted, then the rest."""
        report.regsync_ran = True
        seeds, rest, shared = seed_split(pending)
        stages = [(seeds, "regsync: shared layers"), (rest, "regsync")] if seeds and rest \
            else [(list(pending), "regsync")]
        for n, (batch, label) in enumerate(stages):
            if n == 1:
                mount_shared(self.mirror, seeds, rest, shared)
            report.regsync_error = run_regsync(
                self.plan, self.sync_config([w.source for w in batch]), batch, self.mirror,
                self.progress, label=f"{label}: {len(batch)} image(s)", timeout=timeout,
                extra_env=env)
            if report.regsync_error:
                break

    def verify(self, w: Work) -> None:
        verify_image(self.mirror, w, before=False)
        count_copied(self.mirror, w)

    def close(self) -> None:
        self.mirror.close()
        for c in self.ups.values():
            c.close()


def _still_missing(work: Iterable[Work]) -> list[Work]:
    wanted = (Status.missing, Status.mismatch, Status.incomplete)
    return [w for w in work if w.result.status in wanted]


def mirror_images(
    plan: Plan,
    images: Iterable[ImageRef],
    *,
    lock: ImageLock | None = None,
    upstreams: Sequence[RegistryAccess] = (),
    config_out: Path | None = None,
    parallel: int = DEFAULT_PARALLEL,
    progress: MirrorProgress | None = None,
    regsync_timeout: float | None = None,
    regsync_env: dict[str, str] | None = None,
) -> MirrorReport:
    """Sync images into the plan's mirror and verify each one by digest.

    Raises MirrorError (with the report) when anything is missing or wrong, and
    RegistryAccessError when the mirror cannot be used at all (down, wrong
    credentials, untrusted certificate) before anything is copied.
    """
    start = time.monotonic()
    if plan.mirror is None:
        raise PlanError(f"{plan.source}: mirror mode needs a mirror: section",
                        resolution="Add mirror: url: http(s)://HOST:PORT to the plan.")
    refs = unique_images(images)
    check_mirror_paths(plan, refs)
    if not refs:
        raise AirgapError("no images to mirror",
                          resolution="Give an images.lock (--lock) or an image list (--images).")
    run = _MirrorRun(plan, refs, upstreams=upstreams, parallel=parallel,
                     progress=progress or SilentProgress())
    # The full file, for the user to read and run by hand (same as `invoke render`);
    # built even when not written, so that a bad --parallel is refused before any work.
    full = run.sync_config(refs)
    if config_out is not None:
        write_atomic(config_out, dump_sync_config(full, config_out.name))
    run.mirror.ping()
    work = plan_work(plan, refs, lock)
    report = _run_phases(run, work, config_out=config_out, start=start,
                         timeout=regsync_timeout, env=regsync_env)
    run.close()
    report.seconds = time.monotonic() - start
    raise_unless_complete(report)
    return report


def _run_phases(run: _MirrorRun, work: list[Work], *, config_out: Path | None, start: float,
                timeout: float | None, env: dict[str, str] | None) -> MirrorReport:
    """The four phases in order; each one's seconds land in the report's phases."""
    assert run.plan.mirror is not None
    t = time.monotonic()
    run.phase("check", "checking mirror", run.check, work)
    run.phases["check"] = time.monotonic() - t
    pending = _still_missing(work)

    t = time.monotonic()
    if pending:
        run.phase("plan", "counting blobs to copy", run.count, pending)
        pending = [w for w in pending if w.result.status is not Status.missing_upstream]
    run.phases["plan"] = time.monotonic() - t

    report = MirrorReport(mirror=run.plan.mirror.url, images=[w.result for w in work],
                          config_file=config_out, phases=run.phases)
    t = time.monotonic()
    if pending:
        run.sync(pending, report, timeout=timeout, env=env)
    run.phases["sync"] = time.monotonic() - t

    t = time.monotonic()
    if pending:
        try:
            run.phase("verify", "verifying by digest", run.verify, pending)
        except RegistryAccessError as exc:
            report.seconds = time.monotonic() - start
            raise MirrorError(
                f"the mirror stopped answering during the sync: {exc.brief}", report,
                details=report.regsync_error, resolution=RETRY_RESOLUTION) from None
    run.phases["verify"] = time.monotonic() - t
    return report


__all__ = ["mirror_images"]
