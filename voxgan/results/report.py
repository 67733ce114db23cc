"""``report.html``: an evaluation as one page, beside its table in the run folder.

The metrics table with its context rows, the curve of each metric over the run's steps (``metrics.jsonl``)
and of the losses (``stats.jsonl``), and a gallery where each generated sample stands beside its nearest
training volume and its nearest test volume by 1 - IoU, the distance the metrics use (the memorisation
check: a distance near 0 to a training volume is a copy); per class for a conditional model. The page
links the run's files and says the commands that made it. Written by
:func:`voxgan.results.evaluate.evaluate_run` through :func:`voxgan.pages.write_page`; the metrics table
(markdown and HTML) is made here too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxgan.pages import Cell, Gallery, escape, html_table, line_chart, write_page
from voxgan.results.metrics import iou_distances

REPORT = "report.html"
GALLERY_SAMPLES = 24  # generated samples in the gallery (a conditional model's spread over its classes)
METRIC_CHARTS = (  # (title, ((record key, label), ...))
    ("1-NNA (50% best)", (("nna_iou", "IoU"), ("nna_cd", "Chamfer"))),
    ("COV (higher is better)", (("cov_iou", "IoU"), ("cov_cd", "Chamfer"))),
    ("MMD-IoU (lower is better)", (("mmd_iou", "model"),)),
    ("MMD-CD (lower is better)", (("mmd_cd", "model"),)),
    ("voxel FID (lower is better)", (("fid", "model"),)),
    ("named by the classifier", (("class_accuracy", "as asked"), ("confident", "confidently"))),
    (
        "one piece (share of samples)",
        (("one_piece", "without specks"), ("specks.one_piece_before", "as made")),
    ),
)
LOSS_CHARTS = (
    (
        "losses (stats.jsonl)",
        (("loss_critic", "critic"), ("loss_generator", "generator"), ("wasserstein", "W")),
    ),
    ("gradient penalty", (("gradient_penalty", "penalty"),)),
)


@dataclass
class Nearest:
    """For each of G samples, its nearest volume of a split: 1 - IoU (G,), the volumes (G, R, R, R) bool,
    their labels (G,) and source names."""

    distances: np.ndarray
    volumes: np.ndarray
    labels: np.ndarray
    sources: list[str]


def nearest_volumes(samples: np.ndarray, chunks: Iterable, device: str = "cpu") -> Nearest | None:
    """Each sample's nearest volume by 1 - IoU among ``chunks`` of a split, one chunk in memory at a time.

    samples : (G, R, R, R) bool. chunks : (volumes (n, R, R, R) bool, labels (n,), sources (n,)) tuples,
    e.g. the shards of a split. None when the chunks hold no volume.
    """
    best: Nearest | None = None
    for volumes, labels, sources in chunks:
        if len(volumes) == 0:
            continue
        distances = iou_distances(samples, volumes, device)  # (G, n)
        nearest = distances.argmin(axis=1)
        found = distances[np.arange(len(samples)), nearest]
        if best is None:
            best = Nearest(found, volumes[nearest], labels[nearest], [sources[i] for i in nearest])
            continue
        closer = found < best.distances
        best.distances = np.where(closer, found, best.distances)
        best.volumes[closer] = volumes[nearest[closer]]
        best.labels = np.where(closer, labels[nearest], best.labels)
        best.sources = [sources[n] if c else s for n, c, s in zip(nearest, closer, best.sources, strict=True)]
    return best


def gallery_indices(labels: np.ndarray | None, count: int = GALLERY_SAMPLES) -> list[np.ndarray]:
    """Which generated samples the gallery shows: the first ``count`` (one group), or for labels (G,) one
    group per class present, each of its first ``max(1, count // classes)`` samples."""
    if labels is None:
        return [np.arange(count)]
    classes = np.unique(labels)
    per_class = max(1, count // len(classes))
    return [np.flatnonzero(labels == label)[:per_class] for label in classes]


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file ([] when it is missing; unreadable lines are left out)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def charts(records: list[dict], groups) -> list[str]:
    """One SVG chart per (title, ((key, label), ...)) of ``groups`` from records with a ``step`` (none
    where no record has a value); a key ``a.b`` is ``record[a][b]``."""
    made, records = [], [r for r in records if "step" in r]
    for title, keys in groups:
        series = {label: [(r["step"], value_at(r, key)) for r in records] for key, label in keys}
        made.append(line_chart(title, series))
    return [chart for chart in made if chart]


def value_at(record: dict, key: str):
    """``record[key]``, or for ``a.b`` ``record[a][b]``; None where a part is missing or None."""
    value = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def class_name(class_names, label) -> str:
    """The name of ``label``, or "" for -1 (no class)."""
    label = int(label)
    if label < 0:
        return ""
    return class_names[label] if label < len(class_names) else str(label)


def neighbour_cell(nearest: Nearest, index: int, split: str, class_names) -> Cell:
    """The cell of sample ``index``'s nearest volume of ``split``: its class, distance and source file."""
    name = class_name(class_names, nearest.labels[index])
    source = Path(str(nearest.sources[index])).name
    title = f"nearest {split}" + (f": {name}" if name else "")
    return Cell(nearest.volumes[index], title, f"1 − IoU = {nearest.distances[index]:.3f} · {source}")


def nearest_galleries(
    samples: np.ndarray, labels, class_names, chunks_of, test_split: str, device: str = "cpu"
) -> list:
    """The gallery sections: each shown sample beside its nearest train and test volumes; one per class.

    samples : (G, R, R, R) bool; labels : (G,) int or None; ``chunks_of(split)`` gives the chunks of a
    split for :func:`nearest_volumes`.
    """
    groups = gallery_indices(labels, min(GALLERY_SAMPLES, len(samples)))
    shown = np.concatenate(groups)
    position = {int(index): place for place, index in enumerate(shown)}
    splits = list(dict.fromkeys(["train", test_split]))
    nearest = {name: nearest_volumes(samples[shown], chunks_of(name), device) for name in splits}
    found = [name for name in splits if nearest[name] is not None]
    words = {"train": "<b>training</b> volume"} | {test_split: f"<b>{escape(test_split)} split</b> volume"}
    note = (
        f"Each generated sample (left) beside its nearest {' and '.join(words[name] for name in found)} "
        "by 1 − IoU, the distance the metrics use (0: the same voxels, 1: no voxel in common). A training "
        "neighbour at a distance near 0 means the model copied that volume. Drag any volume to turn it."
    )
    sections = [f'<h2>Samples and their nearest neighbours</h2><p class="note">{note}</p>']
    for group in groups:
        cells = []
        for index in group:
            name = class_name(class_names, labels[index]) if labels is not None else ""
            title = f"sample {index}" + (f": {name}" if name else "")
            cells.append(Cell(samples[index], title, f"{int(samples[index].sum())} voxels"))
            cells += [neighbour_cell(nearest[s], position[int(index)], s, class_names) for s in found]
        title = f"class {class_name(class_names, labels[group[0]])}" if labels is not None else "Generated"
        sections.append(Gallery(title, cells, group=1 + len(found), level=3))
    return sections


def run_files(folder: Path, record: dict) -> str:
    """Links to what the run made (the files that exist), relative to the run folder."""
    step = record.get("step", 0)
    wanted = [
        ("config.json", "the training options"),
        ("stats.jsonl", "losses and speed, one line per log interval"),
        ("loss.png", "the loss curves"),
        ("metrics.jsonl", "every evaluation, one line each"),
        (f"eval-step-{step:07d}.md", "this table as markdown"),
        ("checkpoints/latest.pt", "the latest checkpoint"),
    ]
    samples = sorted((folder / "samples").glob("*.png"))
    if samples:
        wanted.append((f"samples/{samples[-1].name}", "the latest sample grid (fixed latents)"))
    items = [
        f'<li><a href="{escape(name)}">{escape(name)}</a>: {escape(what)}</li>'
        for name, what in wanted
        if (folder / name).exists()
    ]
    return f"<h2>Files of this run</h2><ul>{''.join(items)}</ul>"


def commands(folder: Path, record: dict) -> str:
    """The commands that made this page and that look further, as a list."""
    lines = [
        (
            "this evaluation",
            f"voxgan evaluate --run {folder} --data {record.get('data')} "
            f"--split {record.get('split')} --num {record.get('num')}",
        ),
        ("more samples in 3D", f"voxgan export --run {folder} --format html --num 64"),
        ("meshes", f"voxgan export --run {folder} --format obj --num 16"),
        ("train on", f"voxgan train --resume {folder}"),
    ]
    items = "".join(f"<li>{escape(what)}: <code>{escape(line)}</code></li>" for what, line in lines)
    return f"<h2>Commands</h2><ul>{items}</ul>"


def config_details(folder: Path) -> str:
    """The run's config.json, folded."""
    path = folder / "config.json"
    if not path.is_file():
        return ""
    return f"<details><summary>config.json</summary><pre>{escape(path.read_text())}</pre></details>"


def write_report(
    folder: Path,
    record: dict,
    samples: np.ndarray,
    labels: np.ndarray | None,
    class_names,
    chunks_of,
    device: str = "cpu",
) -> Path:
    """Write ``folder/report.html`` for the evaluation ``record`` (of :func:`.evaluate.evaluate_run`).

    samples : (G, R, R, R) bool, the generated set the metrics scored; labels : (G,) int or None (an
    unconditional model); ``chunks_of(split)``: the volumes of a split, a chunk at a time (see
    :func:`nearest_volumes`), where the gallery looks for each sample's nearest training and test volume.
    """
    folder = Path(folder)
    metric_charts = charts([r for r in read_jsonl(folder / "metrics.jsonl") if "step" in r], METRIC_CHARTS)
    loss_charts = charts(read_jsonl(folder / "stats.jsonl"), LOSS_CHARTS)
    curves = metric_charts + loss_charts
    sections = [
        f'<p class="note">{escape(table_heading(record))}.</p>',
        "<h2>Metrics</h2>",
        html_table(TABLE_HEADER, table_rows(record)),
        f'<p class="note">{escape(classifier_line(record))} 1-NNA near 50% is best: near 100% the two sets '
        "are told apart, near 0% the model copies its reference set. The train split row is what a perfect "
        "generator scores, the noise row what a useless one scores.</p>",
    ]
    histogram = histogram_rows(record)
    if histogram:
        sections += ["<h3>Classes the classifier names</h3>", html_table(histogram_header(record), histogram)]
    if curves:
        sections += ["<h2>Over the run</h2>", f'<div class="charts">{"".join(curves)}</div>']
    split = record.get("split", "test")
    sections += nearest_galleries(samples, labels, class_names, chunks_of, split, device)
    sections += [run_files(folder, record), commands(folder, record), config_details(folder)]
    title = f"{folder.name}: evaluation at step {record.get('step', '?')}"
    return write_page(
        folder / REPORT, title, sections, subtitle=f"voxgan evaluate report of the run {folder}"
    )


# --- the metrics table (the markdown eval-step-NNNNNNN.md and the page share it) -------------------------


def number(value, percent: bool = False, digits: int = 4) -> str:
    """A table cell: '-' for None or NaN, a percentage, or a number with ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}g}"


TABLE_HEADER = [
    "set",
    "MMD-IoU ↓",
    "COV-IoU ↑",
    "1-NNA-IoU (50% best)",
    "MMD-CD ↓",
    "COV-CD ↑",
    "1-NNA-CD (50% best)",
    "voxel FID ↓",
    "class acc. ↑",
    "confident",
    "one piece",
]


def spread(values: dict, key: str, percent: bool = False) -> str:
    """A table cell with its spread over draws where the row has one: '57.6% ± 3.4' (percentage points)."""
    cell = number(values.get(key), percent=percent)
    std = values.get(f"{key}_std")
    if std is None:
        return cell
    return f"{cell} ± {100 * std:.1f}" if percent else f"{cell} ± {std:.2g}"


def row_cells(values: dict) -> list[str]:
    """The number cells of one row of the metrics table (after the set's name)."""
    return [
        spread(values, "mmd_iou"),
        spread(values, "cov_iou", percent=True),
        spread(values, "nna_iou", percent=True),
        spread(values, "mmd_cd"),
        spread(values, "cov_cd", percent=True),
        spread(values, "nna_cd", percent=True),
        spread(values, "fid"),
        class_accuracy_cell(values),
        number(values.get("confident"), percent=True),
        number(values.get("one_piece"), percent=True),
    ]


def class_accuracy_cell(values: dict) -> str:
    """The class accuracy of a row, with the data's (the ceiling) beside a class's own."""
    cell = number(values.get("class_accuracy"), percent=True)
    if values.get("data_class_accuracy") is not None:
        cell += f" (data {number(values['data_class_accuracy'], percent=True)})"
    return cell


def table_rows(record: dict) -> list[list[str]]:
    """The rows of the metrics table of a record: the model, the context rows, then each class."""
    rows = [("model", record)]
    if "reference" in record:
        rows.append((f"{record['split']} split (the data)", record["reference"]))
    context = record.get("context", {})
    if "train" in context:
        rows.append(("train split (ceiling)", context["train"]))
    if "noise" in context:
        rows.append(("synthetic:noise (floor)", context["noise"]))
    rows += [
        (f"class {name} ({values['num']})", values) for name, values in record.get("per_class", {}).items()
    ]
    return [[name, *row_cells(values)] for name, values in rows]


def table_heading(record: dict) -> str:
    """The line above the table: the step, the sizes, the reference split and the draws."""
    line = (
        f"Evaluation at step {record.get('step', '?')}: {record['num']} generated vs {record['num']} "
        f"volumes of split '{record['split']}' of {record.get('data', '?')}"
    )
    if record.get("draws", 1) > 1:
        line += (
            f"; the model row is the mean ± standard deviation over {record['draws']} sets of "
            f"{record['num']} samples (new latents each), the class rows are the first set's"
        )
    return line


def classifier_line(record: dict) -> str:
    """The lines under the table saying what the classifier columns and the one-piece share are."""
    pieces = (
        "one piece: the share of volumes that are one connected piece (voxels touching at a face, an edge "
        "or a corner; loose specks make two or more)."
    )
    pieces += specks_line(record.get("specks"))
    accuracy = record.get("fid_classifier_accuracy")
    if accuracy is None:
        return (
            "voxel FID and the class columns: not available (they need a shard folder with at least two "
            f"classes); {pieces}"
        )
    return (
        "voxel FID features and the class columns: a 3D classifier trained on the train split "
        f"({100 * accuracy:.1f}% test accuracy). class acc.: the share of a conditional model's samples it "
        "names as the class asked for (the data row: its real volumes, the ceiling); confident: the share it "
        f"names with probability ≥ 90%; {pieces}"
    )


def specks_line(specks: dict | None) -> str:
    """What taking the specks out of the samples did (the record's ``specks``), or nothing."""
    if not specks:
        return ""
    return (
        f" The model's samples are scored without their specks, as voxgan export writes them: pieces under "
        f"{100 * specks['share']:g}% of a sample's largest piece, {specks['voxels']} voxel(s) from "
        f"{specks['volumes']} of {specks['scored']} samples; "
        f"{number(specks['one_piece_before'], percent=True)} were one piece before (--keep-specks scores "
        "them as made)."
    )


def histogram_rows(record: dict) -> list[list[str]]:
    """The class histogram table's rows: each class, the share of the data and of the model's samples the
    classifier names so, then the total variation between the two (empty without histograms)."""
    model, data = record.get("class_histogram"), record.get("reference", {}).get("class_histogram")
    if not model or not data:
        return []
    rows = [[name, number(data[name], percent=True), number(model.get(name), percent=True)] for name in data]
    return [*rows, ["total variation ↓", "", number(record.get("class_tv"))]]


def histogram_header(record: dict) -> list[str]:
    """The class histogram table's header."""
    return ["class named", f"{record['split']} split (the data)", "model"]


def markdown_rows(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(record: dict) -> str:
    """The metrics of a record as markdown: the table (the model, the data, the context rows, then each
    class), the lines that explain it and the histogram of the classes the classifier names."""
    lines = [table_heading(record), "", *markdown_rows(TABLE_HEADER, table_rows(record))]
    lines += ["", classifier_line(record)]
    histogram = histogram_rows(record)
    if histogram:
        lines += [
            "",
            "Classes the classifier names:",
            "",
            *markdown_rows(histogram_header(record), histogram),
        ]
    return "\n".join(lines)
