"""The ``voxgan`` command line: one thin function per command; the work happens in the stages.

Each command parses its options into its stage's config, calls that stage's entry (``voxgan.ingest``,
``voxgan.model``, ``voxgan.results``) and prints what came back. This is the only module that knows every
stage; nothing imports it. Errors become one
line on stderr: exit 2 for a bad option or value, exit 1 for a failure at run time (a
:class:`~voxgan.errors.VoxganError`). ``VOXGAN_DEBUG=1`` shows the traceback instead.

It is over 600 lines, and ``train`` and ``voxelize`` are long functions, because most of it is option
declarations with their help texts (the README's reference for each command); the logic in them is a few
lines each.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path  # noqa: F401  (used by the command functions)
from typing import Annotated

import typer

from voxgan import __version__
from voxgan.errors import ConfigError, VoxganError

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


# --- voxelize, info, shapes: voxgan.ingest ----------------------------------------------------------


@app.command()
def voxelize(
    input_dir: Annotated[Path, typer.Argument(help="Folder of mesh and voxel files (searched recursively).")],
    output_dir: Annotated[Path, typer.Argument(help="Shard folder to write (resumed if it exists).")],
    recipe: Annotated[
        str | None,
        typer.Option(help="Dataset recipe: a name in pipelines/ (modelnet40, ...) or a .toml path."),
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="auto | modelnet | shapenet | folder | flat [auto].")
    ] = None,
    resolution: Annotated[
        int | None, typer.Option(help="Grid size R, a multiple of 8 up to 256 (16, 32, 64, 128, 256) [16].")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="solid | surface [solid].")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [number of cores].")] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            help="Files per work unit, so at most as many samples per shard (a stack: one per volume) [1024]."
        ),
    ] = None,
    max_faces: Annotated[int | None, typer.Option(help="Refuse meshes with more faces [2000000].")] = None,
    padding: Annotated[
        float | None, typer.Option(help="Empty margin in voxels around each shape [0.5].")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Share put in test by path hash (folder, flat, shapenet) [0.2].")
    ] = None,
    up_axis: Annotated[
        str | None,
        typer.Option(
            help="Up axis of formats with no convention (OBJ, OFF, STL, PLY, binvox, voxel arrays): "
            "x y z -x -y -z [z]; glTF/GLB is always +y up (its spec); shards are +z up."
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(metavar="PATTERN", help="Take only files matching this, e.g. '*.off' (repeatable)."),
    ] = None,
    split_file: Annotated[Path | None, typer.Option(help="ShapeNet's official split CSV (all.csv).")] = None,
    grid_coords: Annotated[
        bool,
        typer.Option(
            "--grid-coords",
            help="Mesh coordinates are grid coordinates (one unit per voxel, or --scale): no normalisation; "
            "brings a voxgan export back unchanged (give the same --up-axis and --scale).",
        ),
    ] = False,
    scale: Annotated[
        float | None,
        typer.Option(help="With --grid-coords: file units per voxel, as voxgan export --scale wrote [1]."),
    ] = None,
    mat_key: Annotated[
        str | None,
        typer.Option(help="Array read from .mat and .npz files [instance, else the only volume-shaped one]."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUTPUT_DIR's shards instead of resuming.")
    ] = False,
    part: Annotated[
        str | None, typer.Option(metavar="K/N", help="Do part K (0 to N-1) of N; then run without it.")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="pool (--workers processes) | ray (pip install 'voxgan[ray]') [pool].")
    ] = "pool",
    ray_address: Annotated[
        str | None, typer.Option(help="With --engine ray: a running cluster's address [a local instance].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Voxelize every mesh and voxel file under INPUT_DIR into HDF5 shards, a manifest.json and a
    preview.png (samples across classes, +z up: check that nothing lies on its back) in OUTPUT_DIR.
    Voxel arrays (.npy, .npz, .mat) give one sample per volume: a stack (N, R, R, R) gives N.

    Example: voxgan voxelize data/ModelNet40 shards --recipe modelnet40 --resolution 32

    On N machines: voxgan voxelize IN OUT --part K/N on each (K = 0 to N-1), then voxgan voxelize IN OUT.
    """
    from voxgan.ingest import pipeline
    from voxgan.ingest.info import format_summary
    from voxgan.ingest.recipes import load_recipe

    try:
        chosen = load_recipe(recipe) if recipe else None
    except VoxganError as error:
        raise typer.BadParameter(str(error), param_hint="--recipe") from None
    options = dict(
        layout=layout,
        resolution=resolution,
        mode=mode,
        workers=workers,
        shard_size=shard_size,
        max_faces=max_faces,
        padding=padding,
        test_fraction=test_fraction,
        up_axis=up_axis,
        include=include or None,
        split_file=split_file,
        grid_coords=grid_coords or None,
        scale=scale,
        mat_key=mat_key,
        overwrite=overwrite,
        part=part,
        engine=engine,
        ray_address=ray_address,
    )
    config = pipeline.make_config(input_dir, output_dir, chosen, **options)
    try:  # a bad value, or OUTPUT_DIR planned with other options: exit 2
        pipeline.check_config(config)
        manifest = pipeline.run_voxelize(
            config, report=lambda line: typer.echo(line, err=True), progress=not quiet
        )
    except pipeline.ConfigError as error:
        raise typer.BadParameter(str(error), param_hint=error.option) from None
    if manifest is not None:
        typer.echo(format_summary(config.output_dir, manifest))


@app.command()
def info(
    shard_dir: Annotated[Path, typer.Argument(help="A shard folder written by voxgan voxelize.")],
    preview: Annotated[
        Path | None, typer.Option(help="Also write a PNG grid of a few samples per class to this file.")
    ] = None,
    html: Annotated[
        bool,
        typer.Option(
            "--html", help="Also write SHARD_DIR/info.html: samples across classes in 3D, counts and errors."
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Only check the folder: every listed shard present, its sha256 and header as the manifest "
            "says. Prints 'verified N shards, M samples', or exits 1 naming the first bad file.",
        ),
    ] = False,
) -> None:
    """Summarise a shard folder and check each shard against the manifest (sha256, header); exit 1
    naming any missing, corrupt or disagreeing shard.

    Example: voxgan info shards --preview shards-preview.png   |   voxgan info shards --html
    """
    from voxgan.ingest.info import INFO_PAGE, run_info, run_verify

    if verify:
        typer.echo(run_verify(shard_dir))
        return

    page = shard_dir / INFO_PAGE if html else None
    summary, problems = run_info(shard_dir, preview, page)
    typer.echo(summary)
    if preview is not None and not problems:
        typer.echo(f"preview: {preview}")
    if page is not None:
        typer.echo(f"page: {page} (open it in a browser: the samples in 3D)")
    if problems:
        raise VoxganError(f"{shard_dir}: {len(problems)} problem(s): {'; '.join(problems)}")


@app.command()
def shapes(
    out_dir: Annotated[
        Path, typer.Argument(metavar="OUT_DIR", help="Folder to create: <class>/{train,test}/<class>_NNNN.*")
    ],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 0,
    train_per_class: Annotated[int, typer.Option(help="Training meshes per class.")] = 100,
    test_per_class: Annotated[int, typer.Option(help="Test meshes per class.")] = 20,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier shapes set in OUT_DIR.")
    ] = False,
) -> None:
    """Generate the built-in procedural mesh dataset: 10 classes of furniture and objects, z up.

    Writes OBJ, OFF, binary STL and PLY files; the folder appears only once complete.

    Example: voxgan shapes data/meshes/shapes && voxgan voxelize data/meshes/shapes shards --recipe shapes
    """
    import time

    from voxgan.ingest.shapes import CLASSES, generate_shapes

    if seed < 0:
        raise typer.BadParameter(f"must be 0 or more, got {seed}", param_hint="--seed")
    for hint, count in (("--train-per-class", train_per_class), ("--test-per-class", test_per_class)):
        if count < 0:
            raise typer.BadParameter(f"must be 0 or more, got {count}", param_hint=hint)
    if train_per_class + test_per_class == 0:
        raise typer.BadParameter("--train-per-class and --test-per-class are both 0: nothing to write")
    start = time.perf_counter()
    counts = generate_shapes(
        out_dir,
        seed=seed,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        overwrite=overwrite,
        progress=True,
    )
    total = sum(sum(split.values()) for split in counts.values())
    typer.echo(
        f"wrote {total} meshes ({len(CLASSES)} classes x {train_per_class} train + {test_per_class} test) "
        f"to {out_dir} in {time.perf_counter() - start:.1f} s"
    )


# --- train: voxgan.model ---------------------------------------------------------------------------


@app.command()
def train(
    ctx: typer.Context,
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="RUN_DIR", help="With --resume: the run folder to continue [newest in --out]."
        ),
    ] = None,
    data: Annotated[
        str, typer.Option(help="A shard folder, synthetic:shapes or synthetic:noise.")
    ] = "synthetic:shapes",
    out: Annotated[
        Path, typer.Option(help="Folder that receives the run folders NNNNN-<description>/.")
    ] = Path("runs"),
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Passes over the data (1,000 volumes for a synthetic source) [50; none with --time-limit]."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Stop after this many steps instead (1 step = 1 G + n_critic D updates)."),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            help="Stop after this many minutes of training (evaluation not counted; a resumed run goes on), "
            "with a checkpoint, the sample grid and, with --eval-every, the metrics."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Volumes per batch, per process.")] = 32,
    resolution: Annotated[
        int | None,
        typer.Option(help="Grid size 16, 32 or 64 of a synthetic source [16]; shards say their own."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order, latents: same seed, same run.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    conditional: Annotated[
        bool | None,
        typer.Option(
            "--conditional/--unconditional",
            help="Class-conditional (generate a chosen class; needs labels) or not [conditional when the "
            "data has two classes or more].",
            show_default=False,
        ),
    ] = None,
    log_every: Annotated[
        str, typer.Option(help="Interval of stats.jsonl lines: training time (10s) or steps (10).")
    ] = "10s",
    checkpoint_every: Annotated[
        str,
        typer.Option(
            help="Checkpoint interval: training time (30s, 10m, 2h) or steps (500); also at the end and on "
            "SIGTERM/SIGINT."
        ),
    ] = "10m",
    keep: Annotated[
        int,
        typer.Option(help="Step snapshots kept in checkpoints/ besides best.pt (0: every one)."),
    ] = 3,
    samples_every: Annotated[
        str,
        typer.Option(
            help="Interval of samples/step-NNNNNNN.png and loss.png (time or steps), and at the end."
        ),
    ] = "1m",
    eval_every: Annotated[
        int, typer.Option(help="Steps between evaluations (0: never); keeps checkpoints/best.pt by 1-NNA.")
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue RUN_DIR (or the newest run in --out) from its latest.pt, with its own options "
            "except the ones given again.",
        ),
    ] = False,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate of both networks (sets the two below).")
    ] = None,
    lr_generator: Annotated[float, typer.Option(help="Adam learning rate of the generator.")] = 4e-4,
    lr_critic: Annotated[float, typer.Option(help="Adam learning rate of the critic.")] = 8e-4,
    n_critic: Annotated[int, typer.Option(help="Critic updates per generator update (one step).")] = 1,
    speck_penalty: Annotated[
        float,
        typer.Option(help="Weight in the generator's loss of loose voxels (no occupied face neighbour)."),
    ] = 0.0,
    generator_width: Annotated[
        int | None,
        typer.Option(
            help="Generator channels at full resolution, doubling per halving [16 at 16³, 8 at 32³, 4 at "
            "64³]."
        ),
    ] = None,
    critic_width: Annotated[
        int | None,
        typer.Option(
            help="Critic channels at full resolution, doubling per halving [16 at 16³, 8 at 32³, 4 at 64³]."
        ),
    ] = None,
    penalty_every: Annotated[
        int, typer.Option(help="Gradient penalty on every k-th critic update, weighted 10k (lazy).")
    ] = 1,
    penalty_fraction: Annotated[
        float, typer.Option(help="Share of each batch the gradient penalty is computed on, in (0, 1].")
    ] = 1.0,
    epoch_size: Annotated[int, typer.Option(help="Volumes per epoch of a synthetic source.")] = 1000,
    generator_attention: Annotated[
        str, typer.Option(help="Grid sizes with self-attention in the generator, e.g. 4, 8 or 4,16; 'none'.")
    ] = "4",
    critic_attention: Annotated[
        str, typer.Option(help="Grid sizes with self-attention in the critic, e.g. 4 or 4,8; 'none'.")
    ] = "4",
    output_layer: Annotated[
        str,
        typer.Option(
            help="The generator's last doubling: transposed (a transposed convolution) or resize "
            "(nearest up-sampling and a 3³ convolution: smoother surfaces, a third fewer steps at 32³)."
        ),
    ] = "transposed",
    augment: Annotated[
        str,
        typer.Option(
            help="What the critic sees, transformed alike for real and generated volumes (DiffAugment): "
            "translation, cutout, both (translation,cutout) or none. For very small datasets: "
            "translated views let samples drift from the centre and the floor."
        ),
    ] = "none",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the generator (CUDA).")] = False,
) -> None:
    """Train the self-attention WGAN-GP on shards or a synthetic source; writes runs/NNNNN-*/.

    Runs under torchrun too (DistributedDataParallel; only rank 0 writes).

    SIGTERM or SIGINT finish the step in progress, save a checkpoint and the sample grid, and exit (0 on
    SIGTERM); --resume continues exactly where the run stopped, to its own target unless you give one.

    Example: voxgan train --data shards --time-limit 20   |   voxgan train --resume   |
    torchrun --nproc_per_node=2 -m voxgan train --steps 1000
    """
    import dataclasses

    from voxgan.model.config import TrainConfig, check_config
    from voxgan.model.runs import find_latest_run
    from voxgan.model.train import TrainingStopped
    from voxgan.model.train import train as run_training

    if lr is not None:
        lr_generator = lr_critic = lr
    if run_dir is not None and not resume:
        raise typer.BadParameter(f"unexpected argument {run_dir}; to continue a run use --resume {run_dir}")
    resume_from = (run_dir or find_latest_run(out)) if resume else None
    config = TrainConfig(
        data=data,
        out=str(out),
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        resolution=resolution,
        seed=seed,
        device=device,
        workers=workers,
        conditional=conditional,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        samples_every=samples_every,
        keep=keep,
        eval_every=eval_every,
        time_limit=time_limit,
        lr_generator=lr_generator,
        lr_critic=lr_critic,
        n_critic=n_critic,
        speck_penalty=speck_penalty,
        generator_width=generator_width,
        critic_width=critic_width,
        penalty_every=penalty_every,
        penalty_fraction=penalty_fraction,
        epoch_size=epoch_size,
        compile=compile,
        augment=_names(augment),
        output_layer=output_layer,
    )
    try:
        check_config(config)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint=error.option) from None
    config = dataclasses.replace(
        config,
        generator_attention=_grid_sizes(generator_attention, "--generator-attention"),
        critic_attention=_grid_sizes(critic_attention, "--critic-attention"),
    )
    given = {name for name in ctx.params if _typed(ctx, name)}
    if "lr" in given:
        given |= {"lr_generator", "lr_critic"}
    evaluate = None
    if config.eval_every or (resume and "eval_every" not in given):
        from voxgan.results.evaluate import evaluate_during_training as evaluate
    try:
        run = run_training(config, resume=resume_from, evaluate=evaluate, changes=given)
    except ConfigError as error:  # a bad value, or one a resumed run cannot take: exit 2
        raise typer.BadParameter(str(error), param_hint=error.option) from None
    except TrainingStopped as stopped:  # the trainer said how to resume
        raise typer.Exit(0 if stopped.signal_number == signal.SIGTERM else 130) from None
    if run is not None:  # None on the other ranks under torchrun
        typer.echo(f"run: {run}")


# --- export, evaluate: voxgan.results -----------------------------------------------------------------


@app.command()
def export(
    format: Annotated[
        str, typer.Option("--format", help="obj | stl | ply | glb | off | binvox | npy | png | gif | html.")
    ],
    run: Annotated[
        Path | None, typer.Option(help="Run folder (its latest checkpoint) [newest under ./runs].")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint file instead of a run.")] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(help="A generator shipped with voxgan: shapes-16, shapes-16-cond, shapes-32-cond."),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Export volumes of this shard folder instead.")] = None,
    split: Annotated[str, typer.Option(help="Split of --data to take volumes from.")] = "test",
    num: Annotated[int, typer.Option(help="How many volumes.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the latents (or of the choice of --data volumes).")] = 0,
    threshold: Annotated[float, typer.Option(help="A voxel is occupied above this value.")] = 0.5,
    mesh: Annotated[str, typer.Option(help="smooth (marching cubes) | blocks (voxel cubes).")] = "smooth",
    class_name: Annotated[
        str | None, typer.Option("--class", help="Only this class (conditional model or labelled shards).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = Path("exports"),
    up_axis: Annotated[
        str | None,
        typer.Option(
            help="Up axis of obj, stl, ply, off and binvox files: x y z -x -y -z [z]; glb is always +y up "
            "(its spec)."
        ),
    ] = None,
    scale: Annotated[
        float, typer.Option(help="Units per voxel of meshes and binvox (glb: metres, e.g. 0.05).")
    ] = 1.0,
    keep_specks: Annotated[
        bool,
        typer.Option(
            "--keep-specks",
            help="A generator's volumes as made: keep the pieces under 5% of a volume's largest piece.",
        ),
    ] = False,
) -> None:
    """Write generated (or dataset) volumes as meshes, voxel files, an image grid, an animation or a page.

    Meshes are grid coordinates (voxel (i, j, k) spans [i, i+1)^3) times --scale, turned from +z up to
    the format's up axis: glb +y (glTF), the others --up-axis [z]; watertight, with outward normals.
    voxgan voxelize --grid-coords with the same --up-axis and --scale reads them back unchanged.
    A generator's volumes lose their specks (pieces under 5% of the volume's largest) unless --keep-specks.
    gif: a loop through latent space (a model) or a turntable (--data). html: one self-contained page with
    every volume in 3D, turnable with the mouse; it opens from disk with no network.

    Example: voxgan export --format glb --num 16 --mesh blocks --scale 0.05 --out exports   |
    voxgan export --pretrained shapes-16-cond --class chair --format png
    """
    from voxgan.results.export import ExportConfig, check_export_config, export_volumes

    config = ExportConfig(
        format=format.lower(),
        run=run,
        checkpoint=checkpoint,
        pretrained=pretrained,
        data=data,
        split=split,
        num=num,
        seed=seed,
        threshold=threshold,
        mesh=mesh,
        class_name=class_name,
        out=out,
        up_axis=up_axis.lower() if up_axis else None,
        scale=scale,
        keep_specks=keep_specks,
    )
    try:
        check_export_config(config)
    except VoxganError as error:
        raise typer.BadParameter(str(error)) from None
    result = export_volumes(config)
    for line in result.warnings:
        typer.echo(f"voxgan: warning: {line}", err=True)
    typer.echo(f"source: {result.source}")
    if result.frame:
        typer.echo(result.frame)
    shown = ", ".join(str(p) for p in result.files[:3]) + (" ..." if len(result.files) > 3 else "")
    typer.echo(f"wrote {len(result.files)} file(s) to {out}: {shown}")


@app.command()
def evaluate(
    data: Annotated[
        str | None, typer.Option(help="Shard folder (or synthetic:shapes) to compare with [the run's data].")
    ] = None,
    run: Annotated[
        Path | None, typer.Option(help="Run folder (its latest checkpoint) [newest under ./runs].")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint file instead of a run.")] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(help="A generator shipped with voxgan instead (results in runs/pretrained-NAME/)."),
    ] = None,
    split: Annotated[str, typer.Option(help="The reference split.")] = "test",
    num: Annotated[
        int | None, typer.Option(help="Reference volumes (a seeded subset) [the whole split].")
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N.")] = "auto",
    no_context: Annotated[
        bool, typer.Option("--no-context", help="Skip the train-split and noise context rows.")
    ] = False,
    keep_specks: Annotated[
        bool,
        typer.Option(
            "--keep-specks",
            help="Score the samples as made (by default without specks, as voxgan export writes them).",
        ),
    ] = False,
    draws: Annotated[
        int,
        typer.Option(
            help="Sets of samples to score, new latents each: the model row is their mean ± standard "
            "deviation (one set's 1-NNA moves by several points from one set to the next)."
        ),
    ] = 1,
) -> None:
    """MMD, COV and 1-NNA (1 - IoU and Chamfer distances) and a voxel FID of a model against a split.

    Prints a markdown table with context rows (train split: the ceiling; noise: the floor), appends
    a line to the run's metrics.jsonl, writes the table to the run folder and report.html beside it: the
    table, the metrics over the run, and each generated sample in 3D beside its nearest training and test
    volumes (one self-contained page).

    Example: voxgan evaluate --data shards --split test --num 1000
    """
    from voxgan.results.evaluate import evaluate_run

    if run is not None and checkpoint is not None:
        raise typer.BadParameter("give --run or --checkpoint, not both")
    if num is not None and num < 2:
        raise typer.BadParameter(f"must be at least 2, got {num}", param_hint="--num")
    if draws < 1:
        raise typer.BadParameter(f"must be at least 1, got {draws}", param_hint="--draws")
    from voxgan.model.train import resolve_device

    try:
        device = str(resolve_device(device))
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint=error.option) from None
    if sum(x is not None for x in (run, checkpoint, pretrained)) > 1:
        raise typer.BadParameter("give at most one of --run, --checkpoint and --pretrained")
    source, folder = run or checkpoint, None
    if pretrained is not None:
        from voxgan.model.pretrained import pretrained_path

        try:
            source, folder = pretrained_path(pretrained), Path("runs") / f"pretrained-{pretrained}"
        except ConfigError as error:
            raise typer.BadParameter(str(error), param_hint=error.option) from None
    if source is None:
        from voxgan.model.runs import find_latest_run

        source = find_latest_run(Path("runs"))
        typer.echo(f"voxgan: no --run given: evaluating the newest run, {source}", err=True)
    record = evaluate_run(
        source,
        data,
        split=split,
        num=num,
        device=device,
        context=not no_context,
        folder=folder,
        keep_specks=keep_specks,
        draws=draws,
    )
    typer.echo(record["table"])
    folder = Path(record["table_path"]).parent
    typer.echo(f"\nappended to {folder / 'metrics.jsonl'}; table: {record['table_path']}")
    typer.echo(
        f"report: {record['report_path']} (open it in a browser: the samples in 3D beside their nearest data)"
    )


def _grid_sizes(text: str, hint: str) -> tuple[int, ...]:
    """Parse '8,16' or 'none' into attention grid sizes (whether the networks have them is checked with
    the config, once the grid size is known)."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        message = f"expected sizes like 8 or 4,8 or none, got {text!r}"
        raise typer.BadParameter(message, param_hint=hint) from None
    return sizes


def _names(text: str) -> tuple[str, ...]:
    """Parse 'translation,cutout' or 'none' into a tuple of names (checked with the config)."""
    if text.strip().lower() in ("none", ""):
        return ()
    return tuple(part.strip().lower() for part in text.split(","))


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


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
