"""``voxgan evaluate``: a model's volumes against a split, as metrics, a table and a line of metrics.jsonl.

:func:`evaluate_run` evaluates a run's latest checkpoint against a split and adds two context rows
computed the same way: the train split against the chosen split (what a perfect generator would
score) and ``synthetic:noise`` volumes (what a useless one scores), and the chosen split's own profile
(one-piece share, the classes its classifier names): the data row. The numbers are those of
:mod:`voxgan.results.metrics`. :func:`evaluate_during_training` is what ``voxgan train --eval-every``
calls after each checkpoint. Each evaluation also writes the run's ``report.html``
(:mod:`voxgan.results.report`): the table, the curves over the run and each sample beside its nearest
training and test volumes. The samples are scored as ``voxgan export`` writes them, without their specks.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from voxgan.atomic import append_json_line, write_text_atomic
from voxgan.data import make_loader
from voxgan.errors import VoxganError, out_of_space
from voxgan.model.runs import latent_batch, load_generator, run_folder_of, run_generator
from voxgan.results.meshing import SPECK_SHARE, without_specks
from voxgan.results.metrics import (
    METRIC_KEYS,
    FeatureNet,
    ReferenceSet,
    classifier_outputs,
    frechet_distance,
    histogram_distance,
    piece_counts,
    shape_profile,
    shard_classifier,
)
from voxgan.results.report import markdown_table, write_report
from voxgan.shards import read_manifest, read_shard, read_split


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


def classified(net: FeatureNet | None, volumes: np.ndarray, device: str):
    """The classifier's (features (N, 64), probabilities (N, C)) of (N, R, R, R) volumes; (None, None)
    without a classifier."""
    if net is None:
        return None, None
    return classifier_outputs(net.model, volumes, device)


@dataclass
class Scorer:
    """Scores any set of volumes the same way against one reference split (its volumes, labels and
    classifier outputs computed once); ``data_row`` is the reference split's own profile."""

    references: ReferenceSet
    labels: np.ndarray
    net: FeatureNet | None
    class_names: tuple[str, ...]
    device: str
    features: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    data_row: dict = field(default_factory=dict)

    def __post_init__(self):
        reference = self.references.prepared.occupancy
        self.features, self.probabilities = classified(self.net, reference, self.device)
        known = self.labels if (self.labels >= 0).all() else None
        profile = shape_profile(reference, self.probabilities, known, self.class_names)
        self.data_row = {"num": len(reference), **profile}

    def score(self, volumes: np.ndarray, asked: np.ndarray | None = None) -> dict:
        """MMD, COV, 1-NNA (both distances), voxel FID, the shape profile (one piece, class accuracy
        against ``asked`` (N,) int when given, confident share, class histogram and its distance to the
        data's) of (N, R, R, R) bool volumes."""
        features, probabilities = classified(self.net, volumes, self.device)
        row = self.references.compare(volumes)
        row["fid"] = frechet_distance(features, self.features) if features is not None else None
        row.update(shape_profile(volumes, probabilities, asked, self.class_names))
        if "class_histogram" in row:
            row["class_tv"] = histogram_distance(row["class_histogram"], self.data_row["class_histogram"])
        return row


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
    draws: int = 1,
) -> dict:
    """Evaluate a volume source against ``split`` of ``data``.

    ``generate(count, labels)`` returns (count, R, R, R) bool, a new set at each call; ``labels`` is
    (count,) int64 for a conditional model (then the generated set has the reference set's labels) or None.
    With ``draws`` > 1 the model's numbers are the mean over that many sets, with ``{key}_std`` beside the
    set metrics and FID (:func:`mean_of_draws`); the per-class rows are those of the first set.
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
    net = None
    if not str(data).startswith("synthetic:"):
        net = shard_classifier(Path(data), split, device)
    scorer = Scorer(ReferenceSet(reference, device), labels, net, class_names or data_classes, device)
    record = {"split": split, "num": count, "data": str(data)}
    asked = labels if use_labels else None
    scores = [scorer.score(generated, asked)]
    scores += [scorer.score(generate(count, asked), asked) for _ in range(draws - 1)]
    record.update(mean_of_draws(scores))
    record["fid_classifier_accuracy"] = net.accuracy if net else None
    record["reference"] = scorer.data_row
    if context:
        record["context"] = context_rows(scorer, data, split, count, resolution, seed)
    if use_labels:
        record["per_class"] = per_class_rows(scorer, generated)
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


SPREAD_KEYS = (*METRIC_KEYS, "fid")  # the numbers a model row shows with their spread over draws


def mean_of_draws(scores: list[dict]) -> dict:
    """One row from the scores of several generated sets: each number the mean over the sets, ``{key}_std``
    (the sample standard deviation) for :data:`SPREAD_KEYS` and ``draws`` (how many) when there are two or
    more; the class histogram of the first set."""
    if len(scores) == 1:
        return dict(scores[0])
    row = dict(scores[0])
    for key, value in scores[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [float(score[key]) for score in scores]
            row[key] = float(np.mean(values))
            if key in SPREAD_KEYS:
                row[f"{key}_std"] = float(np.std(values, ddof=1))
    row["draws"] = len(scores)
    return row


def context_rows(scorer: Scorer, data, split: str, count: int, resolution: int, seed: int) -> dict:
    """The same metrics for the train split (a perfect generator's score) and for noise (a useless one's)."""
    rows = {}
    try:
        train, _, _ = reference_volumes(data, "train", count, resolution, seed + 1)
    except VoxganError:
        train = None
    if train is not None and len(train) >= 2:
        rows["train"] = {**scorer.score(train), "num": len(train)}
    noise, _, _ = synthetic_volumes("synthetic:noise", split, count, resolution, seed)
    rows["noise"] = {**scorer.score(noise), "num": len(noise)}
    return rows


def per_class_rows(scorer: Scorer, generated: np.ndarray) -> dict:
    """Per class: MMD, COV, 1-NNA, one-piece share and class accuracy of the generated volumes (N, R, R, R)
    bool made for each class (the reference labels) against that class's references, and
    ``data_class_accuracy``, the classifier's accuracy on that class's references (the ceiling)."""
    rows = {}
    reference, labels = scorer.references.prepared.occupancy, scorer.labels
    for label in np.unique(labels):
        members = labels == label
        if members.sum() < 2:
            continue
        name = scorer.class_names[label] if label < len(scorer.class_names) else str(label)
        scores = ReferenceSet(reference[members], scorer.device).compare(generated[members])
        _, probabilities = classified(scorer.net, generated[members], scorer.device)
        profile = shape_profile(generated[members], probabilities, labels[members], scorer.class_names)
        profile.pop("class_histogram", None)
        rows[name] = {"num": int(members.sum()), **scores, **profile}
        if scorer.probabilities is not None:
            named = scorer.probabilities[members].argmax(axis=1)
            rows[name]["data_class_accuracy"] = float(np.mean(named == label))
    return rows


def generator_source(generator, threshold: float = 0.5, seed: int = 0, device: str = "cpu"):
    """``generate(count, labels)`` for :func:`evaluate_volumes` from a generator (latents from ``seed``)."""
    calls = [0]

    def generate(count: int, labels: np.ndarray | None) -> np.ndarray:
        calls[0] += 1
        latents = latent_batch(count, generator.latent_dim, seed * 1000 + calls[0])
        return run_generator(generator, latents, labels, device) > threshold

    return generate


def speck_counts(raw: np.ndarray, cleaned: np.ndarray) -> np.ndarray:
    """What taking the specks out of (N, R, R, R) bool volumes did: (volumes, volumes that lost voxels,
    voxels that went, volumes one piece as made), to add up over sets (see :func:`speck_record`)."""
    removed = (raw & ~cleaned).reshape(len(raw), -1).sum(axis=1)
    return np.array([len(raw), (removed > 0).sum(), removed.sum(), (piece_counts(raw) == 1).sum()], np.int64)


def speck_record(counts: np.ndarray) -> dict:
    """The record's ``specks`` from :func:`speck_counts` summed over the sets scored: ``share`` (the rule),
    ``scored`` (volumes looked at, over every set), ``volumes`` (how many lost voxels), ``voxels`` (how many
    voxels went, in all), ``one_piece_before`` (share of one-piece volumes as made)."""
    total, volumes, voxels, one_piece = (int(c) for c in counts)
    return {
        "share": SPECK_SHARE,
        "scored": total,
        "volumes": volumes,
        "voxels": voxels,
        "one_piece_before": one_piece / total,
    }


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    *,
    split: str = "test",
    num: int | None = None,
    device: str = "cpu",
    context: bool = True,
    folder: Path | None = None,
    keep_specks: bool = False,
    draws: int = 1,
) -> dict:
    """Evaluate a run's latest checkpoint (or a checkpoint file) and record the result in its run folder
    (or in ``folder``, e.g. for a pretrained generator's file).

    The samples are scored as ``voxgan export`` writes them: without their specks
    (:func:`~voxgan.results.meshing.without_specks`; ``specks`` in the record says what went, over every
    set), or as the generator made them with ``keep_specks``. ``draws`` sets of samples, from new latents
    each, are scored and averaged (see :func:`evaluate_volumes`); the report shows the first.

    ``data`` defaults to the run's training data. Appends the record (``step``, ``split``, ``num``,
    ``mmd_iou``, ``cov_iou``, ``nna_iou``, ``mmd_cd``, ``cov_cd``, ``nna_cd``, ``fid``,
    ``fid_classifier_accuracy``, ``one_piece``, ``pieces``, ``confident``, ``class_histogram``,
    ``class_tv``, ``class_accuracy`` for conditional models, ``reference`` (the same profile of the data),
    ``context``, ``per_class`` for conditional models, ``specks``) to the run's
    ``metrics.jsonl``, writes the markdown table to ``eval-step-NNNNNNN.md`` and returns the record
    with ``table`` (the markdown) and ``table_path`` added.
    """
    run_dir = Path(run_dir)
    loaded = load_generator(run_dir, device=device)
    generator, step = loaded.generator, loaded.step
    data = data if data is not None else loaded.config.data
    if not data:
        raise VoxganError(f"{run_dir}: the run does not say which data it was trained on; pass --data")
    source, made, specks = generator_source(generator, device=device), [], np.zeros(4, np.int64)

    def generate(count: int, labels: np.ndarray | None) -> np.ndarray:
        volumes = source(count, labels)  # a new set at each call (draws); the report shows the first
        if not keep_specks:
            volumes, raw = without_specks(volumes), volumes
            specks[:] += speck_counts(raw, volumes)
        if not made:
            made.append((volumes, labels))
        return volumes

    record = {"kind": "evaluate", "step": step}
    class_names = loaded.config.class_names
    record.update(
        evaluate_volumes(
            generate,
            data,
            split=split,
            num=num,
            resolution=generator.resolution,
            class_names=class_names,
            conditional=generator.num_classes > 0,
            context=context,
            device=device,
            draws=draws,
        )
    )
    samples, labels = made[0]
    record["specks"] = None if keep_specks else speck_record(specks)
    folder = Path(folder) if folder is not None else run_folder_of(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table = markdown_table(record)
    table_path = folder / f"eval-step-{step:07d}.md"
    # the table first, the record last: a full disk between them leaves no record, so the same command
    # run again writes the same table and appends the record once
    with out_of_space(folder, "run the same command again"):
        write_text_atomic(table_path, table + "\n")
        append_json_line(folder / "metrics.jsonl", record)
    chunks_of = partial(split_chunks, data, resolution=generator.resolution)  # chunks_of(split)
    with out_of_space(folder, "run the same command again"):
        report = write_report(folder, record, samples, labels, class_names, chunks_of, device)
    return {**record, "table": table, "table_path": str(table_path), "report_path": str(report)}


def split_chunks(data: str | Path, split: str, resolution: int):
    """The volumes of ``split`` a shard at a time: (volumes (n, R, R, R) bool, labels (n,), sources (n,))
    tuples; a synthetic source gives 1000 volumes in one; nothing where the split does not exist."""
    if str(data).startswith("synthetic:"):
        volumes, labels, _ = synthetic_volumes(str(data), split, 1000, resolution)
        yield volumes, labels, [f"{data} {split} #{i}" for i in range(len(volumes))]
        return
    manifest = read_manifest(Path(data))
    for entry in manifest["splits"].get(split, {}).get("shards", []):
        shard = read_shard(Path(data) / entry["file"])
        yield shard.occupancy, shard.labels, shard.sources


def evaluate_during_training(run_dir: Path, device) -> dict | None:
    """``voxgan train --eval-every``: :func:`evaluate_run` on the checkpoint just saved, without the context
    rows (they do not change during training); returns its record (the trainer keeps ``best.pt`` by it),
    or None when it failed: the failure is reported on one line and training goes on.

    The command line hands this to :func:`voxgan.model.train.train`, which calls it with the run folder
    and the training device (a ``torch.device``)."""
    from tqdm import tqdm

    try:
        record = evaluate_run(run_dir, device=device.type, context=False)
    except VoxganError as error:
        tqdm.write(f"voxgan train: evaluation skipped: {error}", file=sys.stderr)
        return None
    summary = ", ".join(
        f"{k} {record[k]:.4g}"
        for k in ("nna_iou", "cov_iou", "fid", "class_accuracy", "one_piece")
        if record.get(k) is not None
    )
    tqdm.write(f"voxgan train: step {record['step']}: {summary} (metrics.jsonl)", file=sys.stderr)
    return record
