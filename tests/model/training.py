"""Tiny training runs for the model/ tests: narrow networks, small batches, one thread."""

import os
import subprocess
import sys
from pathlib import Path

TINY = dict(batch_size=4, generator_width=4, critic_width=4, log_every=1)


TINY_ARGS = ["--batch-size", "4", "--generator-width", "4", "--critic-width", "4", "--log-every", "1"]


def single_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def voxgan_train(*args, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "voxgan", "train", *TINY_ARGS, *args]
    return subprocess.run(
        command, cwd=cwd, env=single_thread_env(), capture_output=True, text=True, timeout=300
    )
