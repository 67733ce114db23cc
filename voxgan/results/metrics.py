"""Quality numbers for generated volumes: MMD, COV and 1-NNA with two distances, and a voxel FID.

* **Distances.** ``1 - IoU`` of the occupancies, and the Chamfer distance between surface points
  (the centres of the occupied voxels that touch an empty one, in a unit cube: squared distances
  averaged both ways, as Achlioptas et al. 2018 do for point clouds). Both are computed for all
  pairs at once as matrix products of flattened volumes, in chunks, on the GPU when asked:
  intersections for IoU, and for Chamfer the product of one set's surface indicators with the
  other set's squared distance fields (a distance transform per volume), which is exact for these
  point sets and needs no point sampling.
* **MMD** (lower is better): for each reference volume, the distance to its nearest generated one,
  averaged. **COV** (higher): the share of reference volumes that are the nearest neighbour of some
  generated one. **1-NNA** (50% is best): the leave-one-out accuracy of a 1-nearest-neighbour
  classifier telling generated from reference volumes (Yang et al. 2019); near 0% means the model
  copies its reference set, near 100% that the two sets are told apart. Ties count half.
* **Voxel FID**: the Fréchet distance between the feature statistics of the two sets, the features
  being the penultimate layer of a small 3D classifier trained once on a shard folder's labels and
  cached in ``<shards>/.voxgan-cache/`` (as DECOR-GAN's evaluation does); its test accuracy is
  reported next to it.
* **Can a person name it?** The same classifier names each volume: the share of volumes it names as
  the class a conditional model was asked for (**class accuracy**; real data gives the ceiling), the
  share it names with probability >= 0.9 (**confident**) and the histogram of the classes it names
  (against the data's: total variation, 0 is the same mix). **One piece**: the share of volumes that
  are one connected piece (voxels touching at a face, an edge or a corner), so loose specks show as a
  number.

The evaluation command that puts these numbers in a table is :mod:`voxgan.results.evaluate`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxgan.atomic import atomic_open
from voxgan.results.meshing import pieces
from voxgan.shards import read_manifest, read_split

CHUNK_BYTES = 64 * 2**20  # size of one operand block of the pairwise products
EMPTY_SQUARED_DISTANCE = 3.0  # squared diagonal of the unit cube: how far an empty volume's surface is
CLASSIFIER_VERSION = 2
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
CACHE_FOLDER = ".voxgan-cache"
METRIC_KEYS = ("mmd_iou", "cov_iou", "nna_iou", "mmd_cd", "cov_cd", "nna_cd")
CONFIDENT = 0.9  # a prediction this probable or more counts as confident


def pairwise_products(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> np.ndarray:
    """All dot products of rows: a (N, D), b (M, D) float  ->  (N, M) float64, in chunks, with torch."""
    import torch

    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], (a.shape, b.shape)
    rows = max(1, CHUNK_BYTES // (4 * max(a.shape[1], 1)))
    out = np.zeros((len(a), len(b)), np.float64)
    with torch.no_grad():
        for col in range(0, len(b), rows):
            right = torch.from_numpy(b[col : col + rows]).to(device)
            for row in range(0, len(a), rows):
                left = torch.from_numpy(a[row : row + rows]).to(device)
                out[row : row + rows, col : col + rows] = (left @ right.T).double().cpu().numpy()
    return out


def iou_distances(a: np.ndarray, b: np.ndarray, device: str = "cpu") -> np.ndarray:
    """1 - IoU for every pair: a (N, R, R, R) bool, b (M, R, R, R) bool  ->  (N, M) float64.

    Two empty volumes are at distance 0; an empty and a non-empty one at 1.
    """
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    intersection = pairwise_products(flat_a, flat_b, device)
    union = flat_a.sum(axis=1)[:, None] + flat_b.sum(axis=1)[None, :] - intersection
    iou = np.divide(intersection, union, out=np.ones_like(intersection), where=union > 0)
    return 1.0 - iou


def surface_voxels(occupancy: np.ndarray) -> np.ndarray:
    """Occupied voxels with an empty 6-neighbour (outside the grid counts as empty).

    occupancy : (N, R, R, R) bool  ->  (N, R, R, R) bool.
    """
    padded = np.pad(occupancy, ((0, 0), (1, 1), (1, 1), (1, 1)))
    inner = padded[:, 1:-1, 1:-1, 1:-1]
    enclosed = inner.copy()
    for axis in (1, 2, 3):
        for shift in (-1, 1):
            enclosed &= np.roll(padded, shift, axis=axis)[:, 1:-1, 1:-1, 1:-1]
    return inner & ~enclosed


def squared_distance_fields(surface: np.ndarray) -> np.ndarray:
    """For every voxel centre, the squared distance to the nearest surface voxel centre, in a unit cube.

    surface : (N, R, R, R) bool  ->  (N, R³) float32; a volume without surface gets
    :data:`EMPTY_SQUARED_DISTANCE` everywhere.
    """
    from scipy.ndimage import distance_transform_edt

    count, resolution = len(surface), surface.shape[1]
    fields = np.full((count, resolution**3), EMPTY_SQUARED_DISTANCE, np.float32)
    for index in range(count):
        if surface[index].any():
            distance = distance_transform_edt(~surface[index])
            fields[index] = (distance.reshape(-1) / resolution) ** 2
    return fields


@dataclass
class Prepared:
    """A set of volumes ready for pairwise distances: (N, R, R, R) bool plus its surface data."""

    occupancy: np.ndarray
    surface: np.ndarray  # (N, R³) float32 0/1 indicators of surface voxels
    surface_counts: np.ndarray  # (N,)
    fields: np.ndarray  # (N, R³) float32 squared distance fields


def prepare(occupancy: np.ndarray) -> Prepared:
    """occupancy : (N, R, R, R) bool  ->  :class:`Prepared`."""
    occupancy = np.asarray(occupancy, bool)
    assert occupancy.ndim == 4, occupancy.shape
    surface = surface_voxels(occupancy)
    return Prepared(
        occupancy=occupancy,
        surface=surface.reshape(len(surface), -1).astype(np.float32),
        surface_counts=surface.reshape(len(surface), -1).sum(axis=1),
        fields=squared_distance_fields(surface),
    )


def chamfer_distances(a: Prepared, b: Prepared, device: str = "cpu") -> np.ndarray:
    """Chamfer distance for every pair of surface point sets  ->  (N, M) float64.

    ``mean over a's points of the squared distance to b's nearest point`` plus the same from b to
    a; a mean over no points is 0 (so two empty volumes are at 0, an empty and a non-empty one at 3).
    """
    a_to_b = pairwise_products(a.surface, b.fields, device)  # (N, M) sums over a's points
    b_to_a = pairwise_products(a.fields, b.surface, device)  # (N, M) sums over b's points
    a_counts, b_counts = a.surface_counts[:, None], b.surface_counts[None, :]
    a_mean = np.divide(a_to_b, a_counts, out=np.zeros_like(a_to_b), where=a_counts > 0)
    b_mean = np.divide(b_to_a, b_counts, out=np.zeros_like(b_to_a), where=b_counts > 0)
    return a_mean + b_mean


def minimum_matching_distance(generated_to_reference: np.ndarray) -> float:
    """MMD from the (G, R) distance matrix: each reference's nearest generated distance, averaged."""
    return float(generated_to_reference.min(axis=0).mean())


def coverage(generated_to_reference: np.ndarray) -> float:
    """COV from the (G, R) distance matrix: share of references that are some generated one's nearest."""
    nearest = generated_to_reference.argmin(axis=1)
    return len(np.unique(nearest)) / generated_to_reference.shape[1]


def nearest_neighbour_accuracy(
    generated_to_generated: np.ndarray, reference_to_reference: np.ndarray, generated_to_reference: np.ndarray
) -> float:
    """1-NNA: leave-one-out 1-NN accuracy over both sets; (G, G), (R, R) and (G, R) distances  ->  [0, 1].

    A sample is classified by its nearest other sample; ties between the two sets count half.
    """
    same_g = generated_to_generated + np.diag(np.full(len(generated_to_generated), np.inf))
    same_r = reference_to_reference + np.diag(np.full(len(reference_to_reference), np.inf))
    g_own, g_other = same_g.min(axis=1), generated_to_reference.min(axis=1)
    r_own, r_other = same_r.min(axis=1), generated_to_reference.min(axis=0)
    correct = (g_own < g_other).sum() + (r_own < r_other).sum()
    ties = (g_own == g_other).sum() + (r_own == r_other).sum()
    return float((correct + 0.5 * ties) / (len(g_own) + len(r_own)))


def set_metrics(distance_gg: np.ndarray, distance_rr: np.ndarray, distance_gr: np.ndarray) -> tuple:
    """(MMD, COV, 1-NNA) from the three distance matrices of one distance."""
    return (
        minimum_matching_distance(distance_gr),
        coverage(distance_gr),
        nearest_neighbour_accuracy(distance_gg, distance_rr, distance_gr),
    )


class ReferenceSet:
    """A reference set with its own pairwise distances computed once, to compare many sets against."""

    def __init__(self, occupancy: np.ndarray, device: str = "cpu"):
        self.prepared = prepare(occupancy)
        self.device = device
        self.iou_rr = iou_distances(self.prepared.occupancy, self.prepared.occupancy, device)
        self.cd_rr = chamfer_distances(self.prepared, self.prepared, device)

    def __len__(self) -> int:
        return len(self.prepared.occupancy)

    def compare(self, generated: np.ndarray) -> dict:
        """MMD, COV and 1-NNA of ``generated`` (G, R, R, R) bool against this set, for both distances.

        Returns ``{mmd_iou, cov_iou, nna_iou, mmd_cd, cov_cd, nna_cd}`` (plain floats).
        """
        ref = self.prepared
        gen = prepare(generated)
        assert gen.occupancy.shape[1:] == ref.occupancy.shape[1:], (gen.occupancy.shape, ref.occupancy.shape)
        iou_gr = iou_distances(gen.occupancy, ref.occupancy, self.device)
        iou_gg = iou_distances(gen.occupancy, gen.occupancy, self.device)
        cd_gr = chamfer_distances(gen, ref, self.device)
        cd_gg = chamfer_distances(gen, gen, self.device)
        values = set_metrics(iou_gg, self.iou_rr, iou_gr) + set_metrics(cd_gg, self.cd_rr, cd_gr)
        return dict(zip(METRIC_KEYS, values, strict=True))


def compare_sets(generated: np.ndarray, reference: np.ndarray, device: str = "cpu") -> dict:
    """MMD, COV, 1-NNA, both distances: generated (G, R, R, R) bool vs reference (M, R, R, R) bool."""
    return ReferenceSet(reference, device).compare(generated)


def build_classifier(resolution: int, num_classes: int):
    """A small 3D conv classifier: (B, 1, R, R, R) -> logits (B, classes); ``.features``: (B, 64)."""
    import torch
    from torch import nn

    class VoxelClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 1
            for width in (16, 32, 64):  # each step halves the resolution
                layers += [nn.Conv3d(channels, width, 4, stride=2, padding=1), nn.GroupNorm(4, width)]
                layers += [nn.LeakyReLU(0.2)]
                channels = width
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(channels, num_classes)
            self.resolution, self.num_classes = resolution, num_classes

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 1, R, R, R) -> (B, 64)."""
            return self.body(x).mean(dim=(2, 3, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    return VoxelClassifier()


def train_classifier(
    volumes: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0, device: str = "cpu"
):
    """Train :func:`build_classifier` on (N, R, R, R) bool volumes and (N,) labels; eval mode."""
    import torch
    from torch.nn import functional as F

    torch_rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the initial weights
    model = build_classifier(volumes.shape[1], num_classes).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    x_all = torch.from_numpy(volumes.astype(np.float32))[:, None]
    y_all = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(CLASSIFIER_EPOCHS):
        order = torch.randperm(len(x_all), generator=torch_rng)
        for start in range(0, len(order), CLASSIFIER_BATCH):
            batch = order[start : start + CLASSIFIER_BATCH]
            x = x_all[batch].to(device)
            flip = torch.rand(len(batch), generator=torch_rng) < 0.5  # mirror x: keeps +z up
            x[flip.to(device)] = x[flip.to(device)].flip(2)
            loss = F.cross_entropy(model(x), y_all[batch].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return model.eval()


def classifier_outputs(model, volumes: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(N, R, R, R) bool or float  ->  features (N, 64) float64 and class probabilities (N, C) float64."""
    import torch

    features, probabilities = [], []
    with torch.no_grad():
        for start in range(0, len(volumes), 256):
            x = torch.from_numpy(np.asarray(volumes[start : start + 256], np.float32))[:, None].to(device)
            f = model.features(x)
            features.append(f.double().cpu().numpy())
            probabilities.append(model.head(f).double().softmax(dim=1).cpu().numpy())
    return np.concatenate(features), np.concatenate(probabilities)


def piece_counts(occupancy: np.ndarray) -> np.ndarray:
    """(N, R, R, R) bool -> (N,) int: the connected pieces of each volume (voxels that touch at a face, an
    edge or a corner are one piece; an empty volume has none)."""
    return np.array([pieces(volume)[1] for volume in occupancy], dtype=np.int64)


def shape_profile(
    occupancy: np.ndarray,
    probabilities: np.ndarray | None = None,
    asked: np.ndarray | None = None,
    class_names=(),
) -> dict:
    """What a person would see in a set of volumes: ``one_piece`` (share of one-piece volumes) and
    ``pieces`` (mean count); with the classifier's probabilities (N, C): ``confident`` (share named with
    probability >= 0.9) and ``class_histogram`` ({class name: share named so}); with ``asked`` (N,) int,
    the class each volume should be: ``class_accuracy`` (share named as asked)."""
    counts = piece_counts(occupancy)
    profile = {"one_piece": float(np.mean(counts == 1)), "pieces": float(counts.mean())}
    if probabilities is None:
        return profile
    named = probabilities.argmax(axis=1)
    profile["confident"] = float(np.mean(probabilities.max(axis=1) >= CONFIDENT))
    shares = np.bincount(named, minlength=probabilities.shape[1]) / len(named)
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(len(shares))]
    profile["class_histogram"] = {name: float(share) for name, share in zip(names, shares, strict=True)}
    if asked is not None:
        profile["class_accuracy"] = float(np.mean(named == asked))
    return profile


def histogram_distance(a: dict, b: dict) -> float:
    """Total variation between two class histograms ({name: share}): 0 the same mix, 1 no class shared."""
    return 0.5 * sum(abs(a.get(name, 0.0) - b.get(name, 0.0)) for name in set(a) | set(b))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to (N, F) and (M, F) features."""
    from scipy.linalg import sqrtm

    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root = sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(root):
        root = root.real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def classifier_cache_path(folder: Path, manifest: dict) -> Path:
    """``<folder>/.voxgan-cache/classifier-<hash>.pt``, the hash covering the shards and the classifier."""
    key = json.dumps(
        {
            "version": CLASSIFIER_VERSION,
            "epochs": CLASSIFIER_EPOCHS,
            "shards": {
                name: [e["sha256"] for e in info["shards"]] for name, info in manifest["splits"].items()
            },
        },
        sort_keys=True,
    )
    return Path(folder) / CACHE_FOLDER / f"classifier-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def save_torch_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` through a temporary file in the same folder and a rename."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        torch.save(obj, handle)


@dataclass
class FeatureNet:
    """The cached classifier of a shard folder and its accuracy on the split it was tested on."""

    model: object
    accuracy: float
    test_split: str
    path: Path


def shard_classifier(folder: Path, test_split: str = "test", device: str = "cpu") -> FeatureNet | None:
    """The folder's classifier, trained on its train split and cached; None with fewer than 2 classes."""
    import torch

    folder = Path(folder)
    manifest = read_manifest(folder)
    classes = list(manifest.get("classes") or [])
    if len(classes) < 2 or "train" not in manifest.get("splits", {}):
        return None
    resolution = int(manifest["resolution"])
    path = classifier_cache_path(folder, manifest)
    model = build_classifier(resolution, len(classes))
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
            return FeatureNet(model.to(device).eval(), float(state["accuracy"]), state["test_split"], path)
        except Exception:  # a stale or damaged cache entry: train again and replace it
            pass
    volumes, labels, _ = read_split(folder, "train")
    known = labels >= 0
    if len(np.unique(labels[known])) < 2:
        return None
    model = train_classifier(volumes[known], labels[known], len(classes), device=device)
    if test_split not in manifest["splits"] or test_split == "train":
        test_split = "test" if "test" in manifest["splits"] else "train"
    test_volumes, test_labels, _ = read_split(folder, test_split)
    _, probabilities = classifier_outputs(model, test_volumes, device)
    accuracy = (
        float((probabilities.argmax(axis=1) == test_labels).mean()) if len(test_labels) else float("nan")
    )
    state = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "accuracy": accuracy,
        "test_split": test_split,
        "version": CLASSIFIER_VERSION,
    }
    save_torch_atomic(state, path)
    return FeatureNet(model, accuracy, test_split, path)
