import subprocess
import sys

from voxgan import __version__


def run(*args):
    return subprocess.run([sys.executable, "-m", "voxgan", *args], capture_output=True, text=True)


def test_version():
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"voxgan {__version__}"


def test_unknown_option_is_one_line_and_exit_2():
    done = run("--bogus")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["voxgan: error: No such option: --bogus (see: voxgan --help)"]
