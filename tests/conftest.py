import pytest


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small networks run fastest so on a shared machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """One headless Chromium for the page tests (skipped, saying why, where Debian's chromium is missing)."""
    from tests.browser import SKIP_REASON, Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip(SKIP_REASON)
    with Browser(executable, tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium
