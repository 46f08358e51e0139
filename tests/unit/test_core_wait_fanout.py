"""The one deadline helper and the one bounded fan-out (fake clock, real threads)."""

from __future__ import annotations

import threading
import time

import pytest

from airgap.fanout import fan_out, fan_out_by
from airgap.show import human_bytes
from airgap.wait import WaitTimeout, poll, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_poll_returns_the_first_done_result_and_stops() -> None:
    clock, seen = FakeClock(), []
    values = iter([1, 2, 3, 4])
    result, ok = poll(lambda: next(values), lambda v: v >= 3, timeout=10, interval=1,
                      clock=clock, sleep=clock.sleep, between=seen.append)
    assert (result, ok, seen, clock.sleeps) == (3, True, [1, 2], [1, 1])


def test_poll_gives_up_at_the_deadline_with_the_last_result() -> None:
    clock = FakeClock()
    result, ok = poll(lambda: clock.now, lambda v: False, timeout=2.5, interval=1,
                      clock=clock, sleep=clock.sleep)
    assert (ok, result) == (False, 3.0)


def test_wait_until_names_what_it_waited_for_and_the_last_error() -> None:
    clock = FakeClock()

    def check() -> None:
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeout) as err:
        wait_until("the registry", check, timeout=3, interval=1, clock=clock,
                   sleep=clock.sleep)
    assert err.value.brief == "Timed out after 3 s waiting for the registry"
    assert err.value.details == "last error: ConnectionError: refused"
    assert err.value.resolution


def test_wait_until_returns_the_truthy_value() -> None:
    clock = FakeClock()
    values = iter([None, "", "up"])
    assert wait_until("x", lambda: next(values), timeout=10, clock=clock,
                      sleep=clock.sleep) == "up"


def test_fan_out_keeps_order_bounds_threads_and_raises_after_all_finish() -> None:
    running, peak, lock = 0, 0, threading.Lock()
    finished: list[int] = []

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02 * (5 - i % 5))
        with lock:
            running -= 1
            finished.append(i)
        if i == 3:
            raise ValueError("item 3")
        return i * 10

    with pytest.raises(ValueError, match="item 3"):
        fan_out(work, range(10), limit=4)
    assert sorted(finished) == list(range(10))  # nothing abandoned
    assert peak <= 4
    assert fan_out(lambda i: i * 2, range(7), limit=3) == [0, 2, 4, 6, 8, 10, 12]
    assert fan_out_by(len, ["a", "bbb"]) == {"a": 1, "bbb": 3}
    assert fan_out(len, []) == []


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**40)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3072.0 GiB"]
