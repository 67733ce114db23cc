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

:func:`evaluate_run` evaluates a run's latest checkpoint against a split and adds two context rows
computed the same way: the train split against the chosen split (what a perfect generator would
score) and ``synthetic:noise`` volumes (what a useless one scores).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxgan.atomic import atomic_open
from voxgan.errors import VoxganError

CHUNK_BYTES = 64 * 2**20  # size of one operand block of the pairwise products
EMPTY_SQUARED_DISTANCE = 3.0  # squared diagonal of the unit cube: how far an empty volume's surface is
CLASSIFIER_VERSION = 2
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
CACHE_FOLDER = ".voxgan-cache"
METRIC_KEYS = ("mmd_iou", "cov_iou", "nna_iou", "mmd_cd", "cov_cd", "nna_cd")


# --- pairwise distances -------------------------------------------------------------------------


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


# --- MMD, COV, 1-NNA ----------------------------------------------------------------------------------


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


# --- voxel FID -----------------------------------------------------------------------------------------


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
    """(N, R, R, R) bool or float  ->  features (N, 64) float64 and predicted labels (N,) int64."""
    import torch

    features, predictions = [], []
    with torch.no_grad():
        for start in range(0, len(volumes), 256):
            x = torch.from_numpy(np.asarray(volumes[start : start + 256], np.float32))[:, None].to(device)
            f = model.features(x)
            features.append(f.double().cpu().numpy())
            predictions.append(model.head(f).argmax(dim=1).cpu().numpy())
    return np.concatenate(features), np.concatenate(predictions)


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

    from voxgan.export import split_volumes
    from voxgan.shards import read_manifest

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
    volumes, labels, _ = split_volumes(folder, "train")
    known = labels >= 0
    if len(np.unique(labels[known])) < 2:
        return None
    model = train_classifier(volumes[known], labels[known], len(classes), device=device)
    if test_split not in manifest["splits"] or test_split == "train":
        test_split = "test" if "test" in manifest["splits"] else "train"
    test_volumes, test_labels, _ = split_volumes(folder, test_split)
    _, predicted = classifier_outputs(model, test_volumes, device)
    accuracy = float((predicted == test_labels).mean()) if len(test_labels) else float("nan")
    state = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "accuracy": accuracy,
        "test_split": test_split,
        "version": CLASSIFIER_VERSION,
    }
    save_torch_atomic(state, path)
    return FeatureNet(model, accuracy, test_split, path)


# --- evaluating a run ---------------------------------------------------------------------------------


def reference_volumes(
    data: str | Path, split: str, num: int | None, resolution: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The reference set: ``num`` volumes (all when None) of ``split`` of a shard folder or synthetic source.

    Returns (N, R, R, R) bool, (N,) int64 labels and the class names.
    """
    if str(data).startswith("synthetic:"):
        return synthetic_volumes(str(data), split, num or 1000, resolution, seed)
    from voxgan.export import split_volumes

    volumes, labels, class_names = split_volumes(Path(data), split)
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
    from voxgan.data import make_loader

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


def run_folder_of(path: Path) -> Path:
    """The run folder of a run folder or of a checkpoint file (``<run>/checkpoints/step-N.pt``)."""
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


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
    from voxgan.export import latent_batch, run_generator

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
    from voxgan.train import load_checkpoint, load_generator

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
    append_json_line(folder / "metrics.jsonl", record)
    table = markdown_table(record)
    table_path = folder / f"eval-step-{step:07d}.md"
    write_text_atomic(table_path, table + "\n")
    return {**record, "table": table, "table_path": str(table_path)}


def append_json_line(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line with a single write (whole lines even with concurrent writers)."""
    line = (json.dumps(record, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same folder and a rename."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


# --- tables --------------------------------------------------------------------------------------------


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
