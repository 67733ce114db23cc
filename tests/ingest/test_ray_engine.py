"""`voxgan voxelize --engine ray` on a local Ray instance (one for the module): the same output as a run on
one machine, also when a worker is killed with SIGKILL in the middle of a unit."""

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from tests.ingest.test_parts import same_output, start, write_chairs
from tests.ingest.test_pipeline import voxelize, write_spheres

ray = pytest.importorskip("ray", reason="the Ray tests need the extra: pip install 'voxgan[ray]'")


@pytest.fixture(scope="module")
def cluster():
    """A new local Ray instance of 2 CPUs without a dashboard (whatever other cluster this machine runs);
    yields its address."""
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    context = ray.init(address="local", num_cpus=2, **quiet)
    yield context.address_info["address"]
    ray.shutdown()


def test_ray_makes_what_one_machine_makes(tmp_path, cluster):
    write_chairs(tmp_path / "in")
    voxelize(tmp_path / "in", tmp_path / "one", shard_size=2)
    manifest = voxelize(tmp_path / "in", tmp_path / "ray", shard_size=2, engine="ray")
    assert manifest["config"]["engine"] == "ray"
    same_output(tmp_path / "ray", tmp_path / "one")


def unit_tasks() -> list[int]:
    """Pids of the Ray workers running a unit now (Ray titles them ``ray::voxelize_unit``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::voxelize_unit"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find the Ray workers")
def test_a_ray_worker_killed_mid_unit_is_retried_and_the_output_is_the_same(tmp_path, cluster):
    write_spheres(tmp_path / "in", 8)  # 64³, 2 files a unit: a unit takes long enough to be killed in
    voxelize(tmp_path / "in", tmp_path / "one", resolution=64, shard_size=2)
    options = ["--resolution", 64, "--shard-size", 2, "--quiet"]
    driver = start(
        "voxelize", tmp_path / "in", tmp_path / "ray", *options, "--engine", "ray", "--ray-address", cluster
    )
    deadline = time.monotonic() + 300
    while not (busy := unit_tasks()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert busy, "no Ray worker ran a unit"
    os.kill(busy[0], signal.SIGKILL)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    same_output(tmp_path / "ray", tmp_path / "one")
