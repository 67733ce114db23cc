"""``--engine pool`` (the default): the plan's work units file by file on a process pool of this machine.

Each worker process keeps the run's settings and voxelizes one file per task
(:func:`voxgan.ingest.sample.voxelize_source`); the outcomes come back in the files' order, whatever the
worker count, and a worker that dies (a crash in a parser, out of memory) costs only its file an error.
``--engine ray`` is :mod:`voxgan.ingest.ray_engine`.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import signal
import sys
from collections.abc import Callable, Iterator

from voxgan.ingest.plan import Unit
from voxgan.ingest.sample import Outcome, Settings, voxelize_source
from voxgan.ingest.units import UnitResult, unit_result

_worker_settings: Settings | None = None


def start_worker(settings: Settings) -> None:
    """Worker process initialiser: keep the settings; die with the parent (Linux) so no worker is orphaned."""
    global _worker_settings
    _worker_settings = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_voxelize(source: str) -> Outcome:
    """Entry point of a pool task."""
    assert _worker_settings is not None
    return voxelize_source(_worker_settings, source)


def run_isolated(settings: Settings, source: str) -> Outcome:
    """Voxelize one file in a fresh process, so a crash (segfault, out of memory) is its error."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, initializer=start_worker, initargs=(settings,)) as pool:
            return pool.submit(worker_voxelize, source).result()
    except BrokenProcessPool:
        return Outcome(source, reason="the worker process died reading this file (a crash in a parser?)")


def outcomes_in_order(settings: Settings, sources: list[str], workers: int) -> Iterator[Outcome]:
    """Voxelize ``sources`` and yield their outcomes in the same order, whatever ``workers`` is.

    workers=1 runs in this process. Otherwise a process pool works in chunks; when a worker dies the
    pool is rebuilt, the chunk it was on is redone one file per process, and the rest goes on.
    """
    if workers <= 1:
        for source in sources:
            yield voxelize_source(settings, source)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    position = 0
    while position < len(sources):
        pending = sources[position:]
        chunk = max(1, min(16, len(pending) // (workers * 8)))
        try:
            with ProcessPoolExecutor(workers, initializer=start_worker, initargs=(settings,)) as pool:
                for outcome in pool.map(worker_voxelize, pending, chunksize=chunk):
                    position += 1
                    yield outcome
        except BrokenProcessPool:
            for source in sources[position : position + chunk]:
                position += 1
                yield run_isolated(settings, source)


def pool_results(
    settings: Settings, todo: list[Unit], workers: int, tick: Callable[[int], object]
) -> Iterator[UnitResult]:
    """Do the units ``todo`` file by file on ``workers`` processes; yield their results in unit order.

    tick : called with 1 after each file (a progress bar's ``update``).
    """
    outcomes = outcomes_in_order(settings, [source for unit in todo for source in unit.sources], workers)
    counted = ticking(outcomes, tick)
    for unit in todo:
        yield unit_result(unit, itertools.islice(counted, len(unit.sources)))


def ticking(items: Iterator, tick: Callable[[int], object]) -> Iterator:
    """Yield ``items``, calling ``tick(1)`` for each."""
    for item in items:
        tick(1)
        yield item
