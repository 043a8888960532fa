"""The one timing loop the benchmarks share: median milliseconds of a call, after a warm-up
call (the first call allocates and fills caches), on the wall clock or the CPU clock."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterable


def elapsed_ms(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return (clock() - start) * 1000


def median_ms(fn: Callable[[], Any], repeats: int, *, clock: Callable[[], float] = time.perf_counter,
              warmup: bool = True) -> float:
    """Median of ``repeats`` timed calls of ``fn`` (after one untimed call when ``warmup``)."""
    if warmup:
        fn()
    return statistics.median(elapsed_ms(fn, clock) for _ in range(repeats))


def median_ms_over(fn: Callable[[Any], Any], items: Iterable[Any], *,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``fn(item)`` over ``items`` (one timed call each; warm up beforehand)."""
    return statistics.median(elapsed_ms(lambda: fn(item), clock) for item in items)
