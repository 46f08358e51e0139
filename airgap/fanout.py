"""The one bounded parallel map: run a function for every item on a small thread pool.

Nodes, images and checks are fanned out through here, so the bound and the order of
results are the same everywhere: results come back in the order of the items, and the
first exception raised by any call is raised once every call has finished.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)

DEFAULT_LIMIT = 8


def fan_out(fn: Callable[[T], R], items: Iterable[T], *, limit: int = DEFAULT_LIMIT,
            name: str = "fanout") -> list[R]:
    """``[fn(item) for item in items]``, at most ``limit`` at a time, in item order."""
    work: Sequence[T] = list(items)
    if not work:
        return []
    if len(work) == 1 or limit <= 1:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(max_workers=min(limit, len(work)),
                            thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, item) for item in work]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]


def fan_out_by(fn: Callable[[K], R], keys: Iterable[K], *, limit: int = DEFAULT_LIMIT,
               name: str = "fanout") -> dict[K, R]:
    """``{key: fn(key)}``, fanned out like :func:`fan_out`, in key order."""
    ordered = list(keys)
    return dict(zip(ordered, fan_out(fn, ordered, limit=limit, name=name), strict=True))
