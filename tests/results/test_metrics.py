"""voxgan.results.metrics: IoU and Chamfer distances, MMD, COV and 1-NNA on sets with known answers, the
Fréchet distance, and the cached FID classifier."""

import numpy as np
import pytest
import torch

from tests.results.sources import CLASSES, synthetic_shapes
from voxgan.results.metrics import (
    EMPTY_SQUARED_DISTANCE,
    ReferenceSet,
    chamfer_distances,
    compare_sets,
    frechet_distance,
    histogram_distance,
    iou_distances,
    piece_counts,
    prepare,
    shape_profile,
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


def test_classifier_is_trained_once_and_cached(evaluation_shards):
    net = shard_classifier(evaluation_shards)
    assert net is not None and net.path.is_file() and net.path.parent.name == ".voxgan-cache"
    assert net.accuracy > 1 / len(CLASSES)  # better than chance on the test split
    stamp = net.path.stat().st_mtime_ns
    again = shard_classifier(evaluation_shards)
    assert again.path == net.path and again.path.stat().st_mtime_ns == stamp
    assert again.accuracy == net.accuracy
    state = torch.load(net.path, weights_only=True)
    assert set(state) >= {"state_dict", "accuracy", "test_split"}


def test_reference_set_from_shapes_matches_dataset(evaluation_shards):
    volumes, _ = synthetic_shapes(40)
    scores = compare_sets(volumes, volumes)
    assert scores["nna_iou"] == 0.0


def test_pieces_count_voxels_touching_at_a_face_edge_or_corner_as_one():
    volumes = np.zeros((5, 8, 8, 8), bool)
    volumes[0, 1:4, 1:4, 1:4] = True  # one block
    volumes[1] = volumes[0]
    volumes[1, 7, 7, 7] = True  # and a loose speck
    volumes[2, 2, 2, 2] = volumes[2, 3, 3, 3] = True  # touching at a corner only
    volumes[3, 0, :, 0] = volumes[3, 7, :, 7] = volumes[3, 3, 3, 3] = True  # three pieces
    assert piece_counts(volumes).tolist() == [1, 2, 1, 3, 0]  # the last is empty
    profile = shape_profile(volumes)
    assert profile == {"one_piece": 2 / 5, "pieces": 7 / 5}


def test_the_shape_profile_names_classes_as_the_classifier_does():
    probabilities = np.array([[0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.0, 0.05, 0.95], [0.1, 0.85, 0.05]])
    volumes = np.ones((4, 4, 4, 4), bool)
    profile = shape_profile(volumes, probabilities, asked=np.array([0, 1, 2, 1]), class_names=("a", "b", "c"))
    assert profile["class_accuracy"] == 3 / 4  # the second is named a, asked b
    assert profile["confident"] == 2 / 4  # 0.95 twice; 0.85 and 0.6 are not confident
    assert profile["class_histogram"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert "class_accuracy" not in shape_profile(volumes, probabilities, class_names=("a", "b", "c"))
    assert histogram_distance(profile["class_histogram"], profile["class_histogram"]) == 0
    assert histogram_distance({"a": 1.0}, {"b": 1.0}) == 1
    assert histogram_distance({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(0.5)
