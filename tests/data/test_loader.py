"""voxgan.data.loader: DataLoader workers (start methods, persistent, four), resume inside an epoch, and
errors from workers reaching the main process as one line."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.data.shard_folders import epoch_ids, flip_bytes, sample_ids, write_folder
from voxgan.data import make_loader
from voxgan.errors import VoxganError


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_worker_start_methods_and_persistent_workers(folder, context):
    reference = make_loader(folder, batch_size=64, seed=5, shuffle_buffer=512)
    loader = make_loader(
        folder,
        batch_size=64,
        seed=5,
        shuffle_buffer=512,
        num_workers=2,
        multiprocessing_context=context,
        persistent_workers=True,
    )
    for epoch in (0, 1):  # the same workers must follow set_epoch
        got = np.concatenate(epoch_ids(loader, epoch))
        expected = np.concatenate(epoch_ids(reference, epoch))
        assert sorted(got) == list(range(1850))
        assert np.array_equal(got[:64], expected[:64])  # worker 0 starts with the first shuffle window
    assert len(epoch_ids(loader, 1)) == loader.num_batches


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_four_workers_cover_the_split(folder):
    loader = make_loader(folder, batch_size=32, num_workers=4, shuffle_buffer=128)
    ids = np.concatenate(epoch_ids(loader))
    assert sorted(ids) == list(range(1850)) and len(epoch_ids(loader)) == loader.num_batches


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_where_the_epoch_stopped(folder, workers):
    loader = make_loader(folder, batch_size=32, seed=2, shuffle_buffer=128, num_workers=workers)
    full = epoch_ids(loader, epoch=3)
    for start in (0, 5, 17, len(full)):
        loader.set_position(3, start)
        rest = [sample_ids(v) for v, _ in loader]
        assert len(rest) == len(full) - start
        assert all(np.array_equal(a, b) for a, b in zip(rest, full[start:], strict=True))
    with pytest.raises(VoxganError, match="start batch"):
        loader.set_position(3, len(full) + 1)


def test_worker_failure_message_reaches_the_command_line(tmp_path):
    folder = tmp_path / "cli"
    write_folder(folder, [100])
    flip_bytes(folder / "train-00000.h5")
    script = textwrap.dedent(
        f"""
        from voxgan import data
        from voxgan.errors import VoxganError
        try:
            list(data.make_loader({str(folder)!r}, batch_size=8, num_workers=2))
        except VoxganError as error:
            print("ERR", error)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR ") and out.stdout.count("\n") == 1 and "train-00000.h5" in out.stdout


def test_bad_rank_and_empty_epochs_are_refused(folder):
    with pytest.raises(VoxganError, match="rank 2 is not in 0..world_size-1"):
        make_loader(folder, batch_size=8, rank=2, world_size=2)
    with pytest.raises(VoxganError, match="make no whole batch of 1000 per rank"):
        make_loader(folder, batch_size=1000, drop_last=True, rank=0, world_size=2)
    with pytest.raises(VoxganError, match="make no whole batch"):
        make_loader("synthetic:noise", batch_size=64, epoch_size=10, drop_last=True)
