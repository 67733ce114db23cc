import pytest
import torch

from tests.model.training import TINY
from voxgan.model.config import TrainConfig
from voxgan.model.train import train


@pytest.fixture(scope="session")
def short_run(tmp_path_factory):
    """Two steps of 5 batches of 4 over a 20-volume synthetic epoch (one epoch per step), a checkpoint and
    a picture after each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    run = train(
        TrainConfig(out=str(out), steps=2, epoch_size=20, checkpoint_every="1", samples_every="1", **TINY)
    )
    torch.set_num_threads(threads)
    return run
