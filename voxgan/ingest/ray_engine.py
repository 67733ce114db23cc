"""``--engine ray``: the plan's work units as Ray tasks; the driver commits them in unit order.

Each task is sent the settings and one unit (relative paths and labels, never file contents), reads the
unit's files under INPUT_DIR as its node sees it (so INPUT_DIR must have the same path on every node: a
shared file system) and returns the unit's samples (:func:`voxgan.ingest.units.voxelize_unit`). Ray
retries a task whose worker died, :data:`MAX_RETRIES` times. The driver writes every shard, record and
the manifest, so OUTPUT_DIR need only be on the driver's machine and the bytes are those of a run on
one machine. Ray is an optional extra: ``pip install 'voxgan[ray]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from voxgan.errors import VoxganError
from voxgan.ingest.plan import Unit
from voxgan.ingest.sample import Settings, one_line
from voxgan.ingest.units import UnitResult, voxelize_unit

MAX_RETRIES = 3  # times Ray reruns a unit whose worker process or node died


@contextmanager
def connected(address: str | None, cpus: int) -> Iterator:
    """Yield the ``ray`` module connected to the cluster at ``address``, or to a new local instance of
    ``cpus`` CPUs, shut down on leaving; a process that called ``ray.init`` itself keeps its instance."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=cpus, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise VoxganError(
            f"cannot reach {where} ({one_line(error)}); start a cluster with `ray start --head` and "
            "pass its address to --ray-address, or leave --ray-address out"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_results(
    settings: Settings, todo: list[Unit], *, address: str | None, cpus: int, tick: Callable[[int], object]
) -> Iterator[UnitResult]:
    """Do the units ``todo`` as Ray tasks; yield their results in unit order.

    tick : called with a unit's file count when its result arrives. A unit that still fails after
    :data:`MAX_RETRIES` retries is skipped, and a VoxganError naming it ends the run once the others
    are yielded (the completed units stay done).
    """
    if not todo:
        return
    with connected(address, cpus) as ray:
        task = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(voxelize_unit)
        shared = ray.put(settings)
        pending = [task.remote(shared, unit) for unit in todo]
        failed = []
        for index, unit in enumerate(todo):
            try:
                result = ray.get(pending[index])
            except ray.exceptions.RayError as error:
                failed.append(f"{unit.name}: {one_line(error)}")
                continue
            finally:
                pending[index] = None  # Ray frees a result nobody refers to
            tick(len(unit.sources))
            yield result
    if failed:
        raise VoxganError(
            f"{len(failed)} unit(s) failed on Ray after {MAX_RETRIES} retries ({failed[0]}); the units "
            "done are kept: run the same command without --engine ray to finish on this machine"
        )
