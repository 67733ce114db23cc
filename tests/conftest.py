import pytest


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small networks run fastest so on a shared machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
