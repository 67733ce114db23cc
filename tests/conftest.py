import pytest


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small networks run fastest so on a shared machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_filesystem(tmp_path):
    """A function ``make(megabytes) -> Path``: a real tmpfs of that size mounted on a fresh folder, so a
    write past it fails with ENOSPC like a full disk; ``grow(path, megabytes)`` frees space by remounting it
    larger. Skips where this process may not mount (only root may). Unmounted after the test."""
    import subprocess

    mounted = []

    def make(megabytes: float):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={int(megabytes * 1024)}k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'})")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def grow(folder, megabytes: float) -> None:
    """Remount the tmpfs at ``folder`` (from ``small_filesystem``) at a larger size, keeping its files."""
    import subprocess

    subprocess.run(["mount", "-o", f"remount,size={int(megabytes * 1024)}k", str(folder)], check=True)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """One headless Chromium for the page tests (skipped, saying why, where Debian's chromium is missing)."""
    from tests.browser import SKIP_REASON, Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip(SKIP_REASON)
    with Browser(executable, tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium
