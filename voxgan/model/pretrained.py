"""The pretrained generators shipped with voxgan, as package data in ``voxgan/pretrained/``.

Each ``<name>.pt`` is a generator file: a checkpoint cut down to what generating needs (``format``,
``format_version``, ``voxgan_version``, ``config``, ``step``, ``ema``; no critic, no optimiser), plus
``pretrained``, a dict saying how it was made and how it scored. It loads like any checkpoint, through
:func:`voxgan.model.runs.load_generator` with ``torch.load(weights_only=True)``, offline.
``benchmarks/train_pretrained.py`` trains and writes them, each with ``<name>.md`` beside it: its command
and its evaluation table.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from voxgan.atomic import atomic_open
from voxgan.errors import ConfigError
from voxgan.model.runs import GENERATOR_KEYS, load_checkpoint


def pretrained_folder() -> Path:
    """The installed package's folder of pretrained generators."""
    return Path(str(resources.files("voxgan").joinpath("pretrained")))


def pretrained_names() -> list[str]:
    """The names of the shipped generators (``shapes-16``, ...), sorted."""
    folder = pretrained_folder()
    return sorted(path.stem for path in folder.glob("*.pt")) if folder.is_dir() else []


def pretrained_path(name: str) -> Path:
    """The file of the pretrained generator ``name``; ConfigError (``--pretrained``) naming the choices."""
    names = pretrained_names()
    if name not in names:
        choices = ", ".join(names) or "none are installed"
        raise ConfigError("--pretrained", f"no pretrained generator {name!r}; choose one of: {choices}")
    return pretrained_folder() / f"{name}.pt"


def write_generator_file(checkpoint: Path, out: Path, about: dict) -> None:
    """Write the generator file of ``checkpoint`` (a file or a run folder) to ``out``, atomically, with
    ``about`` (plain strings, numbers, lists and dicts: how it was made, its metrics) as ``pretrained``."""
    state = load_checkpoint(checkpoint)
    kept = {key: state[key] for key in GENERATOR_KEYS}
    kept["ema"] = {name: value.contiguous().clone() for name, value in kept["ema"].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        torch.save({**kept, "pretrained": about}, handle)
