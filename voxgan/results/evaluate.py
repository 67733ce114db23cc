"""``voxgan evaluate``: a model's volumes against a split, as metrics, a table and a line of metrics.jsonl.

:func:`evaluate_run` evaluates a run's latest checkpoint against a split and adds two context rows
computed the same way: the train split against the chosen split (what a perfect generator would
score) and ``synthetic:noise`` volumes (what a useless one scores). The numbers are those of
:mod:`voxgan.results.metrics`. :func:`evaluate_during_training` is what ``voxgan train --eval-every``
calls after each checkpoint.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from voxgan.atomic import atomic_open
from voxgan.data import make_loader
from voxgan.errors import VoxganError, out_of_space
from voxgan.model.runs import latent_batch, load_checkpoint, load_generator, run_folder_of, run_generator
from voxgan.results.metrics import (
    FeatureNet,
    ReferenceSet,
    classifier_outputs,
    frechet_distance,
    shard_classifier,
)
from voxgan.shards import read_split


def reference_volumes(
    data: str | Path, split: str, num: int | None, resolution: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The reference set: ``num`` volumes (all when None) of ``split`` of a shard folder or synthetic source.

    Returns (N, R, R, R) bool, (N,) int64 labels and the class names.
    """
    if str(data).startswith("synthetic:"):
        return synthetic_volumes(str(data), split, num or 1000, resolution, seed)
    volumes, labels, class_names = read_split(Path(data), split)
    if volumes.shape[1] != resolution:
        raise VoxganError(
            f"{data}: the shards are {volumes.shape[1]}³ but the model makes {resolution}³ volumes; "
            "evaluate against shards of the model's resolution"
        )
    if num is not None and num < len(volumes):
        chosen = np.sort(np.random.default_rng(seed).choice(len(volumes), size=num, replace=False))
        volumes, labels = volumes[chosen], labels[chosen]
    return volumes, labels, class_names


def synthetic_volumes(
    source: str, split: str, num: int, resolution: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``num`` volumes of a synthetic source: (N, R, R, R) bool, (N,) int64 labels, class names."""
    loader = make_loader(
        source,
        batch_size=min(num, 256),
        split=split,
        shuffle=False,
        seed=seed,
        resolution=resolution,
        epoch_size=num,
    )
    loader.set_epoch(0)
    volumes, labels = [], []
    for voxels, batch_labels in loader:
        volumes.append(voxels[:, 0].numpy().astype(bool))
        labels.append(batch_labels.numpy())
    class_names = tuple(getattr(loader.dataset, "class_names", ()) or ())
    return np.concatenate(volumes)[:num], np.concatenate(labels)[:num], class_names


def fid_and_accuracy(net: FeatureNet | None, generated: np.ndarray, reference: np.ndarray, device: str):
    """(voxel FID, classifier accuracy) of generated against reference volumes; (None, None) without a net."""
    if net is None:
        return None, None
    features_g, _ = classifier_outputs(net.model, generated, device)
    features_r, _ = classifier_outputs(net.model, reference, device)
    return frechet_distance(features_g, features_r), net.accuracy


def evaluate_volumes(
    generate,
    data: str | Path,
    *,
    split: str = "test",
    num: int | None = None,
    resolution: int,
    class_names: tuple[str, ...] = (),
    conditional: bool = False,
    context: bool = True,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Evaluate a volume source against ``split`` of ``data``.

    ``generate(count, labels)`` returns (count, R, R, R) bool; ``labels`` is (count,) int64 for a
    conditional model (then the generated set has the reference set's labels) or None.
    Returns the metrics record without ``step`` (see :func:`evaluate_run`).
    """
    started = time.perf_counter()
    reference, labels, data_classes = reference_volumes(data, split, num, resolution, seed)
    if len(reference) < 2:
        raise VoxganError(
            f"{data}: split {split!r} has {len(reference)} volume(s); evaluation needs at least 2"
        )
    count = len(reference)
    use_labels = conditional and (labels >= 0).all()
    generated = generate(count, labels if use_labels else None)
    assert generated.shape == reference.shape, (generated.shape, reference.shape)
    references = ReferenceSet(reference, device)
    net = None
    if not str(data).startswith("synthetic:"):
        net = shard_classifier(Path(data), split, device)
    record = {"split": split, "num": count, "data": str(data)}
    record.update(references.compare(generated))
    record["fid"], record["fid_classifier_accuracy"] = fid_and_accuracy(net, generated, reference, device)
    if context:
        record["context"] = context_rows(references, data, split, count, resolution, net, device, seed)
    if use_labels:
        record["per_class"] = per_class_rows(
            generated, reference, labels, class_names or data_classes, device
        )
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def context_rows(
    references: ReferenceSet, data, split: str, count: int, resolution: int, net, device: str, seed: int
) -> dict:
    """The same metrics for the train split (a perfect generator's score) and for noise (a useless one's)."""
    reference = references.prepared.occupancy
    rows = {}
    try:
        train, _, _ = reference_volumes(data, "train", count, resolution, seed + 1)
    except VoxganError:
        train = None
    if train is not None and len(train) >= 2:
        rows["train"] = references.compare(train)
        rows["train"]["fid"], _ = fid_and_accuracy(net, train, reference, device)
        rows["train"]["num"] = len(train)
    noise, _, _ = synthetic_volumes("synthetic:noise", split, count, resolution, seed)
    rows["noise"] = references.compare(noise)
    rows["noise"]["fid"], _ = fid_and_accuracy(net, noise, reference, device)
    rows["noise"]["num"] = len(noise)
    return rows


def per_class_rows(
    generated: np.ndarray, reference: np.ndarray, labels: np.ndarray, class_names, device: str
) -> dict:
    """MMD, COV, 1-NNA per class: the generated volumes (N, R, R, R) bool made for each class's labels
    against that class's references (N, R, R, R) bool; labels (N,) int are shared by both sets."""
    rows = {}
    for label in np.unique(labels):
        members = labels == label
        if members.sum() < 2:
            continue
        name = class_names[label] if label < len(class_names) else str(label)
        scores = ReferenceSet(reference[members], device).compare(generated[members])
        rows[name] = {"num": int(members.sum()), **scores}
    return rows


def generator_source(generator, threshold: float = 0.5, seed: int = 0, device: str = "cpu"):
    """``generate(count, labels)`` for :func:`evaluate_volumes` from a generator (latents from ``seed``)."""
    calls = [0]

    def generate(count: int, labels: np.ndarray | None) -> np.ndarray:
        calls[0] += 1
        latents = latent_batch(count, generator.latent_dim, seed * 1000 + calls[0])
        return run_generator(generator, latents, labels, device) > threshold

    return generate


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    *,
    split: str = "test",
    num: int | None = None,
    device: str = "cpu",
    context: bool = True,
) -> dict:
    """Evaluate a run's latest checkpoint (or a checkpoint file) and record the result in its run folder.

    ``data`` defaults to the run's training data. Appends the record (``step``, ``split``, ``num``,
    ``mmd_iou``, ``cov_iou``, ``nna_iou``, ``mmd_cd``, ``cov_cd``, ``nna_cd``, ``fid``,
    ``fid_classifier_accuracy``, ``context``, ``per_class`` for conditional models) to the run's
    ``metrics.jsonl``, writes the markdown table to ``eval-step-NNNNNNN.md`` and returns the record
    with ``table`` (the markdown) and ``table_path`` added.
    """
    run_dir = Path(run_dir)
    generator, config = load_generator(run_dir, device=device)
    step = int(load_checkpoint(run_dir).get("step", 0))
    data = data if data is not None else config.get("data")
    if not data:
        raise VoxganError(f"{run_dir}: the run does not say which data it was trained on; pass --data")
    record = {"kind": "evaluate", "step": step}
    record.update(
        evaluate_volumes(
            generator_source(generator, device=device),
            data,
            split=split,
            num=num,
            resolution=generator.resolution,
            class_names=tuple(config.get("class_names") or ()),
            conditional=generator.num_classes > 0,
            context=context,
            device=device,
        )
    )
    folder = run_folder_of(run_dir)
    table = markdown_table(record)
    table_path = folder / f"eval-step-{step:07d}.md"
    # the table first, the record last: a full disk between them leaves no record, so the same command
    # run again writes the same table and appends the record once
    with out_of_space(folder, "run the same command again"):
        write_text_atomic(table_path, table + "\n")
        append_json_line(folder / "metrics.jsonl", record)
    return {**record, "table": table, "table_path": str(table_path)}


def evaluate_during_training(run_dir: Path, device) -> None:
    """``voxgan train --eval-every``: :func:`evaluate_run` on the checkpoint just saved, without the context
    rows (they do not change during training); a failure is reported on one line and training goes on.

    The command line hands this to :func:`voxgan.model.train.train`, which calls it with the run folder
    and the training device (a ``torch.device``)."""
    from tqdm import tqdm

    try:
        record = evaluate_run(run_dir, device=device.type, context=False)
    except VoxganError as error:
        tqdm.write(f"voxgan train: evaluation skipped: {error}", file=sys.stderr)
        return
    summary = ", ".join(
        f"{k} {record[k]:.4g}" for k in ("nna_iou", "cov_iou", "fid") if record.get(k) is not None
    )
    tqdm.write(f"voxgan train: step {record['step']}: {summary} (metrics.jsonl)", file=sys.stderr)


def append_json_line(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line with a single write (whole lines even with concurrent writers).

    A write cut short (a full disk) is taken back: the file is truncated to its size before, and the
    OSError raised, so the file never ends in half a line."""
    line = (json.dumps(record, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes written", str(path))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same folder and a rename."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def number(value, percent: bool = False, digits: int = 4) -> str:
    """A table cell: '-' for None or NaN, a percentage, or a number with ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}g}"


def table_row(name: str, values: dict) -> str:
    """One markdown row of the metrics table."""
    cells = [
        number(values.get("mmd_iou")),
        number(values.get("cov_iou"), percent=True),
        number(values.get("nna_iou"), percent=True),
        number(values.get("mmd_cd")),
        number(values.get("cov_cd"), percent=True),
        number(values.get("nna_cd"), percent=True),
        number(values.get("fid")),
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def markdown_table(record: dict) -> str:
    """The metrics of a record as a markdown table: the model, the context rows, then each class."""
    header = (
        "| set | MMD-IoU ↓ | COV-IoU ↑ | 1-NNA-IoU (50% best) | MMD-CD ↓ | COV-CD ↑ | 1-NNA-CD (50% best) "
        "| voxel FID ↓ |"
    )
    lines = [
        f"Evaluation at step {record.get('step', '?')}: {record['num']} generated vs {record['num']} "
        f"volumes of split '{record['split']}' of {record.get('data', '?')}",
        "",
        header,
        "|" + " --- |" * 8,
        table_row("model", record),
    ]
    context = record.get("context", {})
    if "train" in context:
        lines.append(table_row("train split (ceiling)", context["train"]))
    if "noise" in context:
        lines.append(table_row("synthetic:noise (floor)", context["noise"]))
    for name, values in record.get("per_class", {}).items():
        lines.append(table_row(f"class {name} ({values['num']})", values))
    accuracy = record.get("fid_classifier_accuracy")
    if accuracy is not None:
        lines += [
            "",
            f"voxel FID features: a 3D classifier trained on the train split "
            f"({100 * accuracy:.1f}% test accuracy).",
        ]
    else:
        lines += ["", "voxel FID: not available (needs a shard folder with at least two classes)."]
    return "\n".join(lines)
