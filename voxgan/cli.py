"""The ``voxgan`` command line: one thin function per command; the work happens in the modules.

Each command parses its options into its module's config and calls that module. Errors become one
line on stderr: exit 2 for a bad option or value, exit 1 for a failure at run time (a
:class:`~voxgan.errors.VoxganError`). ``VOXGAN_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path  # noqa: F401  (used by the command functions)
from typing import Annotated

import typer

from voxgan import __version__
from voxgan.errors import VoxganError

app = typer.Typer(
    name="voxgan",
    help="Mesh datasets to voxel shards, a self-attention WGAN-GP 3D GAN, and volumes back to meshes.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voxgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """voxgan: voxelize mesh datasets, train a 3D GAN, export and evaluate what it makes."""


# --- voxelize, info: voxgan.pipeline ------------------------------------------------------------

# --- shapes: voxgan.shapes -------------------------------------------------------------------------

# --- train: voxgan.train ---------------------------------------------------------------------------

# --- export, evaluate: voxgan.export, voxgan.metrics -----------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turn errors into one line and an exit code."""
    debug = os.environ.get("VOXGAN_DEBUG") == "1"
    try:
        code = app(args=argv, prog_name="voxgan", standalone_mode=False)
    except typer.TyperException as error:  # bad option or value
        if debug:
            raise
        ctx = getattr(error, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _fail(f"{error.format_message()}{hint}", getattr(error, "exit_code", 2))
    except VoxganError as error:
        if debug:
            raise
        _fail(str(error), 1)
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", 130)
    except Exception as error:  # a bug: still one line, with the way to see more
        if debug:
            raise
        _fail(f"internal error: {type(error).__name__}: {error} (VOXGAN_DEBUG=1 shows the traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo("voxgan: error: " + " ".join(message.split()), err=True)
    sys.exit(code)
