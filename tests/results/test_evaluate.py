"""voxgan.results.evaluate: a run's record with its context rows and classes, the table, metrics.jsonl,
report.html (opened in Chromium), and the command line."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.results.sources import CLASSES, make_run
from voxgan.results.evaluate import evaluate_run, evaluate_volumes
from voxgan.results.metrics import iou_distances
from voxgan.shards import read_split


@pytest.fixture(scope="module")
def conditional_evaluation(evaluation_shards, tmp_path_factory):
    """A conditional run evaluated once against the test split: (run folder, record)."""
    run_dir = make_run(tmp_path_factory.mktemp("evaluated") / "runs", conditional=True, step=7)
    return run_dir, evaluate_run(run_dir, evaluation_shards, split="test")


def test_evaluate_run_records_metrics_with_context_and_classes(conditional_evaluation):
    run_dir, record = conditional_evaluation
    for key in ("step", "split", "num", "mmd_iou", "cov_iou", "nna_iou", "mmd_cd", "cov_cd", "nna_cd", "fid"):
        assert key in record
    assert record["step"] == 7 and record["num"] == 40 and record["split"] == "test"
    train, noise = record["context"]["train"], record["context"]["noise"]
    # the train split is a far better generator than noise or an untrained network
    assert train["mmd_iou"] < noise["mmd_iou"] and train["cov_iou"] > noise["cov_iou"]
    assert train["nna_iou"] < 0.75 and noise["nna_cd"] > 0.9
    assert train["fid"] < noise["fid"] and train["fid"] < record["fid"]
    assert set(record["per_class"]) <= set(CLASSES) and record["per_class"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["nna_iou"] == record["nna_iou"]
    table = (run_dir / "eval-step-0000007.md").read_text()
    assert "train split (ceiling)" in table and "synthetic:noise (floor)" in table and "class torus" in table


def test_a_conditional_run_is_scored_by_the_class_it_was_asked_for(conditional_evaluation):
    run_dir, record = conditional_evaluation
    data = record["reference"]
    # the data row: the real test volumes named by the classifier; its accuracy is the one it was tested at
    assert data["num"] == 40 and data["class_accuracy"] == pytest.approx(record["fid_classifier_accuracy"])
    assert data["one_piece"] == 1.0  # the synthetic shapes are solid single pieces
    for row in (record, data, record["context"]["train"], record["context"]["noise"]):
        assert 0 <= row["one_piece"] <= 1 and 0 <= row["confident"] <= 1
        assert sum(row["class_histogram"].values()) == pytest.approx(1) and set(
            row["class_histogram"]
        ) == set(CLASSES)
    assert 0 <= record["class_accuracy"] <= 1 and 0 <= record["class_tv"] <= 1
    assert record["context"]["noise"]["one_piece"] < 0.5  # noise is specks
    for name, row in record["per_class"].items():
        assert 0 <= row["class_accuracy"] <= 1 and 0 <= row["data_class_accuracy"] <= 1, name
    saved = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert saved["class_accuracy"] == record["class_accuracy"] and saved["reference"] == data
    table = (run_dir / "eval-step-0000007.md").read_text()
    assert "| test split (the data) |" in table and "class acc." in table and "one piece" in table
    assert "Classes the classifier names" in table


def test_real_volumes_score_the_data_row_and_specks_show_as_pieces(evaluation_shards):
    """The data itself, asked for by its own labels, scores the data row's class accuracy; the same volumes
    with one loose voxel each are no longer one piece, and the classifier still names them."""
    volumes, labels, _ = read_split(evaluation_shards, "test")

    def the_data(count, asked):
        assert np.array_equal(asked, labels)
        return volumes.copy()

    def with_specks(count, asked):
        specked = volumes.copy()
        specked[:, 0, 0, 0] = True  # a corner voxel, away from every shape
        return specked

    common = dict(resolution=16, conditional=True, context=False)
    real = evaluate_volumes(the_data, evaluation_shards, **common)
    assert real["class_accuracy"] == real["reference"]["class_accuracy"]
    assert real["one_piece"] == real["reference"]["one_piece"] == 1.0 and real["class_tv"] == 0
    specked = evaluate_volumes(with_specks, evaluation_shards, **common)
    assert specked["one_piece"] == 0.0 and specked["pieces"] == pytest.approx(2.0)
    assert specked["class_accuracy"] >= real["class_accuracy"] - 0.1


def test_samples_are_scored_without_their_specks_unless_kept(
    conditional_evaluation, evaluation_shards, tmp_path
):
    """The record says what taking the specks out did; --keep-specks scores the same samples as made."""
    run_dir, record = conditional_evaluation
    specks = record["specks"]
    assert specks["share"] == 0.05 and specks["scored"] == 40
    assert 0 < specks["volumes"] <= 40 and specks["voxels"] >= specks["volumes"]
    assert record["one_piece"] > specks["one_piece_before"]
    assert "scored without their specks" in (run_dir / "eval-step-0000007.md").read_text()
    made = evaluate_run(run_dir, evaluation_shards, split="test", context=False, keep_specks=True,
                        folder=tmp_path)  # fmt: skip
    assert made["specks"] is None and made["one_piece"] == specks["one_piece_before"]
    assert "without their specks" not in made["table"]


def test_several_draws_give_the_mean_of_each_set_scored_alone_and_its_spread(evaluation_shards):
    """With draws=2 the model row is the mean of the two sets' own scores, the set metrics and FID with
    their standard deviation beside them; the table says so."""
    volumes, _, _ = read_split(evaluation_shards, "test")
    noise = np.random.default_rng(0).random(volumes.shape) < 0.3
    sets = {"data": volumes, "noise": noise}

    def source(*names):
        queue = [sets[name] for name in names]
        return lambda count, asked: queue.pop(0).copy()

    common = dict(resolution=16, conditional=True, context=False)
    alone = [evaluate_volumes(source(name), evaluation_shards, **common) for name in sets]
    both = evaluate_volumes(source(*sets), evaluation_shards, draws=2, **common)
    assert both["draws"] == 2 and "draws" not in alone[0]
    for key in ("nna_iou", "cov_iou", "mmd_iou", "nna_cd", "fid", "one_piece", "class_accuracy"):
        assert both[key] == pytest.approx((alone[0][key] + alone[1][key]) / 2), key
    spread = abs(alone[0]["nna_iou"] - alone[1]["nna_iou"]) / np.sqrt(2)  # the std of two numbers
    assert both["nna_iou_std"] == pytest.approx(spread) and both["nna_iou_std"] > 0.2
    assert "one_piece_std" not in both
    from voxgan.results.report import markdown_table

    table = markdown_table({**both, "step": 1})
    assert "mean ± standard deviation over 2 sets of 40 samples" in table
    assert f"{100 * both['nna_iou']:.1f}% ± {100 * both['nna_iou_std']:.1f} |" in table


def test_evaluate_draws_must_be_at_least_one(evaluation_shards, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "evaluate", "--data", str(evaluation_shards), "--draws", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--draws" in done.stderr


def report_groups(path):
    """(volumes, captions) of report.html's gallery, in threes: sample, nearest train, nearest test."""
    from tests.browser import page_volumes

    text = path.read_text(encoding="utf-8")
    captions = re.findall(r'<div class="caption">(.*?)</div>', text)
    return page_volumes(path), [re.sub("<[^>]+>", "\n", c) for c in captions]


def test_the_report_shows_each_sample_beside_its_nearest_train_and_test_volume(
    conditional_evaluation, evaluation_shards
):
    run_dir, record = conditional_evaluation
    assert record["report_path"] == str(run_dir / "report.html")
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    for row in ("model", "train split (ceiling)", "synthetic:noise (floor)", "class torus"):
        assert f"<td>{row}" in text
    # 1-NNA, COV, MMD-IoU, MMD-CD, FID, class accuracy and one-piece share over the run's steps
    assert text.count('<svg class="chart"') == 7
    one_piece = re.search(r'<svg class="chart"[^>]*aria-label="one piece.*?</svg>', text).group(0)
    assert ">without specks</text>" in one_piece and ">as made</text>" in one_piece  # both series drawn
    assert 'href="metrics.jsonl"' in text and 'href="eval-step-0000007.md"' in text
    assert "voxgan evaluate --run" in text
    volumes, captions = report_groups(run_dir / "report.html")
    assert len(volumes) == len(captions) and len(volumes) % 3 == 0 and len(volumes) >= 3 * len(CLASSES)
    references = {split: read_split(evaluation_shards, split) for split in ("train", "test")}
    seen_classes = set()
    for start in range(0, len(volumes), 3):
        sample = volumes[start]
        title = captions[start].split("\n")[0]
        seen_classes.add(title.split(": ")[1])
        for offset, split in ((1, "train"), (2, "test")):
            neighbour, caption = volumes[start + offset], captions[start + offset]
            assert caption.startswith(f"nearest {split}: ")
            printed = float(re.search(r"1 − IoU = ([0-9.]+)", caption).group(1))
            distances = iou_distances(sample[None], references[split][0])[0]
            assert printed == pytest.approx(distances.min(), abs=5e-4)  # the nearest of the whole split
            chosen = [i for i, v in enumerate(references[split][0]) if np.array_equal(v, neighbour)]
            assert chosen and distances[chosen[0]] == pytest.approx(distances.min())
    assert seen_classes == set(CLASSES)  # a conditional run's gallery has every class


def test_the_report_renders_every_volume_offline_in_chromium(conditional_evaluation, browser):
    from tests.browser import check_page, page_volumes

    run_dir, _ = conditional_evaluation
    volumes = page_volumes(run_dir / "report.html")
    empty = {i for i, volume in enumerate(volumes) if not volume.any()}
    assert len(empty) < len(volumes) / 3
    check_page(browser, run_dir / "report.html", len(volumes), empty=empty).close()


def test_evaluate_cli_prints_table_and_appends(evaluation_shards, tmp_path):
    run_dir = make_run(tmp_path / "runs", step=3)
    args = ["evaluate", "--data", str(evaluation_shards), "--num", "12", "--device", "cpu", "--no-context"]
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", *args, "--draws", "3"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "newest run" in done.stderr and "| model |" in done.stdout and "over 3 sets" in done.stdout
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert record["num"] == 12 and "context" not in record and record["draws"] == 3
    assert record["specks"]["scored"] == 3 * 12  # counted over the three sets
    assert 0 <= record["specks"]["volumes"] <= 3 * 12 and f"of {3 * 12} samples" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "evaluate", "--data", str(evaluation_shards), "--split", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "nope" in done.stderr and len(done.stderr.strip().splitlines()) == 2


def test_a_full_disk_ends_in_one_line_and_a_rerun_records_once(evaluation_shards, tmp_path, full_disk_dir):
    """evaluate with a run folder on a full filesystem: exit 1 and one line naming the run folder, the
    checkpoint untouched, no table, no record and no temporary; after space is freed the same command
    writes the table and one record, as a run on a roomy disk does."""
    import shutil

    run_dir = make_run(tmp_path / "runs", step=3)
    disk = full_disk_dir(16 * 1024 * 1024)
    on_disk = shutil.copytree(run_dir, disk.path / "runs" / run_dir.name)
    before = {p.relative_to(on_disk): p.read_bytes() for p in on_disk.rglob("*") if p.is_file()}
    args = ["evaluate", "--data", str(evaluation_shards), "--num", "8", "--device", "cpu", "--no-context"]

    def evaluate(run):
        return subprocess.run([sys.executable, "-m", "voxgan", *args, "--run", str(run)], capture_output=True,
                              text=True, cwd=tmp_path, preexec_fn=disk.preexec_fn)  # fmt: skip

    evaluate_run(run_dir, evaluation_shards, num=8, context=False)  # on a roomy disk: what to end with
    disk.fill()
    full = evaluate(on_disk)
    assert full.returncode == 1, full.stderr
    assert full.stderr.strip().splitlines()[-1] == (
        f"voxgan: error: {on_disk}: no space left on the device; free some and run the same command again"
    )
    after = {p.relative_to(on_disk): p.read_bytes() for p in on_disk.rglob("*") if p.is_file()}
    assert after == before  # nothing added, nothing damaged
    disk.empty()
    assert evaluate(on_disk).returncode == 0
    assert (on_disk / "eval-step-0000003.md").read_text() == (run_dir / "eval-step-0000003.md").read_text()
    records = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (on_disk, run_dir)
    ]
    for record in records[0] + records[1]:
        record.pop("seconds")  # the time it took, the one thing that differs
    assert records[0] == records[1] and len(records[0]) == 1
