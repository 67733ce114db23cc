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


def test_train_and_evaluate_read_device_the_same_way(tmp_path):
    """One device parser for every command: a bad name is a usage error (exit 2) naming --device; a GPU
    that is not there is a failure (exit 1) in one line; the CPU test machines have none."""
    import torch

    for command in (["train", "--steps", "1"], ["evaluate", "--run", str(tmp_path)]):
        bad = run(*command, "--device", "gpu")
        assert bad.returncode == 2, (command, bad.stderr)
        (line,) = bad.stderr.strip().splitlines()
        assert "Invalid value for --device: device must be auto, cpu, cuda or cuda:N, got gpu" in line
    if torch.cuda.device_count() > 7:
        return
    for command in (
        ["train", "--steps", "1", "--out", str(tmp_path / "runs")],
        ["evaluate", "--run", str(tmp_path)],
    ):
        missing = run(*command, "--device", "cuda:7")
        assert missing.returncode == 1, (command, missing.stderr)
        assert missing.stderr.strip().splitlines()[-1].startswith("voxgan: error: --device cuda:7: ")
