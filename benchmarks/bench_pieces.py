"""Do loose specks cost a generator its 1-NNA? Its samples scored as made, without their specks (what
``voxgan export`` writes and ``voxgan evaluate`` scores: ``meshing.without_specks``) and cut down to their
largest piece.

A generator (a run folder, a checkpoint or a pretrained name) makes ``--num`` volumes from fixed latents
(a conditional one cycles through its classes); the three sets (pieces touch at a face, an edge or a
corner, as ``voxgan evaluate`` counts them) are compared with the same volumes of the test split by
``voxgan evaluate``'s set metrics (MMD, COV, 1-NNA, by IoU).

    .venv/bin/python benchmarks/bench_pieces.py shapes-16 --data shards
    .venv/bin/python benchmarks/bench_pieces.py runs/00000-shards_32-32 --data shards-32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from voxgan.model.pretrained import pretrained_names, pretrained_path
from voxgan.model.runs import latent_batch, load_generator, run_generator
from voxgan.results.export import generator_labels
from voxgan.results.meshing import pieces, without_specks
from voxgan.results.metrics import compare_sets, piece_counts
from voxgan.shards import read_split


def largest_piece(volume: np.ndarray) -> np.ndarray:
    """(R, R, R) bool -> (R, R, R) bool: the piece with the most voxels (empty stays empty)."""
    labels, count = pieces(volume)
    if count <= 1:
        return volume
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", help="a run folder, a checkpoint file or a pretrained name")
    parser.add_argument("--data", type=Path, required=True, help="the shard folder to compare with")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num", type=int, default=200)
    args = parser.parse_args()
    source = pretrained_path(args.generator) if args.generator in pretrained_names() else Path(args.generator)
    generator = load_generator(source).generator
    reference = read_split(args.data, args.split)[0][: args.num]
    latents = latent_batch(len(reference), generator.latent_dim, 0)
    labels = generator_labels(generator.num_classes, len(reference), None)
    generated = run_generator(generator, latents, labels) > 0.5
    largest = np.stack([largest_piece(volume) for volume in generated])
    print(f"{args.generator} against {len(reference)} volumes of {args.data}/{args.split}")
    print(f"{'set':24s} {'1-NNA-IoU':>10s} {'COV-IoU':>8s} {'MMD-IoU':>8s} {'one piece':>10s}")
    sets = (("as made", generated), ("without specks", without_specks(generated)), ("largest piece", largest))
    for name, volumes in sets:
        scores = compare_sets(volumes, reference)
        one_piece = np.mean(piece_counts(volumes) == 1)
        print(
            f"{name:24s} {scores['nna_iou']:10.1%} {scores['cov_iou']:8.1%} {scores['mmd_iou']:8.3f}"
            f" {one_piece:10.1%}"
        )


if __name__ == "__main__":
    main()
