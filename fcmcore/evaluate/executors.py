"""Where a sweep's tasks run: serially, on local processes, or on a Dask cluster.

``run_tasks(tasks, workers=..., scheduler=..., on_done=..., fn=...)`` calls ``on_done(fn(task))``
in the main process as each task finishes, whichever executor ran it. ``fn`` is the image
sweep's ``process_image`` by default (video sweeps pass their ``process_point``); it must be
importable at module level (spawned processes and Dask workers import it). Local processes are spawned
(fork after torch/OpenMP started can hang) with one torch thread each.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from ..errors import FCMError
from .sweep_worker import init_worker, process_image


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


TaskFn = Callable[[Any], dict]


def run_tasks(tasks: Sequence[Any], *, workers: int, scheduler: Any, on_done: Callable[[dict], None],
              fn: TaskFn = process_image) -> None:
    if not tasks:
        return
    if scheduler is not None:
        run_dask(tasks, scheduler, on_done, fn)
    elif workers <= 1 or len(tasks) == 1:
        for task in tasks:
            on_done(fn(task))
    else:
        run_local_processes(tasks, workers, on_done, fn)


def run_local_processes(tasks: Sequence[Any], workers: int, on_done: Callable[[dict], None],
                        fn: TaskFn = process_image) -> None:
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=init_worker)
    try:
        futures = [pool.submit(fn, t) for t in tasks]
        for fut in as_completed(futures):
            try:
                output = fut.result()  # re-raises a worker's error here
            except BrokenProcessPool:
                raise FCMError("a sweep worker process died (out of memory?); "
                               "retry with fewer --workers") from None
            on_done(output)
    finally:
        # on an error or Ctrl-C: drop queued tasks; running ones end within one image
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(tasks: Sequence[Any], scheduler: Any, on_done: Callable[[dict], None], fn: TaskFn = process_image) -> None:
    try:
        from distributed import Client, as_completed  # why: Dask is heavy; only --scheduler uses it
    except ImportError:
        raise FCMError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    own = not isinstance(scheduler, Client)
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise FCMError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    else:
        client = scheduler
    try:
        futures = client.map(fn, tasks, pure=False)
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
        finally:
            client.cancel(futures)
    finally:
        if own:
            client.close()
