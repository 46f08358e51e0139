"""The one deadline helper: call something until it is done or time runs out.

Every wait in the library and the lab goes through here, so that clocks and sleeps can
be injected (unit tests pass a fake clock) and a time-out always names what it waited
for and what was seen last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from airgap.errors import AirgapError

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class WaitTimeout(AirgapError):
    """A wait ran out of time; the brief says what it waited for."""


def poll(
    check: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    between: Callable[[T], None] | None = None,
) -> tuple[T, bool]:
    """Call ``check`` until ``done(result)`` or the deadline: (last result, whether done).

    ``check`` runs at least once; ``between`` (progress) runs after each result that is
    not done yet, before the sleep.
    """
    deadline = clock() + timeout
    while True:
        result = check()
        if done(result):
            return result, True
        if clock() >= deadline:
            return result, False
        if between is not None:
            between(result)
        sleep(interval)


def wait_until(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.5,
    resolution: str | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> T:
    """Call ``check`` until it returns something truthy; WaitTimeout names ``what``.

    An exception from ``check`` counts as "not yet" (a daemon that is still starting
    raises); its text is kept as the last error for the time-out's details.
    """
    last: list[str] = [""]

    def attempt() -> T | None:
        try:
            return check()
        except AirgapError as exc:
            last[0] = exc.brief
        except Exception as exc:  # clients raise plain exceptions while booting
            last[0] = f"{type(exc).__name__}: {exc}"
        return None

    result, ok = poll(attempt, bool, timeout=timeout, interval=interval, clock=clock,
                      sleep=sleep)
    if ok and result is not None:
        return result
    raise WaitTimeout(
        f"Timed out after {timeout:.0f} s waiting for {what}",
        details=f"last error: {last[0]}" if last[0] else None,
        resolution=resolution or "Check that it is running and reachable, then try again.",
    )
