"""``FCM_APP_TRACE=1``: one stderr line per page run and per column run, with its duration
(how benchmarks/app_rerender.py and a developer see where a rerun's time goes)."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

ENABLED = bool(os.environ.get("FCM_APP_TRACE"))


@contextmanager
def span(what: str) -> Iterator[dict]:
    """Times the block; the block may add words to the line through the yielded dict."""
    info: dict = {}
    start = time.perf_counter()
    try:
        yield info
    finally:
        if ENABLED:
            extra = " ".join(f"{k}={v}" for k, v in info.items())
            print(f"[fcm-app] {time.time():.3f} {what} {extra} took {time.perf_counter() - start:.3f}s",
                  file=sys.stderr, flush=True)
