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


class TinyDisk:
    """A real, small filesystem for full-disk tests (see the ``full_disk_dir`` fixture).

    path : a folder on it. kind : ``"tmpfs"`` (a tmpfs mounted at ``path``, ``size`` bytes in all) or
    ``"fsize"`` (where mounting is not permitted: ``path`` is an ordinary folder, and ``preexec_fn``, given
    to ``subprocess.run``, caps each file the child writes at ``size`` bytes with RLIMIT_FSIZE, so its
    writes fail with EFBIG as a full disk fails them with ENOSPC). grow(size) frees space: the tmpfs is
    remounted larger (its files stay), or the cap is raised; fill() takes every free byte and empty()
    gives them back. Run the code under test in a subprocess with ``preexec_fn=disk.preexec_fn`` so that
    both kinds hold.
    """

    def __init__(self, path, size: int):
        import subprocess

        self.path, self.size = path, size
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True)  # fmt: skip
        self.kind = "tmpfs" if mounted.returncode == 0 else "fsize"

    @property
    def preexec_fn(self):
        if self.kind == "tmpfs":
            return None
        size = self.size

        def cap():
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

        return cap

    def grow(self, size: int) -> None:
        import subprocess

        self.size = size
        if self.kind == "tmpfs":
            subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> None:
        """Leave no free space: a file ``.filler`` in ``path`` takes what is left of the tmpfs (or,
        under RLIMIT_FSIZE, the cap drops to 0 bytes a file). :meth:`grow` or :meth:`empty` frees it."""
        if self.kind == "fsize":
            self.size = 0
            return
        import os

        fd = os.open(self.path / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # full
            pass
        finally:
            os.close(fd)

    def empty(self) -> None:
        """Free the space :meth:`fill` took."""
        (self.path / ".filler").unlink(missing_ok=True)
        if self.kind == "fsize":
            self.size = 1 << 40

    def unmount(self) -> None:
        import subprocess

        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def full_disk_dir(tmp_path):
    """A factory of tiny real filesystems: ``full_disk_dir(size_bytes, name="disk")`` -> :class:`TinyDisk`.

    Mounts a tmpfs of ``size_bytes`` at ``tmp_path / name`` where the machine allows it (root, as in CI),
    else falls back to RLIMIT_FSIZE in the child process (``disk.preexec_fn``); never a mock. Everything is
    unmounted at the end of the test. Example::

        disk = full_disk_dir(64 * 1024)
        done = subprocess.run([...voxgan..., str(disk.path / "out")], preexec_fn=disk.preexec_fn)
        disk.grow(64 * 1024 * 1024)   # free space, then run again: it resumes
    """
    disks = []

    def make(size: int, name: str = "disk") -> TinyDisk:
        disk = TinyDisk(tmp_path / name, size)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.unmount()
