"""Tiny training runs for the model/ tests: narrow networks, small batches, one thread."""

import os
import subprocess
import sys
from pathlib import Path

# Five critic updates a step, as in the original design, so that a step spans five batches.
TINY = dict(batch_size=4, generator_width=4, critic_width=4, log_every=1, n_critic=5)


TINY_ARGS = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]


def single_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def voxgan_train(*args, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "voxgan", "train", *TINY_ARGS, *args]
    return subprocess.run(
        command, cwd=cwd, env=single_thread_env(), capture_output=True, text=True, timeout=300
    )
