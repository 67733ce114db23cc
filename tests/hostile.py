"""Damage for the tests of files voxgan reads back (manifests, plans, unit records, shards, checkpoints):
the campaign's own mutations (``benchmarks/fuzz_readers.py``), seeded."""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fuzzer():
    """benchmarks/fuzz_readers.py as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import fuzz_readers
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return fuzz_readers


def mutated_bytes(data: bytes, rng: random.Random) -> bytes:
    """``data`` after 1 to 4 of the campaign's byte mutations (flips, truncation, words, numbers...)."""
    mutations = fuzzer().BYTE_MUTATIONS
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(mutations)(data, [data], rng)
    return data


def mutated_json(tree, rng: random.Random):
    """A deep copy of a JSON tree after 1 to 3 structural changes (values replaced by hostile ones, keys
    deleted, values wrapped in lists), never the glTF-only changes."""
    tree = copy.deepcopy(tree)
    for _ in range(rng.randint(1, 3)):
        tree = _change(tree, rng)
    return tree


def _change(tree, rng):
    values = fuzzer().INTERESTING_JSON
    places = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                places.append((node, key))
                walk(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                places.append((node, index))
                walk(value)

    walk(tree)
    if not places:
        return tree
    parent, key = rng.choice(places)
    choice = rng.random()
    if choice < 0.6:
        parent[key] = copy.deepcopy(rng.choice(values))
    elif choice < 0.8:
        del parent[key]
    elif isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] += rng.choice((-1, 1, 2**31))
    else:
        parent[key] = [parent[key]]
    return tree
