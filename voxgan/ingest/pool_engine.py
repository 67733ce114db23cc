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
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait

from voxgan.ingest.plan import Unit
from voxgan.ingest.sample import Outcome, Settings, voxelize_source
from voxgan.ingest.units import UnitResult, unit_result

LOOKAHEAD = 64  # files handed out beyond the first outcome still awaited


def start_worker() -> None:
    """In a worker process: Ctrl-C is the parent's; die with the parent (Linux) so no worker is orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_loop(connection, settings: Settings) -> None:
    """A worker process: voxelize each source its connection brings, answer on it, until None or EOF."""
    start_worker()
    while True:
        try:
            source = connection.recv()
        except EOFError:
            return
        if source is None:
            return
        connection.send(voxelize_source(settings, source))


class Worker:
    """One worker process with a pipe of its own, so a worker killed half-way through an answer leaves
    nothing half-read or locked for the others (a shared result queue would hang the run)."""

    def __init__(self, settings: Settings):
        context = multiprocessing.get_context()
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_loop, args=(child, settings), daemon=True)
        self.process.start()
        child.close()

    def ask(self, source: str) -> bool:
        """Hand it one source; False if the worker is gone."""
        try:
            self.connection.send(source)
        except OSError:
            return False
        return True

    def answer(self) -> Outcome | None:
        """Its outcome for the source it was handed, or None if it died first."""
        try:
            return self.connection.recv()
        except (EOFError, OSError):  # EOF, or EOF part-way through a message
            return None

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.join()


def run_isolated(settings: Settings, source: str) -> Outcome:
    """Voxelize one file in a fresh process, so a crash (segfault, out of memory) is its error."""
    worker = Worker(settings)
    try:
        outcome = worker.answer() if worker.ask(source) else None
    finally:
        worker.stop()
    if outcome is None:
        return Outcome(source, reason="the worker process died reading this file (a crash in a parser?)")
    return outcome


def outcomes_in_order(settings: Settings, sources: list[str], workers: int) -> Iterator[Outcome]:
    """Voxelize ``sources`` and yield their outcomes in the same order, whatever ``workers`` is.

    workers=1 runs in this process. Otherwise up to ``workers`` processes take one file at a time, at most
    ``LOOKAHEAD`` files ahead of the first outcome not yet given (outcomes held for order stay few); when a
    worker dies its file is done again alone in a fresh process (an error only if that dies too: the
    file's own crash), a new worker takes its place, and the rest goes on.
    """
    if workers <= 1:
        for source in sources:
            yield voxelize_source(settings, source)
        return
    idle: list[Worker] = []
    busy: dict[Worker, int] = {}  # each worker at work, and the index of its source
    done: dict[int, Outcome] = {}
    handed = given = 0
    try:
        while given < len(sources):
            while handed < len(sources) and len(busy) < workers and handed - given < LOOKAHEAD:
                worker = idle.pop() if idle else Worker(settings)
                if worker.ask(sources[handed]):
                    busy[worker] = handed
                    handed += 1
                else:  # it died while idle: a new one takes its place
                    worker.stop()
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
            for worker in [w for w in busy if w.connection in ready or w.process.sentinel in ready]:
                index = busy.pop(worker)
                outcome = worker.answer()
                if outcome is None:
                    worker.stop()
                    outcome = run_isolated(settings, sources[index])
                else:
                    idle.append(worker)
                done[index] = outcome
            while given in done:
                yield done.pop(given)
                given += 1
    finally:
        for worker in [*idle, *busy]:
            worker.stop()


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
