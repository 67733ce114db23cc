import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.results.sources import CLASSES, make_run, make_shards, synthetic_shapes
from voxgan.metrics import (
    EMPTY_SQUARED_DISTANCE,
    ReferenceSet,
    chamfer_distances,
    compare_sets,
    evaluate_run,
    frechet_distance,
    iou_distances,
    prepare,
    shard_classifier,
)


def random_blobs(count, seed, resolution=16, fill=0.5):
    """Smooth random blobs: noise blurred and thresholded, so that sets from one seed family look alike."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, resolution, resolution, resolution))
    smooth = np.stack([gaussian_filter(n, 1.5) for n in noise])
    return smooth > np.quantile(smooth, 1 - fill, axis=(1, 2, 3), keepdims=True)


def test_iou_distance_matches_a_direct_computation():
    a, b = random_blobs(5, 0), random_blobs(7, 1)
    expected = np.array([[1 - (x & y).sum() / (x | y).sum() for y in b] for x in a])
    assert np.allclose(iou_distances(a, b), expected)
    empty = np.zeros((2, 16, 16, 16), bool)
    assert np.allclose(iou_distances(empty, np.concatenate([empty[:1], a[:1]])), [[0, 1], [0, 1]])


def test_chamfer_distance_matches_brute_force_on_surface_points():
    a, b = random_blobs(3, 2, fill=0.2), random_blobs(4, 3, fill=0.3)
    got = chamfer_distances(prepare(a), prepare(b))
    prepared_a, prepared_b = prepare(a), prepare(b)
    for i in range(len(a)):
        for j in range(len(b)):
            p = np.argwhere(prepared_a.surface[i].reshape(16, 16, 16)) / 16
            q = np.argwhere(prepared_b.surface[j].reshape(16, 16, 16)) / 16
            squared = ((p[:, None] - q[None]) ** 2).sum(axis=2)
            assert got[i, j] == pytest.approx(
                squared.min(axis=1).mean() + squared.min(axis=0).mean(), rel=1e-5
            )
    empty = np.zeros((1, 16, 16, 16), bool)
    assert chamfer_distances(prepare(empty), prepare(empty))[0, 0] == 0
    assert chamfer_distances(prepare(empty), prepare(a[:1]))[0, 0] == pytest.approx(EMPTY_SQUARED_DISTANCE)


def test_two_draws_from_one_distribution_score_near_chance():
    reference = ReferenceSet(random_blobs(150, 10))
    scores = reference.compare(random_blobs(150, 11))
    assert 0.35 <= scores["nna_iou"] <= 0.65 and 0.35 <= scores["nna_cd"] <= 0.65
    assert scores["cov_iou"] > 0.4


def test_exact_copy_scores_zero_nna_memorisation():
    volumes = random_blobs(60, 12)
    scores = compare_sets(volumes.copy(), volumes)
    assert scores["nna_iou"] == 0.0 and scores["nna_cd"] == 0.0
    assert scores["mmd_iou"] == 0.0 and scores["cov_iou"] == 1.0


def test_well_separated_sets_score_full_nna():
    small = np.zeros((40, 16, 16, 16), bool)
    large = np.zeros((40, 16, 16, 16), bool)
    for index in range(40):
        corner = index % 4
        small[index, corner : corner + 3, 2:5, 2:5] = True
        large[index, 6 + corner : 14 + corner // 2, 6:15, 6:15] = True
    scores = compare_sets(small, large)
    assert scores["nna_iou"] == 1.0 and scores["nna_cd"] == 1.0


def test_one_repeated_shape_covers_one_reference():
    reference = random_blobs(50, 13)
    generated = np.repeat(random_blobs(1, 14), 50, axis=0)
    scores = compare_sets(generated, reference)
    assert scores["cov_iou"] == pytest.approx(1 / 50) and scores["cov_cd"] == pytest.approx(1 / 50)


def test_frechet_distance_is_zero_for_equal_sets_and_grows_with_shift():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((500, 8))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(features, features + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), {"train": 160, "test": 40})


def test_classifier_is_trained_once_and_cached(shard_folder):
    net = shard_classifier(shard_folder)
    assert net is not None and net.path.is_file() and net.path.parent.name == ".voxgan-cache"
    assert net.accuracy > 1 / len(CLASSES)  # better than chance on the test split
    stamp = net.path.stat().st_mtime_ns
    again = shard_classifier(shard_folder)
    assert again.path == net.path and again.path.stat().st_mtime_ns == stamp
    assert again.accuracy == net.accuracy
    state = torch.load(net.path, weights_only=True)
    assert set(state) >= {"state_dict", "accuracy", "test_split"}


def test_evaluate_run_records_metrics_with_context_and_classes(shard_folder, tmp_path):
    run_dir = make_run(tmp_path / "runs", conditional=True, step=7)
    record = evaluate_run(run_dir, shard_folder, split="test")
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


def test_evaluate_cli_prints_table_and_appends(shard_folder, tmp_path):
    run_dir = make_run(tmp_path / "runs", step=3)
    args = ["evaluate", "--data", str(shard_folder), "--num", "12", "--device", "cpu", "--no-context"]
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "newest run" in done.stderr and "| model |" in done.stdout
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert record["num"] == 12 and "context" not in record
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "evaluate", "--data", str(shard_folder), "--split", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "nope" in done.stderr and len(done.stderr.strip().splitlines()) == 2


def test_reference_set_from_shapes_matches_dataset(shard_folder):
    volumes, _ = synthetic_shapes(40)
    scores = compare_sets(volumes, volumes)
    assert scores["nna_iou"] == 0.0
